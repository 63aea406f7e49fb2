"""Flow ``retrain-model``: train a candidate on ``labeled/`` and promote it only on evidence.

The steps: read and validate every labeled file, and every file of ``unlabeled/``
(``tasks.training.labeled``); split three ways by each review's movie or product, else its id
(``tasks.training.split``): train, selection (early stopping) and gate; unless nothing is new to
learn (``tasks.training.record``), train the configured architecture (``tasks.model``),
pseudo-label the unlabeled reviews it is sure of (``tasks.training.self_training``) and train
again on more rows (``train_candidate``); compare the candidate and the
champion now on the gate rows, which neither chose anything by, and decide
(``tasks.training.evaluation``); record the version, its metrics, curves, decision and drift
reference profile in the registry (``tasks.training.registry``). One retraining at a time.

Run it as ``reviewflow retrain`` or ``python -m flows.retrain_model``.
"""

from __future__ import annotations

import contextlib
import json
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import build_validator, terminal_progress
from flows.configuration import settings_from
from flows.retrain_report import publish_artifacts, report_nothing_new
from flows.stopping import raise_if_stopped
from tasks.errors import RetrainingBusyError
from tasks.failpoints import failpoint
from tasks.layout import MODEL_FILE, DataLayout
from tasks.settings import Settings
from tasks.state.backend import open_state
from tasks.storage.local import LockHeldError, exclusive_lock
from tasks.storage.objects import is_remote
from tasks.training.evaluation import classification_metrics, decide_promotion, mcnemar_exact
from tasks.training.labeled import read_labeled_reviews, read_unlabeled_reviews
from tasks.training.record import (
    check_parts,
    left_out_rows,
    left_out_warning,
    nothing_new,
    part_rows,
    training_inputs,
    version_metrics,
)
from tasks.training.registry import Registry
from tasks.training.self_training import learnable_unlabeled, pseudo_labeled
from tasks.training.split import Split, split_labeled


@task(name="read-labeled", cache_policy=NO_CACHE)
def read_labeled(settings: Settings) -> tuple[pd.DataFrame, dict]:
    """``tasks.training.labeled.read_labeled_reviews`` as a task, with the suite requiring labels."""
    return read_labeled_reviews(settings, build_validator(settings, require_label=True),
                                get_run_logger())


@task(name="read-unlabeled", cache_policy=NO_CACHE)
def read_unlabeled(settings: Settings) -> tuple[pd.DataFrame, dict]:
    """``tasks.training.labeled.read_unlabeled_reviews`` as a task (labels not required)."""
    return read_unlabeled_reviews(settings, build_validator(settings), get_run_logger())


@task(name="train-candidate", cache_policy=NO_CACHE)
def train_candidate(split: Split, unlabeled: pd.DataFrame, settings: Settings):
    """Train the candidate; return it and what self-training did (None if it did not run).

    1. Train on ``split.train``; early stopping picks the best epoch on ``split.selection``.
    2. Self-training (``settings.self_training``, when ``unlabeled`` has learnable rows):
       that model pseudo-labels the unlabeled reviews it scores confidently.
    3. With ``settings.refit_with_selection`` or pseudo-labels, train afresh on the
       training rows, the selection rows (if refitting) and the pseudo-labeled rows, as
       many updates as step 1 kept (``tasks.model.refit_model``).
    """
    from tasks.model import (
        TrainingParams,
        predict_scores,
        refit_epochs,
        refit_model,
        train_model,
    )

    params = TrainingParams.from_settings(settings)
    logger = get_run_logger()
    train, selection = split.train, split.selection
    with _epoch_progress(params.epochs, "training", "selection", logger) as show_epoch:
        trained = train_model(_texts(train), train["label"].to_numpy(), _texts(selection),
                              selection["label"].to_numpy(), params, on_epoch=show_epoch)
    self_training, pseudo = None, train.iloc[:0]
    if settings.self_training:
        pool, left_out = learnable_unlabeled(unlabeled, split, settings.max_unlabeled_rows)
        if len(pool):
            pseudo = pseudo_labeled(pool, predict_scores(trained.model, _texts(pool),
                                                         settings.predict_batch_size),
                                    settings.pseudo_label_confidence)
        self_training = {**left_out, "pseudo_labeled": {"positive": int(pseudo["label"].sum()),
                                                        "negative": int((pseudo["label"] == 0)
                                                                        .sum())}}
        logger.info("self-training: %d unlabeled reviews, %d learnable (%d share a labeled "
                    "text, %d are of held-out movies or products, %d repeat a text, %d over "
                    "the limit), %d pseudo-labeled", left_out["rows"], left_out["learnable"],
                    left_out["labeled_text"], left_out["held_out_group"],
                    left_out["duplicate_text"], left_out["over_max_rows"], len(pseudo))
    if not settings.refit_with_selection and pseudo.empty:
        return trained, self_training
    parts = {"training": train, "selection": selection if settings.refit_with_selection
             else None, "pseudo-labeled": pseudo}
    parts = {name: rows[["review_id", "text", "label"]] for name, rows in parts.items()
             if rows is not None and len(rows)}
    final = pd.concat(parts.values(), ignore_index=True)
    epochs = refit_epochs(trained.best_epoch, trained.train_rows, len(final))
    logger.info("early stopping kept epoch %d of %d; training again on %s rows for %d epochs "
                "(as many updates)", trained.best_epoch, trained.epochs_run,
                " + ".join(f"{len(rows)} {name}" for name, rows in parts.items()), epochs)
    with _epoch_progress(epochs, "refitting", None, logger) as show_epoch:
        trained = refit_model(trained, _texts(final), final["label"].to_numpy(), params,
                              on_epoch=show_epoch)
    return trained, self_training


@contextmanager
def _epoch_progress(epochs: int, what: str, held_out: str | None, logger):
    """``on_epoch`` for ``tasks.model``: a bar on a terminal, else a log line per epoch.

    ``held_out`` names the rows Keras' ``val_*`` figures are measured on; None when the
    run has none (the refit)."""
    details = "epochs, loss {task.fields[loss]:.4f}" + (
        f", {held_out} accuracy {{task.fields[accuracy]:.4f}}" if held_out else "")
    # On a terminal a bar over the most epochs (early stopping may end sooner); else lines.
    bar = terminal_progress(epochs, what, details)

    def show_epoch(epoch: int, logs: dict) -> None:
        raise_if_stopped()  # one a library dropped: no further epoch
        loss, accuracy = logs.get("loss", float("nan")), logs.get("val_accuracy", float("nan"))
        if bar is not None:
            bar.update(bar.task_ids[0], completed=epoch, loss=loss, accuracy=accuracy)
        elif held_out:
            logger.info("epoch %d/%d: loss %.4f, %s loss %.4f, %s accuracy %.4f", epoch,
                        epochs, loss, held_out, logs.get("val_loss", float("nan")), held_out,
                        accuracy)
        else:
            logger.info("%s epoch %d/%d: loss %.4f", what, epoch, epochs, loss)

    if bar is not None:
        bar.add_task("epochs", total=epochs, loss=float("nan"), accuracy=float("nan"))
        bar.start()
    try:
        yield show_epoch
    finally:
        if bar is not None:
            bar.stop()


@task(name="evaluate-champion", cache_policy=NO_CACHE)
def score_champion(registry: Registry, gate: pd.DataFrame,
                   batch_size: int) -> tuple[str, np.ndarray] | None:
    """The current champion's scores on the gate rows, or None without a champion."""
    from tasks.model import load_model, predict_scores

    pointer = registry.champion()
    if pointer is None:
        return None
    model = load_model(registry.local_model(pointer["version"]))
    return pointer["version"], predict_scores(model, _texts(gate), batch_size)


def _texts(frame: pd.DataFrame) -> np.ndarray:
    return frame["text"].to_numpy(dtype=object)


# A parameter left None takes the setting of its name where the run runs, as for
# score-reviews (flows/score_reviews.py).
@flow(name="retrain-model", log_prints=True)
def retrain_model(data_dir: str | None = None,
                  architecture: str | None = None,
                  epochs: int | None = None,
                  min_delta: float | None = None,
                  require_significance: bool | None = None,
                  force: bool = False,
                  state_url: str | None = None) -> dict:
    """Train a candidate and promote it only if it beats the champion on the gate rows.

    When the labeled data, architecture and training settings are the same as for the
    latest trained version, records "nothing new to learn" and trains nothing; ``force``
    trains anyway. Each parameter left unset (None) is the setting of its name.
    """
    raise_if_stopped()  # one the engine dropped while it created this run
    settings = settings_from(data_dir, architecture=architecture, epochs=epochs,
                             min_delta=min_delta, require_significance=require_significance,
                             state_url=state_url)
    layout = DataLayout.of(settings).ensure()
    # The retraining and pointer locks: in PostgreSQL with a state URL (one for every
    # host), else lock files (tasks.state.backend.SQLiteState.for_layout).
    state = open_state(settings.state_url, layout)
    registry = Registry(layout.models, state)
    try:
        with contextlib.ExitStack() as held:
            held.enter_context(state.retrain_lock())
            if settings.state_url and not is_remote(layout.models):
                # A local registry's lock file too, which runs without the URL take.
                held.enter_context(exclusive_lock(registry.retrain_lock))
            return _retrain(settings, registry, force)
    except LockHeldError as exc:
        raise RetrainingBusyError(f"another retraining is running ({exc}); this run leaves the "
                                  "registry untouched. Try again when it has finished.") from exc
    finally:
        state.close()


def _retrain(settings: Settings, registry: Registry, force: bool = False) -> dict:
    """Read, split, (unless nothing is new) train, compare on the gate, decide, record."""
    from tasks.model import architecture, predict_scores

    logger = get_run_logger()
    for leftover in registry.clean_staging():
        logger.warning("removed half-written version %s left by an interrupted run", leftover)
    reviews, read_stats = read_labeled(settings)
    unlabeled, unlabeled_stats = (read_unlabeled(settings) if settings.self_training
                                  else (None, None))
    split = split_labeled(reviews, settings.validation_fraction, settings.selection_share)
    logger.info("split by %s: training rows %d, selection rows %d, gate rows %d (%d duplicate "
                "texts removed, %d kept out of training because they are held out)",
                split.split_by, len(split.train), len(split.selection), len(split.gate),
                split.duplicates_removed, split.kept_out_of_training)
    check_parts(split, len(reviews))
    inputs = training_inputs(settings, split, read_stats,
                             architecture(settings.architecture).max_tokens or settings.max_tokens,
                             unlabeled_stats)
    latest = registry.latest_version()
    if not force and latest is not None and nothing_new(
            inputs, registry.read_version(latest).get("metrics", {})):
        row_counts = left_out_rows(read_stats, split, unlabeled_stats, None)
        if (left_out := left_out_warning(row_counts)) is not None:
            logger.warning(left_out)
        return report_nothing_new(registry, latest, {**part_rows(split),
                                                     "row_counts": row_counts})
    failpoint("retrain:before-training")
    trained, self_training = train_candidate(split, unlabeled, settings)
    if self_training is not None:
        self_training = {**self_training, "files": unlabeled_stats["files"],
                         "files_quarantined": unlabeled_stats["files_quarantined"],
                         "rows_rejected": unlabeled_stats["rows_rejected"],
                         "content_sha256": unlabeled_stats["content_sha256"]}

    labels = split.gate["label"].to_numpy()
    candidate_scores = predict_scores(trained.model, _texts(split.gate),
                                      settings.predict_batch_size)
    candidate = classification_metrics(labels, candidate_scores)
    champion = score_champion(registry, split.gate, settings.predict_batch_size)
    compared = None  # (version, figures on the gate, paired test)
    if champion is not None:
        compared = (champion[0], classification_metrics(labels, champion[1]),
                    mcnemar_exact(labels, champion[1], candidate_scores))
    decision = decide_promotion(
        candidate["accuracy"], compared[1]["accuracy"] if compared else None,
        min_delta=settings.min_delta, accuracy_floor=settings.accuracy_floor,
        require_significance=settings.require_significance, alpha=settings.significance_alpha,
        p_value=compared[2]["p_value"] if compared else None,
        confusion=candidate["confusion_matrix"])

    version = _record_version(registry, trained, split, settings, read_stats, candidate,
                              candidate_scores, compared, decision, self_training)
    failpoint("retrain:decided")
    # Promoted only if the champion is still the one compared against (tasks.training.registry).
    promoted, reason = registry.conclude_training(version, decision.promote, decision.reason,
                                                  compared[0] if compared else None)
    logger.info("%s %s: %s", "PROMOTED" if promoted else "REJECTED" if reason == decision.reason
                else "NOT PROMOTED", version, reason)
    row_counts = left_out_rows(read_stats, split, unlabeled_stats, self_training)
    if (left_out := left_out_warning(row_counts)) is not None:
        logger.warning(left_out)
    summary = {"version": version, "promoted": promoted, "reason": reason,
               "validation_accuracy": round(candidate["accuracy"], 4),
               "champion_before": compared[0] if compared else None,
               "champion_accuracy": round(compared[1]["accuracy"], 4) if compared else None,
               **part_rows(split), "epochs_run": trained.epochs_run,
               "final_training_rows": trained.train_rows,
               "pseudo_labeled_rows": (sum(self_training["pseudo_labeled"].values())
                                       if self_training else 0),
               "training_seconds": round(trained.training_seconds, 1),
               "row_counts": row_counts}
    publish_artifacts(summary, candidate, compared[1] if compared else None,
                      registry.versions / version)
    print(json.dumps(summary))
    return summary


def _record_version(registry: Registry, trained, split, settings: Settings, read_stats: dict,
                    candidate: dict, candidate_scores: np.ndarray, compared, decision,
                    self_training: dict | None) -> str:
    """Stage the model and its record (``Registry.conclude_training`` publishes it)."""
    import keras
    import tensorflow as tf

    from tasks.model import model_vocabulary, save_model
    from tasks.monitoring import reference_profile

    version = registry.new_version()
    save_model(trained.model, registry.stage(version) / MODEL_FILE)
    metrics = version_metrics(version, trained, split, settings, read_stats, candidate, compared,
                              {"tensorflow": tf.__version__, "keras": keras.__version__},
                              self_training)
    profile = reference_profile(pa.array(_texts(split.train), pa.string()),
                                pa.array(_texts(split.gate), pa.string()), candidate_scores,
                                split.gate["label"].to_numpy(), model_vocabulary(trained.model),
                                version, settings.architecture)
    registry.write_record(version, metrics, {"promote": decision.promote,
                                             "reason": decision.reason,
                                             "decided_at": metrics["trained_at"]}, profile)
    return version


if __name__ == "__main__":
    from flows.common import run_as_command

    run_as_command("retrain")

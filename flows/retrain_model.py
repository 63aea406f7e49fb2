"""Flow ``retrain-model``: train a candidate on ``labeled/`` and promote it only on evidence.

The steps, each a plain function of ``tasks.training`` returning a typed result; this
module adds the Prefect tasks, progress, log lines and artifacts:

1. read and validate every labeled file, and every file of ``unlabeled/``
   (``tasks.training.labeled``);
2. split three ways by each review's movie or product, else its id: train, selection
   (early stopping) and gate (``tasks.training.split``); stop here when nothing is new to
   learn since the latest version (``tasks.training.record``);
3. train the candidate: on the training rows, self-training on the unlabeled reviews it
   is sure of, and again on more rows (``tasks.training.candidate``,
   ``tasks.training.self_training``);
4. evaluate the candidate and the champion now on the gate rows, which neither chose
   anything by, on all of them and on each slice (``tasks.training.evaluation``,
   ``tasks.training.slices``);
5. decide, slice by slice too (``tasks.training.promotion``);
6. stage the version with its metrics, pictures, model card, decision and drift
   reference profile, then publish it and promote it if decided
   (``tasks.training.candidate``, ``tasks.training.promotion``,
   ``tasks.training.registry``);
7. report: the summary, its warnings and the artifacts (``flows.retrain_report``).

One retraining at a time. Run it as ``reviewflow retrain`` or ``python -m flows.retrain_model``.
"""

from __future__ import annotations

import contextlib
import json
from contextlib import contextmanager
from functools import partial

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import build_validator, terminal_progress
from flows.configuration import settings_from
from flows.retrain_report import publish_artifacts, report_nothing_new
from flows.run_messages import finished, retrain_message
from flows.stopping import raise_if_stopped
from tasks.errors import RetrainingBusyError
from tasks.failpoints import failpoint
from tasks.layout import CARD_FILE, DataLayout
from tasks.model.params import TrainingParams
from tasks.settings import Settings
from tasks.state.backend import open_state
from tasks.state.leftovers import sweep_training_leftovers
from tasks.storage.local import LockHeldError, exclusive_lock
from tasks.training.candidate import (
    Candidate,
    plan_refit,
    refit,
    stage_candidate,
    train_on_split,
)
from tasks.training.evaluation import (
    ChampionScores,
    champion_in_force,
    champion_scores,
    compare_on_gate,
)
from tasks.training.labeled import read_labeled_reviews, read_unlabeled_reviews
from tasks.training.promotion import PromotionRules, conclude, decide_promotion
from tasks.training.record import (
    check_parts,
    left_out_rows,
    left_out_warning,
    part_rows,
    retrain_summary,
    training_inputs,
    unchanged_since,
)
from tasks.training.registry import Registry
from tasks.training.self_training import SelfTraining, self_train
from tasks.training.slices import column_label, describe_slice, gate_slices
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
def train_candidate(split: Split, unlabeled: pd.DataFrame | None,
                    settings: Settings) -> Candidate:
    """The steps of ``tasks.training.candidate``: train with early stopping on the
    selection rows; self-training (``settings.self_training``); the refit, if any."""
    from tasks.model import predict_scores

    params = TrainingParams.from_settings(settings)
    logger = get_run_logger()
    with _epoch_progress(params.epochs, "training", "selection", logger) as show_epoch:
        first = train_on_split(split, params, on_epoch=show_epoch)
    self_training = None
    if settings.self_training:
        self_training = self_train(
            unlabeled, split, partial(predict_scores, first.model,
                                      batch_size=settings.predict_batch_size),
            max_rows=settings.max_unlabeled_rows, confidence=settings.pseudo_label_confidence)
        _log_self_training(self_training, logger)
    plan = plan_refit(first, split, self_training, with_selection=settings.refit_with_selection)
    if plan is None:
        return Candidate(first, self_training)
    logger.info("early stopping kept epoch %d of %d; training again on %s rows for %d epochs "
                "(as many updates)", first.best_epoch, first.epochs_run,
                " + ".join(f"{rows} {name}" for name, rows in plan.sizes.items()), plan.epochs)
    with _epoch_progress(plan.epochs, "refitting", None, logger) as show_epoch:
        return Candidate(refit(first, plan, params, on_epoch=show_epoch), self_training, plan)


def _log_self_training(result: SelfTraining, logger) -> None:
    counts = result.counts
    logger.info("self-training: %d unlabeled reviews, %d learnable (%d share a labeled "
                "text, %d are of held-out movies or products, %d repeat a text, %d over "
                "the limit), %d pseudo-labeled", counts["rows"], counts["learnable"],
                counts["labeled_text"], counts["held_out_group"], counts["duplicate_text"],
                counts["over_max_rows"], len(result.pseudo))


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
                   batch_size: int) -> ChampionScores | None:
    """``tasks.training.evaluation.champion_scores`` as a task: the current champion's
    scores on the gate rows, or None without a champion."""
    return champion_scores(registry, gate, batch_size)


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
            if settings.state_url and layout.models.supports_locks:
                # A local registry's lock file too, which runs without the URL take.
                held.enter_context(exclusive_lock(registry.retrain_lock))
            summary = _retrain(settings, registry, force)
    except LockHeldError as exc:
        raise RetrainingBusyError(f"another retraining is running ({exc}); this run leaves the "
                                  "registry untouched. Try again when it has finished.") from exc
    finally:
        state.close()
    return finished(summary, retrain_message(summary))


def _retrain(settings: Settings, registry: Registry, force: bool = False) -> dict:
    """Read, split, (unless nothing is new) train, evaluate on the gate, decide, record,
    report."""
    from tasks.model import architecture

    logger = get_run_logger()
    for leftover in registry.clean_staging():
        logger.warning("removed half-written version %s left by an interrupted run", leftover)
    if swept := sweep_training_leftovers(DataLayout.of(settings)):
        logger.info("removed %d temporaries that killed runs left (%s)", len(swept),
                    ", ".join(sorted({str(p.parent) for p in swept})))
    champion_in_force(registry)  # a lost champion stops the run before anything is read
    # 1. The labeled reviews, and the unlabeled ones self-training learns from.
    reviews, read_stats = read_labeled(settings)
    unlabeled, unlabeled_stats = (read_unlabeled(settings) if settings.self_training
                                  else (None, None))
    # 2. The split, and whether anything is new to learn since the latest version.
    split = split_labeled(reviews, settings.validation_fraction, settings.selection_share)
    logger.info("split by %s: training rows %d, selection rows %d, gate rows %d (%d duplicate "
                "texts removed, %d kept out of training because they are held out)",
                split.split_by, len(split.train), len(split.selection), len(split.gate),
                split.duplicates_removed, split.kept_out_of_training)
    check_parts(split, len(reviews))
    inputs = training_inputs(settings, split, read_stats,
                             architecture(settings.architecture).max_tokens or settings.max_tokens,
                             unlabeled_stats)
    if not force and (latest := unchanged_since(registry, inputs)) is not None:
        row_counts = left_out_rows(read_stats, split, unlabeled_stats, None)
        if (left_out := left_out_warning(row_counts)) is not None:
            logger.warning(left_out)
        return report_nothing_new(registry, latest, {**part_rows(split),
                                                     "row_counts": row_counts})
    failpoint("retrain:before-training")
    # 3. The candidate, self-trained when unlabeled/ is read.
    candidate = train_candidate(split, unlabeled, settings)
    self_training = candidate.self_training_record(unlabeled_stats)
    # 4. The candidate and the champion on the gate rows, all of them and each slice.
    evidence = compare_on_gate(split.gate["label"].to_numpy(),
                               candidate.scores(split.gate, settings.predict_batch_size),
                               score_champion(registry, split.gate, settings.predict_batch_size),
                               gate_slices(split.gate, settings.min_slice_rows,
                                           column_label(settings.columns.slice)))
    # 5. The decision.
    decision = decide_promotion(evidence, PromotionRules.from_settings(settings))
    for judged in decision.slices:
        logger.info("slice %s: %s", describe_slice(judged.record()), judged.verdict)
    # 6. Staged, then published and promoted only if the champion is still the one compared
    # against (tasks.training.registry).
    staged = stage_candidate(registry, candidate, split, settings, read_stats, evidence,
                             decision, self_training)
    version = staged.version
    failpoint("retrain:decided")
    conclusion = conclude(registry, version, decision, evidence.champion_version)
    logger.info("%s %s: %s", conclusion.event.upper(), version, conclusion.reason)
    # 7. The report.
    row_counts = left_out_rows(read_stats, split, unlabeled_stats, self_training)
    if (left_out := left_out_warning(row_counts)) is not None:
        logger.warning(left_out)
    summary = retrain_summary(conclusion, evidence, split, candidate.trained,
                              candidate.pseudo_labeled_rows, row_counts, staged.metrics,
                              str(registry.versions / version / CARD_FILE))
    if summary["gate_caveat"]:
        logger.warning(summary["gate_caveat"])
    publish_artifacts(summary, registry.versions / version)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    from flows.common import run_as_command

    run_as_command("retrain")

"""Flow ``retrain-model``: train a candidate on ``labeled/`` and promote it only on evidence.

Steps: read and validate every labeled file (rejected rows go to
``quarantine/training/``), split three ways by a hash of each review's group (its movie
or product, where the files name one) or else its ``review_id`` (tasks.split): train,
selection (early stopping picks its best epoch there) and gate; train the configured
architecture, evaluate the candidate and the current champion now on the same gate
rows, which neither chose anything by, decide, and record
the version with its metrics, curves, decision and reference profile (for the drift
signals of scoring runs, tasks.monitoring) in the registry. Only one retraining runs
at a time. When the labeled data, the architecture and the training settings are those
of the latest trained version, there is nothing new to learn: the run says so in the
registry history and trains nothing, unless ``force`` is given.

Run it as ``reviewflow retrain`` or ``python -m flows.retrain_model``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import build_validator, settings_from, terminal_progress
from tasks.commit import quarantine_file
from tasks.errors import NoLabeledDataError, RetrainingBusyError
from tasks.evaluation import classification_metrics, decide_promotion, mcnemar_exact
from tasks.failpoints import failpoint
from tasks.layout import CURVES_FILE, DECISION_FILE, METRICS_FILE, part_name
from tasks.ledger import Ledger
from tasks.readers import ReadReport, UnreadableFileError, is_review_file, iter_review_batches
from tasks.registry import MODEL_FILE, PROFILE_FILE, Registry
from tasks.settings import Settings
from tasks.split import PARTS, fingerprint, split_labeled
from tasks.storage import LockHeldError, StagedParquet, exclusive_lock, file_sha256
from tasks.validation import QUARANTINE_SCHEMA, with_source


@task(name="read-labeled", cache_policy=NO_CACHE)
def read_labeled(settings: Settings) -> tuple[pd.DataFrame, dict]:
    """All valid labeled reviews (review_id, text, label) and counts of what was read.

    Rejected rows go to ``quarantine/training/part-<sha>.parquet`` (rewritten on every
    run, so they are never counted twice); unreadable files are moved to quarantine.
    """
    logger = get_run_logger()
    layout = settings.layout
    ledger = Ledger(layout.ledger)
    validator = build_validator(settings, require_label=True)
    frames, stats = [], {"files": 0, "files_quarantined": 0, "rows_read": 0, "rows_rejected": 0,
                         "rows_id_generated": 0, "rows_with_group": 0, "encodings": {}}
    now = datetime.now(UTC)
    contents = []  # (name, sha256) of every file read: the content fingerprint
    for path in sorted(p for p in layout.labeled.rglob("*") if is_review_file(p)):
        sha256 = file_sha256(path)
        rejected = StagedParquet(layout.training_rejects / part_name(sha256),
                                 QUARANTINE_SCHEMA)
        seen: dict = {}  # column -> SeenValues, filled by the validator
        kept, read, dropped = [], 0, 0
        found = ReadReport()
        try:
            for batch in iter_review_batches(path, settings.columns, settings.read_batch_rows,
                                             settings.max_decompressed_bytes,
                                             encodings=settings.encodings,
                                             detect_encoding=settings.detect_encoding,
                                             sha256=sha256, report=found, with_group=True):
                checked = validator.validate(batch, seen, source_name=path.name)
                kept.append(checked.valid.select(["review_id", "text", "label", "group"]))
                rejected.write(with_source(checked.rejected, path.name, sha256, now))
                read += batch.num_rows
                dropped += checked.rejected.num_rows
        except UnreadableFileError as exc:
            rejected.abort()
            logger.warning("quarantined labeled file %s: %s", path.name, exc.reason)
            quarantine_file(path, layout, exc.reason, sha256, ledger)
            stats["files_quarantined"] += 1
            continue
        rejected.commit()
        contents.append(f"{path.relative_to(layout.labeled)}\t{sha256}")
        frame = pa.concat_tables(kept).to_pandas()
        stats["rows_with_group"] += int(frame["group"].notna().sum())
        frames.append(frame)
        stats["files"] += 1
        stats["rows_read"] += read
        stats["rows_rejected"] += dropped
        if found.ids_generated:  # no id column: ids made from the content hash and row
            stats["rows_id_generated"] += read
        if found.encoding:
            stats["encodings"][found.encoding] = stats["encodings"].get(found.encoding, 0) + 1
        logger.info("%s: %d rows, %d rejected%s", path.name, read, dropped,
                    ", ids generated" if found.ids_generated else "")
    if not frames:
        raise NoLabeledDataError(
            f"no usable labeled reviews in {layout.labeled}; add CSV, TSV, JSON (Lines) or Parquet"
            " files with text and label (0/1 or negative/positive) columns (review_id optional)")
    # Ids and labels are fingerprinted per part (metrics.json "parts"); this also
    # notices a text corrected under the same id.
    stats["content_sha256"] = hashlib.sha256("\n".join(contents).encode()).hexdigest()
    reviews = pd.concat(frames, ignore_index=True)
    # The same id in two files: the later file's row is kept (a correction wins).
    before = len(reviews)
    reviews = reviews.drop_duplicates("review_id", keep="last").reset_index(drop=True)
    stats["ids_repeated_across_files"] = before - len(reviews)
    return reviews, stats


@task(name="train-candidate", cache_policy=NO_CACHE)
def train_candidate(train: pd.DataFrame, selection: pd.DataFrame, settings: Settings):
    """Train on ``train``; early stopping picks the best epoch on ``selection``."""
    from tasks.model import TrainingParams, train_model

    params = TrainingParams(architecture=settings.architecture, max_tokens=settings.max_tokens,
                            epochs=settings.epochs, batch_size=settings.batch_size,
                            patience=settings.patience, seed=settings.seed)
    logger = get_run_logger()
    # On a terminal a bar over the most epochs (early stopping may end sooner); else lines.
    bar = terminal_progress(params.epochs, "training",
                            "epochs, loss {task.fields[loss]:.4f}, selection accuracy "
                            "{task.fields[accuracy]:.4f}")

    def show_epoch(epoch: int, logs: dict) -> None:
        loss, accuracy = logs.get("loss", float("nan")), logs.get("val_accuracy", float("nan"))
        if bar is not None:
            bar.update(bar.task_ids[0], completed=epoch, loss=loss, accuracy=accuracy)
            return
        logger.info("epoch %d/%d: loss %.4f, selection loss %.4f, selection accuracy %.4f",
                    epoch, params.epochs, loss, logs.get("val_loss", float("nan")), accuracy)

    if bar is not None:
        bar.add_task("epochs", total=params.epochs, loss=float("nan"), accuracy=float("nan"))
        bar.start()
    try:
        return train_model(_texts(train), train["label"].to_numpy(), _texts(selection),
                           selection["label"].to_numpy(), params, on_epoch=show_epoch)
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
    model = load_model(registry.model_path(pointer["version"]))
    return pointer["version"], predict_scores(model, _texts(gate), batch_size)


def _texts(frame: pd.DataFrame) -> np.ndarray:
    return frame["text"].to_numpy(dtype=object)


def _training_inputs(settings: Settings, split, read_stats: dict) -> dict:
    """What decides a training run's result: the data (fingerprints of each part's ids
    and labels, and of the labeled files' content), the architecture and the training
    settings. The same inputs train the same model (the seed is among them)."""
    from tasks.model import architecture

    return {**{part: fingerprint(getattr(split, part)["review_id"], getattr(split, part)["label"])
               for part in PARTS},
            "content_sha256": read_stats.get("content_sha256"),
            "validation_fraction": settings.validation_fraction,
            "selection_share": settings.selection_share,
            "architecture": settings.architecture,
            "max_tokens": architecture(settings.architecture).max_tokens or settings.max_tokens,
            "epochs": settings.epochs, "batch_size": settings.batch_size,
            "patience": settings.patience, "seed": settings.seed}


def _recorded_inputs(metrics: dict) -> dict:
    """``_training_inputs`` as a version's metrics.json recorded them."""
    parts, hyper = metrics.get("parts", {}), metrics.get("hyperparameters", {})
    # Versions trained before the three-way split have no selection or gate part: they
    # differ, and the first run after the upgrade trains.
    return {**{part: parts.get(part, {}).get("fingerprint") for part in PARTS},
            # Versions trained before the content fingerprint have none: not compared.
            "content_sha256": metrics.get("training_data", {}).get("content_sha256"),
            "validation_fraction": parts.get("validation_fraction"),
            "selection_share": parts.get("selection_share"),
            **{key: hyper.get(key) for key in ("architecture", "max_tokens", "epochs",
                                                "batch_size", "patience", "seed")}}


def nothing_new(inputs: dict, metrics: dict) -> bool:
    """True when ``inputs`` are those the version of ``metrics`` was trained on."""
    recorded = _recorded_inputs(metrics)
    if recorded["content_sha256"] is None:
        inputs = {**inputs, "content_sha256": None}
    return recorded == inputs


def _part_summary(frame: pd.DataFrame, groups: int) -> dict:
    labels = frame["label"].astype(int)
    return {"rows": int(len(frame)), "groups": groups,
            "positive_share": round(float(labels.mean()), 4) if len(frame) else None,
            "fingerprint": fingerprint(frame["review_id"], labels)}


def _parts_record(split, settings: Settings) -> dict:
    """metrics.json "parts": each part's size, groups, balance and fingerprint, and how
    the split was made."""
    return {**{part: _part_summary(getattr(split, part), split.groups[part]) for part in PARTS},
            "split_by": split.split_by, "group_columns": settings.columns.group,
            "duplicates_removed": split.duplicates_removed,
            "kept_out_of_training": split.kept_out_of_training,
            "validation_fraction": settings.validation_fraction,
            "selection_share": settings.selection_share}


@flow(name="retrain-model", log_prints=True)
def retrain_model(data_dir: str | None = None, architecture: str | None = None,
                  epochs: int | None = None, min_delta: float | None = None,
                  require_significance: bool | None = None, force: bool = False) -> dict:
    """Train a candidate and promote it only if it beats the champion on the gate rows.

    When the labeled data, architecture and training settings are the same as for the
    latest trained version, records "nothing new to learn" and trains nothing; ``force``
    trains anyway.
    """
    settings = settings_from(data_dir, architecture=architecture, epochs=epochs,
                             min_delta=min_delta, require_significance=require_significance)
    layout = settings.layout.ensure()
    registry = Registry(layout.models)
    try:
        with exclusive_lock(registry.retrain_lock):
            return _retrain(settings, registry, force)
    except LockHeldError as exc:
        raise RetrainingBusyError(f"another retraining is running ({exc}); this run leaves the "
                                  "registry untouched. Try again when it has finished.") from exc


def _retrain(settings: Settings, registry: Registry, force: bool = False) -> dict:
    import keras
    import tensorflow as tf

    from tasks.model import save_model
    from tasks.plots import plot_training_curves

    logger = get_run_logger()
    for leftover in registry.clean_staging():
        logger.warning("removed half-written version %s left by an interrupted run", leftover)
    reviews, read_stats = read_labeled(settings)
    split = split_labeled(reviews, settings.validation_fraction, settings.selection_share)
    logger.info("split by %s: training rows %d, selection rows %d, gate rows %d (%d duplicate "
                "texts removed, %d kept out of training because they are held out)",
                split.split_by, len(split.train), len(split.selection), len(split.gate),
                split.duplicates_removed, split.kept_out_of_training)
    empty = [part for part in PARTS if getattr(split, part).empty]
    if empty:
        unit = "groups (movies, products)" if split.split_by != "review_id" else "reviews"
        raise NoLabeledDataError(
            f"too few labeled {unit} to fill every part of the split: the {' and '.join(empty)} "
            f"part{'s are' if len(empty) > 1 else ' is'} empty ({len(reviews)} reviews, "
            f"{sum(split.groups.values())} distinct {unit}); add labeled reviews"
            + (" of more items" if split.split_by != "review_id" else ""))
    inputs = _training_inputs(settings, split, read_stats)
    latest = registry.latest_version()
    if not force and latest is not None and nothing_new(
            inputs, registry.read_version(latest).get("metrics", {})):
        return _nothing_new(registry, latest, split)
    failpoint("retrain:before-training")
    trained = train_candidate(split.train, split.selection, settings)
    labels = split.gate["label"].to_numpy()
    from tasks.model import predict_scores

    candidate_scores = predict_scores(trained.model, _texts(split.gate),
                                      settings.predict_batch_size)
    candidate = classification_metrics(labels, candidate_scores)
    champion = score_champion(registry, split.gate, settings.predict_batch_size)
    champion_metrics = paired = None
    if champion is not None:
        champion_metrics = classification_metrics(labels, champion[1])
        paired = mcnemar_exact(labels, champion[1], candidate_scores)
    decision = decide_promotion(
        candidate["accuracy"], champion_metrics["accuracy"] if champion_metrics else None,
        min_delta=settings.min_delta, accuracy_floor=settings.accuracy_floor,
        require_significance=settings.require_significance, alpha=settings.significance_alpha,
        p_value=paired["p_value"] if paired else None, confusion=candidate["confusion_matrix"])

    version = registry.new_version()
    folder = registry.stage(version)
    save_model(trained.model, folder / MODEL_FILE)
    plot_training_curves(trained.history, folder / CURVES_FILE, f"reviewflow {version}")
    (folder / PROFILE_FILE).write_text(json.dumps(
        _reference_profile(trained.model, split, candidate_scores, version, settings), indent=2))
    metrics = {
        "version": version, "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # "validation": the candidate on the gate rows, the figure the decision used.
        "validation": candidate, "validation_part": "gate",
        "selection": _selection_figures(trained), "training_data": read_stats,
        "parts": _parts_record(split, settings),
        "hyperparameters": trained.hyperparameters, "epochs_run": trained.epochs_run,
        "best_epoch": trained.best_epoch, "training_seconds": round(trained.training_seconds, 2),
        "history": trained.history,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "compared_to": {"champion": champion[0] if champion else None,
                        "champion_validation": champion_metrics, "mcnemar": paired},
    }
    decision_record = {"promote": decision.promote, "reason": decision.reason,
                       "decided_at": metrics["trained_at"]}
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str))
    (folder / DECISION_FILE).write_text(json.dumps(decision_record, indent=2))
    failpoint("retrain:staged")
    registry.publish(version)
    failpoint("retrain:published")
    if decision.promote:
        registry.set_champion(version, decision.reason, "promoted")
    else:
        registry.record({"event": "rejected", "version": version, "reason": decision.reason})
    logger.info("%s %s: %s", "PROMOTED" if decision.promote else "REJECTED", version,
                decision.reason)

    summary = {"version": version, "promoted": decision.promote, "reason": decision.reason,
               "validation_accuracy": round(candidate["accuracy"], 4),
               "champion_before": champion[0] if champion else None,
               "champion_accuracy": round(champion_metrics["accuracy"], 4) if champion_metrics else None,
               **_part_rows(split), "epochs_run": trained.epochs_run,
               "training_seconds": round(trained.training_seconds, 1)}
    publish_artifacts(summary, candidate, champion_metrics, registry.versions / version)
    print(json.dumps(summary))
    return summary


def _reference_profile(model, split, validation_scores: np.ndarray, version: str,
                       settings: Settings) -> dict:
    """The version's reference profile (tasks.monitoring.reference_profile)."""
    from tasks.model import model_vocabulary
    from tasks.monitoring import reference_profile

    return reference_profile(pa.array(_texts(split.train), pa.string()),
                             pa.array(_texts(split.gate), pa.string()),
                             validation_scores, split.gate["label"].to_numpy(),
                             model_vocabulary(model), version, settings.architecture)


def _part_rows(split) -> dict:
    """Rows per part for run summaries; "validation_rows" is the gate's (the rows the
    summary's "validation_accuracy" is measured on)."""
    return {"train_rows": len(split.train), "selection_rows": len(split.selection),
            "validation_rows": len(split.gate), "split_by": split.split_by}


def _selection_figures(trained) -> dict:
    """The candidate on the selection rows at the epoch early stopping kept."""
    epoch = trained.best_epoch - 1
    return {"best_epoch": trained.best_epoch,
            **{name: trained.history[key][epoch] for name, key in
               (("loss", "val_loss"), ("accuracy", "val_accuracy")) if key in trained.history}}


def _nothing_new(registry: Registry, latest: str, split) -> dict:
    """Record that there is nothing new to learn; no version is made."""
    logger = get_run_logger()
    reason = (f"nothing new to learn: the labeled data, architecture and training settings "
              f"are those {latest} was trained on; add or correct labeled reviews, change "
              f"a training setting, or retrain anyway with --force (flow parameter force)")
    registry.record({"event": "nothing new to learn", "version": latest, "reason": reason})
    logger.info(reason)
    pointer = registry.champion()
    summary = {"version": None, "promoted": False, "nothing_new": True, "reason": reason,
               "latest_version": latest, "champion_before": pointer["version"] if pointer else None,
               **_part_rows(split)}
    create_markdown_artifact(key="retrain-decision",
                             markdown=f"# Nothing new to learn\n\n{reason}\n",
                             description="Promotion decision and training curves")
    print(json.dumps(summary))
    return summary


def publish_artifacts(summary: dict, candidate: dict, champion: dict | None,
                      folder: Path) -> None:
    rows = [{"metric": name, "candidate": round(candidate[name], 4),
             "champion": round(champion[name], 4) if champion else None}
            for name in ("accuracy", "loss", "roc_auc", "precision", "recall", "f1")]
    create_table_artifact(key="retrain-comparison", table=rows,
                          description="Candidate and champion on the same gate rows")
    image = base64.b64encode((folder / CURVES_FILE).read_bytes()).decode()
    verdict = "Promoted" if summary["promoted"] else "Rejected"
    create_markdown_artifact(
        key="retrain-decision",
        markdown=f"# {verdict}: {summary['version']}\n\n{summary['reason']}\n\n"
                 f"![training curves](data:image/png;base64,{image})\n",
        description="Promotion decision and training curves")


if __name__ == "__main__":
    from flows.common import run_as_command

    run_as_command("retrain")

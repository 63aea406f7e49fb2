"""What a training run records, and when there is nothing new to learn.

Plain functions over the split, the settings and the trained model's figures; the
retraining flow calls them and the registry writes what they return
(``Registry.write_record``).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import pandas as pd

from tasks.errors import NoLabeledDataError
from tasks.settings import Settings
from tasks.training.calibration import CALIBRATION_BINS
from tasks.training.evaluation import GateComparison
from tasks.training.promotion import Conclusion, Decision, PromotionRules
from tasks.training.self_training import LEFT_OUT_REASONS
from tasks.training.split import PARTS, Split, fingerprint

# The keys of metrics.json "hyperparameters" that decide a run's result.
_DECIDING_HYPERPARAMETERS = ("architecture", "max_tokens", "epochs", "batch_size", "patience",
                             "seed", "refit_with_selection", "self_training",
                             "pseudo_label_confidence", "max_unlabeled_rows")


def check_parts(split: Split, reviews: int) -> None:
    """Raise ``NoLabeledDataError`` when a part of the split is empty."""
    empty = [part for part in PARTS if getattr(split, part).empty]
    if not empty:
        return
    by_group = split.split_by != "review_id"
    unit = "groups (movies, products)" if by_group else "reviews"
    raise NoLabeledDataError(
        f"too few labeled {unit} to fill every part of the split: the {' and '.join(empty)} "
        f"part{'s are' if len(empty) > 1 else ' is'} empty ({reviews} reviews, "
        f"{sum(split.groups.values())} distinct {unit}); add labeled reviews"
        + (" of more items" if by_group else ""))


def training_inputs(settings: Settings, split: Split, read_stats: dict,
                    max_tokens: int, unlabeled_stats: dict | None = None) -> dict:
    """What decides a training run's result: the data (fingerprints of each part's ids
    and labels, of the labeled files' content and of the unlabeled files' content when
    self-training reads them), the architecture and the training settings
    (``max_tokens``: the architecture's own vocabulary size). The same inputs train the
    same model (the seed is among them)."""
    return {**{part: fingerprint(getattr(split, part)["review_id"], getattr(split, part)["label"])
               for part in PARTS},
            "content_sha256": read_stats.get("content_sha256"),
            "unlabeled_sha256": (unlabeled_stats or {}).get("content_sha256"),
            "validation_fraction": settings.validation_fraction,
            "selection_share": settings.selection_share,
            "architecture": settings.architecture, "max_tokens": max_tokens,
            "epochs": settings.epochs, "batch_size": settings.batch_size,
            "patience": settings.patience, "seed": settings.seed,
            **_training_switches(settings)}


def _training_switches(settings: Settings) -> dict:
    """The training settings beyond ``tasks.model.TrainingParams`` that change the model."""
    return {"refit_with_selection": settings.refit_with_selection,
            "self_training": settings.self_training,
            "pseudo_label_confidence": settings.pseudo_label_confidence,
            "max_unlabeled_rows": settings.max_unlabeled_rows}


def recorded_inputs(metrics: dict) -> dict:
    """``training_inputs`` as a version's metrics.json recorded them."""
    parts, hyper = metrics.get("parts", {}), metrics.get("hyperparameters", {})
    # Versions trained before the three-way split have no selection or gate part: they
    # differ, and the first run after the upgrade trains.
    return {**{part: parts.get(part, {}).get("fingerprint") for part in PARTS},
            # Versions trained before the content fingerprint have none: not compared.
            "content_sha256": metrics.get("training_data", {}).get("content_sha256"),
            "unlabeled_sha256": metrics.get("self_training", {}).get("content_sha256"),
            "validation_fraction": parts.get("validation_fraction"),
            "selection_share": parts.get("selection_share"),
            **{key: hyper.get(key) for key in _DECIDING_HYPERPARAMETERS}}


def nothing_new(inputs: dict, metrics: dict) -> bool:
    """True when ``inputs`` are those the version of ``metrics`` was trained on."""
    recorded = recorded_inputs(metrics)
    if recorded["content_sha256"] is None:
        inputs = {**inputs, "content_sha256": None}
    return recorded == inputs


def unchanged_since(registry, inputs: dict) -> str | None:
    """The latest trained version of ``registry`` (``tasks.training.registry.Registry``)
    when ``inputs`` (``training_inputs``) are those it was trained on, else None."""
    latest = registry.latest_version()
    if latest is None or not nothing_new(inputs, registry.read_version(latest).get("metrics", {})):
        return None
    return latest


def nothing_new_reason(latest: str) -> str:
    return (f"nothing new to learn: the labeled data, architecture and training settings "
            f"are those {latest} was trained on; add or correct labeled reviews, change "
            f"a training setting, or retrain anyway with --force (flow parameter force)")


def part_summary(frame: pd.DataFrame, groups: int) -> dict:
    labels = frame["label"].astype(int)
    return {"rows": int(len(frame)), "groups": groups,
            "positive_share": round(float(labels.mean()), 4) if len(frame) else None,
            "fingerprint": fingerprint(frame["review_id"], labels)}


def parts_record(split: Split, settings: Settings) -> dict:
    """metrics.json "parts": each part's size, groups, balance and fingerprint, and how
    the split was made."""
    return {**{part: part_summary(getattr(split, part), split.groups[part]) for part in PARTS},
            "split_by": split.split_by, "group_columns": settings.columns.group,
            "duplicates_removed": split.duplicates_removed,
            "kept_out_of_training": split.kept_out_of_training,
            "validation_fraction": settings.validation_fraction,
            "selection_share": settings.selection_share}


def gate_caveat(split_by: str, group_columns: list[str]) -> str | None:
    """What a split by review id means for the gate's figures, and the setting that
    fixes it; None for a split by group."""
    if split_by == "group":
        return None
    which = ("the labeled reviews were" if split_by == "review_id" else
             "the labeled reviews that name no movie or product were")
    looked_for = ", ".join(group_columns) if group_columns else "none"
    return (f"{which} split by review id: reviews of one movie or product may sit on both "
            "sides of the split, so the gate accuracy can be optimistic. Name the column "
            "that says what each review is about in REVIEWFLOW_COLUMNS__GROUP (looked for: "
            f"{looked_for})")


def part_rows(split: Split) -> dict:
    """Rows per part for run summaries; "validation_rows" is the gate's (the rows the
    summary's "validation_accuracy" is measured on)."""
    return {"train_rows": len(split.train), "selection_rows": len(split.selection),
            "validation_rows": len(split.gate), "split_by": split.split_by}


def selection_figures(history: dict[str, list[float]], best_epoch: int) -> dict:
    """The candidate on the selection rows at the epoch early stopping kept."""
    return {"best_epoch": best_epoch,
            **{name: history[key][best_epoch - 1] for name, key in
               (("loss", "val_loss"), ("accuracy", "val_accuracy")) if key in history}}


def version_metrics(version: str, trained, split: Split, settings: Settings, read_stats: dict,
                    evidence: GateComparison, library_versions: dict,
                    self_training: dict | None = None,
                    decision: Decision | None = None) -> dict:
    """metrics.json of a new version. ``trained``: ``tasks.model.TrainedModel``;
    ``evidence``: the candidate and the champion on the gate rows; ``self_training``:
    what unlabeled/ gave (files, rows left out and why, pseudo-labels per class, its
    content fingerprint) or None when it was not read; ``decision``: its slices' verdicts
    ("slices")."""
    return {
        "version": version, "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # "validation": the candidate on the gate rows, the figure the decision used.
        "validation": evidence.candidate, "validation_part": "gate",
        "selection": selection_figures(trained.history, trained.best_epoch),
        "training_data": read_stats, "parts": parts_record(split, settings),
        "self_training": self_training or {},
        "hyperparameters": {**trained.hyperparameters, **_training_switches(settings)},
        "epochs_run": trained.epochs_run,
        "best_epoch": trained.best_epoch, "training_seconds": round(trained.training_seconds, 2),
        "history": trained.history, "versions": library_versions,
        "compared_to": evidence.compared_to(),
        "slices": decision.slice_records() if decision is not None else [],
        "calibration": {"bins": CALIBRATION_BINS, **evidence.calibration},
        "promotion_rules": asdict(PromotionRules.from_settings(settings)),
        "gate_caveat": gate_caveat(split.split_by, settings.columns.group),
    }


def retrain_summary(conclusion: Conclusion, evidence: GateComparison, split: Split,
                    trained, pseudo_labeled_rows: int, row_counts: dict,
                    metrics: dict | None = None, model_card: str | None = None) -> dict:
    """What a retraining that trained returns and prints: the version and what became of
    it, the candidate's and the champion's gate accuracy and calibration error, the rows
    of each part and what the split means for the gate (``gate_caveat``), each slice as
    metrics.json records it (``metrics``: the version's), the training's length and rows
    (``trained``: the candidate's ``TrainedModel``), ``row_counts`` (``left_out_rows``)
    and where the model card is."""
    champion_accuracy = evidence.champion_accuracy
    metrics = metrics or {}
    return {"version": conclusion.version, "promoted": conclusion.promoted,
            "reason": conclusion.reason,
            "validation_accuracy": round(evidence.candidate_accuracy, 4),
            "champion_before": evidence.champion_version,
            "champion_accuracy": (round(champion_accuracy, 4) if champion_accuracy is not None
                                  else None),
            "expected_calibration_error": evidence.candidate["expected_calibration_error"],
            **part_rows(split), "gate_caveat": metrics.get("gate_caveat"),
            "slices": metrics.get("slices", []), "epochs_run": trained.epochs_run,
            "final_training_rows": trained.train_rows,
            "pseudo_labeled_rows": pseudo_labeled_rows,
            "training_seconds": round(trained.training_seconds, 1),
            "row_counts": row_counts, "model_card": model_card}


def left_out_rows(read_stats: dict, split: Split, unlabeled_stats: dict | None,
                  self_training: dict | None) -> dict:
    """For the run summary: every row read, and those training left out, by why.

    Labeled rows: read, rejected by the suite (in ``quarantine/training/``), and texts
    that repeat another labeled row's (kept once, ``tasks.training.split``); the rest are trained
    on or held out. Unlabeled rows (when ``unlabeled/`` was read): read, rejected (in
    ``quarantine/unlabeled/``), and each reason ``tasks.training.self_training`` leaves one out.
    Nothing is left out for a review id another file also uses.
    """
    kept = len(split.train) + len(split.selection) + len(split.gate)
    counts = {"labeled_rows_read": int(read_stats["rows_read"]),
              "labeled_rows_rejected": int(read_stats["rows_rejected"]),
              "labeled_duplicate_texts": int(split.duplicates_removed),
              "labeled_rows_trained_or_held_out": kept}
    if unlabeled_stats is not None:
        counts.update(unlabeled_rows_read=int(unlabeled_stats["rows_read"]),
                      unlabeled_rows_rejected=int(unlabeled_stats["rows_rejected"]))
        if self_training is not None:
            counts.update({f"unlabeled_{why}": int(self_training[why])
                           for why in LEFT_OUT_REASONS},
                          unlabeled_learnable=int(self_training["learnable"]))
    return counts


def left_out_warning(counts: dict) -> str | None:
    """One line with the counts of ``left_out_rows``, or None when nothing was left out."""
    labeled = counts["labeled_rows_rejected"] + counts["labeled_duplicate_texts"]
    unlabeled_reasons = {why: counts.get(f"unlabeled_{why}", 0) for why in LEFT_OUT_REASONS}
    unlabeled = counts.get("unlabeled_rows_rejected", 0) + sum(unlabeled_reasons.values())
    if not labeled and not unlabeled:
        return None
    line = (f"training left out {labeled} of {counts['labeled_rows_read']} labeled rows read "
            f"({counts['labeled_rows_rejected']} rejected, in quarantine/training/; "
            f"{counts['labeled_duplicate_texts']} repeat another row's text, kept once)")
    if unlabeled:
        line += (f" and {unlabeled} of {counts['unlabeled_rows_read']} unlabeled rows "
                 f"({counts['unlabeled_rows_rejected']} rejected, in quarantine/unlabeled/; "
                 f"{unlabeled_reasons['labeled_text']} repeat a labeled text, "
                 f"{unlabeled_reasons['held_out_group']} are of held-out movies or products, "
                 f"{unlabeled_reasons['duplicate_text']} repeat an unlabeled text, "
                 f"{unlabeled_reasons['over_max_rows']} over REVIEWFLOW_MAX_UNLABELED_ROWS)")
    return line


def architecture_and_rows(metrics: dict) -> tuple[str | None, int | None]:
    """A version's architecture and the rows its model learned from, from its
    metrics.json: the refit's rows (training, selection and pseudo-labeled) when it was
    refit, else the training part's; None where a version recorded neither."""
    hyper = metrics.get("hyperparameters") or {}
    refit = hyper.get("refit") or {}
    rows = refit.get("rows", (metrics.get("parts") or {}).get("train", {}).get("rows"))
    return hyper.get("architecture"), rows

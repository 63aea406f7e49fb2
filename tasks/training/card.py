"""A version's record files, and its model card: one page on its data, split, slices,
calibration, curves and decision.

``write_record`` writes what a staged version holds beside its model: metrics.json,
decision.json, profile.json, the pictures (``tasks.training.plots``) and card.md, which
``Registry.publish`` then moves (or uploads) with the model, on a local or an object
storage registry alike. ``model_card`` renders the card in Markdown from metrics.json and
decision.json alone, so it says what they say; ``images`` names each picture: their file
names beside the card, or ``data:`` URIs where the card is shown elsewhere (the Prefect
artifact of the retraining, ``flows.retrain_report``).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tasks.layout import (
    CARD_FILE,
    CURVES_FILE,
    DECISION_FILE,
    METRICS_FILE,
    PROFILE_FILE,
    RELIABILITY_FILE,
)
from tasks.training.calibration import CALIBRATION_BINS

# The pictures of a version, by what the card calls them.
PICTURES = {"curves": CURVES_FILE, "reliability": RELIABILITY_FILE}


def write_record(folder: Path, metrics: dict, decision: dict, profile: dict) -> None:
    """Every record file of the version staged in ``folder``."""
    from tasks.training.plots import plot_reliability, plot_training_curves  # matplotlib

    plot_training_curves(metrics, folder / CURVES_FILE)
    plot_reliability(metrics, folder / RELIABILITY_FILE)
    (folder / PROFILE_FILE).write_text(json.dumps(profile, indent=2))
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str))
    (folder / DECISION_FILE).write_text(json.dumps(decision, indent=2))
    write_card(folder)


def write_card(folder: Path) -> None:
    """card.md of the version in ``folder``, from its metrics.json and decision.json
    (again after the decision changed); nothing for a folder without metrics.json."""
    if not (folder / METRICS_FILE).exists():
        return
    metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    decision = json.loads((folder / DECISION_FILE).read_text(encoding="utf-8"))
    (folder / CARD_FILE).write_text(model_card(metrics, decision, PICTURES), encoding="utf-8")


def embedded_pictures(folder) -> dict[str, str]:
    """The pictures of the version in ``folder`` (a local or object-storage path) as
    ``data:`` URIs, for a card shown where the files are not."""
    return {name: "data:image/png;base64," + base64.b64encode(
        (folder / file).read_bytes()).decode() for name, file in PICTURES.items()}


def verdict_of(decision: dict) -> str:
    if decision.get("champion_changed"):
        return "Not promoted (the champion changed during training)"
    return "Promoted" if decision.get("promote") else "Not promoted"


def model_card(metrics: dict, decision: dict, images: dict[str, str]) -> str:
    """The card, in Markdown (see the module's docstring)."""
    lines = [f"# Model card: {metrics['version']}", "",
             f"**{verdict_of(decision)}**: "
             f"{decision.get('reason', '').removeprefix('not promoted: ')}", ""]
    caveat = metrics.get("gate_caveat")
    if caveat:
        lines += [f"> **Gate accuracy may be optimistic:** {caveat}.", ""]
    lines += _data(metrics) + _split(metrics) + _gate(metrics) + _slices(metrics)
    lines += _calibration(metrics, images["reliability"]) + _training(metrics, images["curves"])
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def _figure(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _data(metrics: dict) -> list[str]:
    data, self_training = metrics.get("training_data", {}), metrics.get("self_training") or {}
    lines = ["## Data", "",
             f"{data.get('files', '?')} labeled files ({data.get('files_quarantined', 0)} "
             f"quarantined whole), {data.get('rows_read', 0):,} rows read, "
             f"{data.get('rows_rejected', 0):,} rejected by the expectation suite "
             "(quarantine/training/)."]
    pseudo = self_training.get("pseudo_labeled") or {}
    if sum(pseudo.values()):
        lines.append(f"Self-training: {sum(pseudo.values()):,} unlabeled reviews "
                     f"pseudo-labeled ({pseudo.get('positive', 0):,} positive, "
                     f"{pseudo.get('negative', 0):,} negative).")
    return [*lines, ""]


def _split(metrics: dict) -> list[str]:
    parts = metrics.get("parts", {})
    names = {"train": "training", "selection": "selection (early stopping)",
             "gate": "gate (the promotion decision)"}
    rows = [[names[part], f"{parts[part]['rows']:,}", f"{parts[part]['groups']:,}",
             _figure(parts[part].get("positive_share"))] for part in names if part in parts]
    return ["## Split", "", f"By {parts.get('split_by', '?')}; "
            f"{parts.get('duplicates_removed', 0):,} duplicate texts kept once.", "",
            *_table(["part", "rows", "groups", "positive share"], rows)]


def _gate(metrics: dict) -> list[str]:
    mine = metrics.get("validation", {})
    compared = metrics.get("compared_to") or {}
    theirs = compared.get("champion_validation") or {}
    champion = compared.get("champion")
    rows = [[name, _figure(mine.get(key)), _figure(theirs.get(key)) if champion else
             "no champion yet"] for name, key in
            (("accuracy", "accuracy"), ("expected calibration error",
                                        "expected_calibration_error"),
             ("ROC AUC", "roc_auc"), ("F1", "f1"), ("log loss", "loss"))]
    mcnemar = compared.get("mcnemar")
    paired = (f" Exact McNemar test on the paired predictions: p={mcnemar['p_value']:.3g} "
              f"({mcnemar['only_candidate_right']} rows right only by the candidate, "
              f"{mcnemar['only_champion_right']} only by the champion).") if mcnemar else ""
    scored = (f"Candidate and champion ({champion}) scored now on the same "
              f"{mine.get('rows', 0):,} gate rows.{paired}" if champion else
              f"Candidate scored on {mine.get('rows', 0):,} gate rows; no champion yet "
              "(the first model).")
    return ["## Gate figures", "", scored, "",
            *_table(["figure", "candidate", "champion"], rows)]


def _slices(metrics: dict) -> list[str]:
    slices = metrics.get("slices") or []
    rules = metrics.get("promotion_rules") or {}
    rows = [[s["slice"], f"{s['rows']:,}", _figure(s["candidate_accuracy"]),
             _figure(s["champion_accuracy"]),
             "-" if s["p_value"] is None else f"{s['p_value']:.2g}", s["verdict"]]
            for s in slices]
    rule = (f"A slice is judged with at least {rules['min_slice_rows']:,} gate rows; the "
            f"candidate is refused on one where it is significantly worse (exact McNemar, "
            f"p < {rules['alpha']}) or more than {rules['max_slice_drop']} below the "
            "champion.") if rules else ""
    return ["## Slices", "", "The gate rows by the script each review is mainly written in "
            f"(and by the slice column, if any). {rule}", "",
            *_table(["slice", "gate rows", "candidate", "champion", "p", "verdict"], rows)]


def _calibration(metrics: dict, picture: str) -> list[str]:
    found = (metrics.get("calibration") or {}).get("candidate") or {}
    bins = [b for b in found.get("bins", []) if b["rows"]]
    rows = [[f"{b['lower']:.1f}-{b['upper']:.1f}", f"{b['rows']:,}", _figure(b["mean_score"]),
             _figure(b["positive_share"])] for b in bins]
    return ["## Calibration", "",
            f"Expected calibration error {_figure(found.get('expected_calibration_error'))}: "
            f"the scores cut into {CALIBRATION_BINS} equal-width bins, the mean of |share "
            "positive - mean score| weighted by rows. Of the gate reviews scored in a bin, "
            "this share was positive:", "",
            *_table(["score", "gate rows", "mean score", "positive share"], rows),
            f"![reliability diagram]({picture})", ""]


def _training(metrics: dict, picture: str) -> list[str]:
    hyper = metrics.get("hyperparameters", {})
    refit = hyper.get("refit")
    again = (f" Then trained again from scratch on {refit['rows']:,} rows for "
             f"{refit['epochs']} epochs (the candidate)." if refit else "")
    return ["## Training", "",
            f"Architecture {hyper.get('architecture')}; {metrics.get('epochs_run')} epochs "
            f"run of at most {hyper.get('epochs')}, epoch {metrics.get('best_epoch')} kept by "
            f"early stopping on the selection rows.{again} "
            f"{metrics.get('training_seconds', 0):.0f} s.", "",
            f"![training curves]({picture})", ""]

"""What a retraining run shows in Prefect: its model card, its comparison with the champion
and its slices, as artifacts.

The pictures travel inside the markdown as ``data:`` URIs: the Prefect UI shows them
whatever the data root is (a local folder the browser cannot open, or a bucket it has no
credentials for) and as long as the run is kept, where a link would need the registry to
be served. (An image artifact would do the same with a URL, but the UI prints its whole
URL under the picture.) The tables hold short strings, the deciding columns first, so
they read whole at a normal window width.
"""

from __future__ import annotations

import json

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.layout import DECISION_FILE, METRICS_FILE
from tasks.training.card import embedded_pictures, model_card
from tasks.training.events import HistoryEvent
from tasks.training.record import nothing_new_reason
from tasks.training.registry import Registry

FIGURES = (("accuracy", "accuracy"), ("expected calibration error", "expected_calibration_error"),
           ("ROC AUC", "roc_auc"), ("precision", "precision"), ("recall", "recall"),
           ("F1", "f1"), ("log loss", "loss"))


def report_nothing_new(registry: Registry, latest: str, rows: dict) -> dict:
    """Record that there is nothing new to learn; no version is made."""
    reason = nothing_new_reason(latest)
    registry.record({"event": HistoryEvent.NOTHING_NEW, "version": latest, "reason": reason})
    get_run_logger().info(reason)
    pointer = registry.champion()
    summary = {"version": None, "promoted": False, "nothing_new": True, "reason": reason,
               "latest_version": latest, "champion_before": pointer["version"] if pointer else None,
               **rows}
    create_markdown_artifact(key="retrain-decision",
                             markdown=f"# Nothing new to learn\n\n{reason}\n",
                             description="Promotion decision and training curves")
    print(json.dumps(summary))
    return summary


def comparison_rows(metrics: dict) -> list[dict]:
    """The candidate and the champion on the gate rows, a figure a row."""
    mine = metrics["validation"]
    theirs = (metrics.get("compared_to") or {}).get("champion_validation")
    return [{"figure": name, "candidate": _figure(mine.get(key)),
             "champion": _figure(theirs.get(key)) if theirs else "no champion yet"}
            for name, key in FIGURES]


def slice_rows(metrics: dict) -> list[dict]:
    """Each slice of the gate rows, with the guard's verdict."""
    return [{"slice": s["slice"], "verdict": s["verdict"], "gate rows": f"{s['rows']:,}",
             "candidate": _figure(s["candidate_accuracy"]),
             "champion": _figure(s["champion_accuracy"]),
             "p-value": "-" if s["p_value"] is None else f"{s['p_value']:.2g}"}
            for s in metrics.get("slices") or []]


def _figure(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def publish_artifacts(summary: dict, folder) -> None:
    """The version's model card (decision, slices, calibration, curves), the comparison
    table and the slice table, from the version's published record in ``folder``."""
    metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    decision = json.loads((folder / DECISION_FILE).read_text(encoding="utf-8"))
    champion = (metrics.get("compared_to") or {}).get("champion")
    rows = metrics["validation"]["rows"]
    create_table_artifact(
        key="retrain-comparison", table=comparison_rows(metrics),
        description=(f"Candidate {summary['version']} and champion {champion} on the same "
                     f"{rows:,} gate rows" if champion else
                     f"Candidate {summary['version']} on {rows:,} gate rows; no champion "
                     "yet, so nothing to compare with (the first model)"))
    create_table_artifact(
        key="retrain-slices", table=slice_rows(metrics),
        description=f"Candidate {summary['version']} and the champion on each slice of the "
                    "gate rows, and the promotion guard's verdict")
    create_markdown_artifact(
        key="retrain-decision", markdown=model_card(metrics, decision, embedded_pictures(folder)),
        description="Model card: decision, data, split, gate figures, slices, calibration "
                    "and training curves")

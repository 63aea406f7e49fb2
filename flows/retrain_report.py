"""What a retraining run shows in Prefect: its decision, comparison and curves as artifacts."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.layout import CURVES_FILE
from tasks.training.evaluation import GateComparison
from tasks.training.events import HistoryEvent
from tasks.training.record import nothing_new_reason
from tasks.training.registry import Registry


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


def publish_artifacts(summary: dict, evidence: GateComparison, folder: Path) -> None:
    """The comparison table and the decision with its training curves, as artifacts."""
    candidate = evidence.candidate
    champion = evidence.champion.figures if evidence.champion else None
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

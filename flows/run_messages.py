"""What a finished run says where a person looks: its final state's message, which the
Prefect UI shows beside the run and ``prefect deployment run --watch`` prints in the run's
last log line (``Finished in state Completed('scored …')``).

A flow returns ``finished(summary, message)``: a Completed state whose message is one
line of counts and whose data is the summary, so the run's result, and what calling the
flow as a function returns, is the summary dict as before (Prefect's engine returns a
returned state's data).
"""

from __future__ import annotations

from prefect.states import Completed, State


def finished(summary: dict, message: str) -> State:
    """The Completed state a flow returns: ``message`` for a person, ``summary`` as the result."""
    return Completed(message=message, data=summary)


def files_waiting(summary: dict) -> int:
    """Files a scoring run left in the inbox for a later run: still being written
    (settling), claimed by another run, or changed while it read them."""
    return summary["files_settling"] + summary["files_busy"] + summary["files_changed"]


def score_message(summary: dict) -> str:
    """``scored 120 rows from 3 files; 4 rows and 1 file quarantined; 2 files waiting``."""
    if summary["model_version"] is None:  # no champion: the note says what waits and why
        return summary["inbox"]
    line = (f"scored {summary['rows_scored']} rows from {summary['files_scored']} files with "
            f"{summary['model_version']}; {summary['rows_quarantined']} rows and "
            f"{summary['files_quarantined']} files quarantined; {files_waiting(summary)} files "
            "waiting")
    if summary["files_already_scored"]:
        line += f"; {summary['files_already_scored']} files already scored"
    return line


def retrain_message(summary: dict) -> str:
    """The candidate, whether it was promoted, and why."""
    if summary.get("nothing_new"):
        return f"no new version: {summary['reason']}"
    verdict = "promoted to champion" if summary["promoted"] else "not promoted"
    return (f"candidate {summary['version']} {verdict} (gate accuracy "
            f"{summary['validation_accuracy']:.4f} on {summary['validation_rows']} rows): "
            f"{summary['reason']}")


def accuracy_message(summary: dict) -> str:
    """The join's counts and the champion's production accuracy against its gate."""
    line = (f"late labels: {summary['labeled_reviews']} labeled reviews, "
            f"{summary['matched_reviews']} of them scored")
    champion = summary["champion"]
    figures = next((v for v in summary["versions"] if v["model_version"] == champion), None)
    if figures is None or figures["accuracy"] is None:
        return f"{line}; champion {champion or '-'}: no late label matched"
    gate = figures["gate_accuracy"]
    line += (f"; champion {champion}: accuracy {figures['accuracy']:.4f} on {figures['rows']} "
             f"reviews (gate {'-' if gate is None else f'{gate:.4f}'})")
    if figures["dropped"]:
        line += f", dropped in {', '.join(d['where'] for d in figures['dropped'])}"
    return line


def rescore_message(summary: dict) -> str:
    """``rescored 120 rows from 3 files with v2; 4 rows quarantined; 2 files skipped (already
    scored by v2); 1 file failed; 0 files busy``."""
    return (f"rescored {summary['rows_scored']} rows from {summary['files_scored']} files with "
            f"{summary['model_version']}; {summary['rows_quarantined']} rows quarantined; "
            f"{summary['files_already_scored']} files skipped (already scored by "
            f"{summary['model_version']}); {summary['files_failed']} files failed; "
            f"{summary['files_busy'] + summary['files_changed']} files busy")

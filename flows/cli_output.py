"""What ``reviewflow score`` and ``reviewflow retrain`` print when their run ends.

For a person, a few lines. With ``--json``, for a script, the run summary the flow
returned (the dict ``score_reviews`` / ``retrain_model`` return), as one JSON document on
standard output and nothing else there: while the run goes on, whatever the command or a
library prints goes to standard error, beside the logs (``summary_only_on_stdout``).
A scoring run that never started because nothing was ready is ``null`` (the reason is
on standard error); a command that fails prints nothing on standard output.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def summary_only_on_stdout(as_json: bool) -> Iterator[None]:
    """With ``as_json``, standard output is kept for the summary while the block runs."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def print_json(summary: dict | None) -> None:
    print(json.dumps(summary), flush=True)


def print_score(summary: dict | None, as_json: bool = False) -> None:
    """The end of ``reviewflow score``; ``None``: no run (nothing was ready)."""
    if as_json:
        print_json(summary)
        return
    if summary is None:  # the command has said why
        return
    print(f"\nscored {summary['rows_scored']} rows from {summary['files_scored']} files with model "
          f"{summary['model_version']} on {summary['device']}; {summary['rows_quarantined']} rows and "
          f"{summary['files_quarantined']} files quarantined; {summary['files_already_scored']} "
          f"files already scored")
    if summary["accuracy_on_labeled_rows"] is not None:
        print(f"accuracy on rows that carried a label: {summary['accuracy_on_labeled_rows']:.4f}")
    print(f"{summary['reviews_per_second']:.0f} reviews/s while scoring; run took "
          f"{summary['seconds']:.1f} s")


def print_retrain(summary: dict, as_json: bool = False) -> None:
    """The end of ``reviewflow retrain``: the candidate, the verdict and why."""
    if as_json:
        print_json(summary)
        return
    if summary.get("nothing_new"):
        print(f"\nno new version: {summary['reason']}")
        return
    verdict = "promoted to champion" if summary["promoted"] else "not promoted"
    by = "movies/products" if summary.get("split_by", "review_id") != "review_id" else "reviews"
    print(f"\ncandidate {summary['version']}: held-out accuracy "
          f"{summary['validation_accuracy']:.4f} on {summary['validation_rows']} gate rows "
          f"(held out by {by}); {verdict}")
    if summary.get("pseudo_labeled_rows"):
        print(f"learned from {summary['final_training_rows']} rows, "
              f"{summary['pseudo_labeled_rows']} of them pseudo-labeled from unlabeled/")
    for line in version_lines(summary):
        print(line)
    print(f"reason: {summary['reason']}")
    if summary.get("model_card"):
        print(f"model card: {summary['model_card']}")


def version_lines(record: dict) -> list[str]:
    """A version's slices, calibration and gate caveat, a line each, from its run summary
    or its metrics.json (the same keys): what ``reviewflow retrain`` prints and
    ``reviewflow models list --verbose`` shows under each version."""
    from tasks.training.slices import describe_slice

    lines = [f"  slice {describe_slice(s)}: {s['verdict']}" for s in record.get("slices") or []]
    error = record.get("expected_calibration_error",
                       (record.get("validation") or {}).get("expected_calibration_error"))
    if error is not None:
        lines.append(f"  expected calibration error on the gate rows: {error:.4f}")
    if record.get("gate_caveat"):
        lines.append(f"  note: {record['gate_caveat']}")
    return lines

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
    print(f"reason: {summary['reason']}")

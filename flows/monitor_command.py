"""``reviewflow monitor``: the drift signals of recent scoring runs and the production
accuracy on late labels, per model version, as lines or as one JSON document, and the
trends picture.

No Prefect, no TensorFlow: it reads ``monitoring/`` and the registry, and runs the late
labels' join itself (``tasks.late_labels``, as the ``measure-accuracy`` flow does), so
its figures are those of the labels and scores there now; it rewrites
``production_accuracy/`` with them. A drop it finds is printed as a WARNING line; the
Prefect event is the flow's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tasks.late_labels import drop_message, measure_production_accuracy, write_accuracy
from tasks.layout import TRENDS_FILE, DataLayout
from tasks.monitoring import Thresholds, plot_trends, read_monitoring, run_figures
from tasks.training.registry import Registry

RUN_COLUMNS = ("oov_rate", "score_psi", "length_psi", "script_shift", "positive_share",
               "accuracy")
FILE_COLUMNS = ["source_file", "rows", "oov_rate", "length_psi", "score_psi", "script_shift",
                "positive_share", "accuracy", "flags"]


def monitor(args, settings) -> None:
    """Measure, write ``production_accuracy/`` and the PNG, then print (``args.json``:
    one JSON document on stdout, nothing else there)."""
    layout = DataLayout.of(settings)
    layout.check_contained()  # it writes production_accuracy/ and the PNG: never through a link
    registry = Registry(layout.models)
    champion = registry.current_version()
    table = read_monitoring(layout.monitoring)
    frame = (table.to_pandas().sort_values(["run_started", "source_file"])
             if table is not None else None)
    measured = measure_production_accuracy(layout, settings, registry)
    write_accuracy(layout, measured.parts)
    versions = sorted({*(frame["model_version"].unique() if frame is not None else ()),
                       *measured.versions}, key=lambda v: (v != champion, v))
    profiles = {version: registry.read_profile(version) for version in versions}
    runs = run_figures(frame, profiles) if frame is not None else []
    png = None
    if runs or measured.versions:
        production = {"champion": champion, "versions": measured.versions,
                      "max_drop": measured.limits.max_drop, "min_rows": measured.limits.min_rows}
        # "_": pyarrow, pandas and DuckDB globs of the dataset skip the PNG beside the parts.
        png = plot_trends(runs, Path(args.png) if args.png else layout.monitoring / TRENDS_FILE,
                          profiles, Thresholds.from_settings(settings), production)
    drops = [drop_message(version, figures, measured.limits)
             for version, figures in measured.versions.items() if figures["dropped"]]
    if getattr(args, "json", False):
        print(json.dumps(monitor_document(versions, champion, runs, measured, args.runs, png),
                         default=str))
        return
    _print_drift(layout, frame, runs, args.runs)
    _print_accuracy(measured, champion)
    for line in drops:
        print(f"WARNING: {line}", file=sys.stderr)
    if png is not None:
        print(f"\ntrends written to {png}")


def monitor_document(versions: list[str], champion: str | None, runs: list[dict], measured,
                     recent: int, png) -> dict:
    """``monitor --json``: one object per model version (the champion first) with its
    production accuracy (``rows``, ``accuracy``, ``gate_accuracy``, ``drop``,
    ``dropped``, ``weeks``, ``scripts``) and its ``recent`` latest ``runs``; the join's
    counts and limits under ``late_labels``."""
    objects = []
    for version in versions:
        found = measured.versions.get(version) or {
            "rows": 0, "correct": 0, "accuracy": None, "gate_accuracy": None, "gate_rows": None,
            "drop": None, "weeks": [], "scripts": [], "dropped": []}
        mine = [run for run in runs if run["model_version"] == version]
        objects.append({"model_version": version, "champion": version == champion, **found,
                        "runs_measured": len(mine),
                        "runs": [_run_object(run) for run in mine[-recent:]]})
    summary = measured.summary()
    summary.pop("versions")
    return {"champion": champion, "versions": objects, "late_labels": summary,
            "trends_png": str(png) if png is not None else None}


def _run_object(run: dict) -> dict:
    return {"run_started": run["run_started"].isoformat(), "flow_run_id": run["flow_run_id"],
            "files": run["files"], "files_flagged": run["files_flagged"], "flags": run["flags"],
            "rows": run["rows"], **{name: run[name] for name in RUN_COLUMNS},
            "review_shares": run["review_shares"], "letter_shares": run["letter_shares"],
            "by_script": run["by_script"], "exact": run["exact"]}


def _print_drift(layout, frame, runs: list[dict], recent: int) -> None:
    if frame is None:
        print(f"no drift signals yet in {layout.monitoring}; they are written by `reviewflow score`")
        return
    for version, rows in frame.groupby("model_version", sort=False):
        mine = [run for run in runs if run["model_version"] == version]
        note = "" if rows["has_profile"].any() else " (no reference profile: PSI and script shift empty)"
        print(f"\nmodel {version}: {len(mine)} runs, {len(rows)} files{note}")
        for run in mine[-recent:]:
            figures = ", ".join(f"{name} {run[name]:.4g}" for name in RUN_COLUMNS
                                if run[name] is not None)
            print(f"  run {run['run_started']:%Y-%m-%d %H:%M:%S}: {run['files']} files, "
                  f"{run['files_flagged']} flagged; the run: {figures}")
            files = rows[rows["run_started"] == run["run_started"]]
            shown = files[FILE_COLUMNS].assign(
                flags=files["flags"].map(lambda f: ", ".join(f) or "-"))
            print("    " + shown.to_string(index=False, na_rep="-").replace("\n", "\n    "))


def _print_accuracy(measured, champion: str | None) -> None:
    counts = measured.join.counts()
    print(f"\nproduction accuracy on late labels: {counts['labeled_reviews']:,} labeled reviews "
          f"in labeled/, {counts['matched_reviews']:,} of them scored "
          f"({counts['scored_rows_read']:,} scored rows read, {counts['seconds']:.2f} s)")
    for name, reason in measured.join.labels.unreadable:
        print(f"  not read: {name}: {reason}")
    for version, found in sorted(measured.versions.items(), key=lambda i: (i[0] != champion, i[0])):
        gate = found["gate_accuracy"]
        print(f"  model {version}{' (champion)' if version == champion else ''}: "
              f"{found['accuracy']:.3f} on {found['rows']:,} reviews"
              + (f", gate accuracy {gate:.3f}" if gate is not None else ", no gate accuracy"))
        for week in found["weeks"]:
            print(f"    week of {week['week']}: {week['accuracy']:.3f} on {week['rows']:,}"
                  + ("  DROPPED" if week["dropped"] else ""))
        for script in found["scripts"]:
            reference = script["gate_accuracy"]
            print(f"    {script['script']}: {script['accuracy']:.3f} on {script['rows']:,}"
                  + (f" (gate {reference:.3f})" if reference is not None else "")
                  + ("  DROPPED" if script["dropped"] else ""))

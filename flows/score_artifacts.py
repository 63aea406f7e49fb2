"""What a scoring run shows in the Prefect UI: ``score-summary`` (the run in words,
figures and a picture of its files against the drift thresholds), ``score-files`` (what
happened to each file) and ``score-monitoring`` (each file's drift signals and flags).

Every cell is a short string of figures or words (``flows.artifact_tables``): no dict
is printed, a long reason or note goes below a table as a line of its own, and each
table keeps within the width of a normal window, the columns a reader looks at first
on the left.

The validation results of a run are told as counts (rows quarantined per file, and the
rows themselves with their reasons in ``quarantine/rows/``), not as Great Expectations
Data Docs: Data Docs is a static HTML site written to a folder or bucket, which the
Prefect UI cannot show inside an artifact (Markdown, tables, or an image at a URL the
browser can reach), so a link to it from a worker's local folder or an s3:// bucket
would lead nowhere for most readers.
"""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.artifact_tables import count, figure, markdown_image, markdown_table, short_name
from tasks.monitoring import SCRIPT_NAMES, Thresholds, run_picture
from tasks.outcomes import FileStatus

LONGEST_CELL = 40  # a value longer than this is a note below the table, not a cell
FLAG_MARK = "▲"  # beside a file's figure that crossed its threshold
DRIFT_SIGNALS = ("oov_rate", "score_psi", "length_psi", "script_shift")
# score-files: the columns a reader needs first, in order, from FileOutcome.
FILE_COLUMNS = (("file", "file"), ("status", "status"), ("rows scored", "rows_scored"),
                ("quarantined", "rows_quarantined"), ("rows read", "rows_read"),
                ("seconds", "seconds"), ("encoding", "encoding"))
# score-monitoring: the file, how many flags, then the figures the flags are about.
MONITORING_COLUMNS = ("file", "flags", "rows", "oov_rate", "score_psi", "length_psi",
                      "script_shift", "accuracy")


def plain(value) -> str:
    """A figure of the summary as a short string: counts with separators, rates with
    three decimals, nothing as a dash."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def mix(shares: dict | None) -> str:
    """``{"latin": 0.5, "hangul": 0.5}`` as ``50% Latin-script, 50% Hangul``."""
    parts = [f"{share:.0%} {SCRIPT_NAMES[script]}" for script, share in
             sorted((shares or {}).items(), key=lambda item: -item[1]) if share >= 0.005]
    return ", ".join(parts) or "-"


def summary_markdown(figures: dict, summary, thresholds: Thresholds,
                     picture: bytes | None) -> str:
    """``score-summary``: a headline, the picture, the figures as two short columns,
    the workers, the drift figures against their thresholds, and the files that need
    a look with their reasons in full."""
    drift = figures["drift"]
    headline = (f"# Scoring run: {figures['files_scored']} files scored, "
                f"{figures['files_quarantined']} quarantined, {drift['files_flagged']} flagged")
    lines = [headline, ""]
    if figures.get("model_version"):
        lines += [f"Model `{figures['model_version']}` on {figures['device'] or '-'}: "
                  f"{plain(figures['rows_scored'])} rows scored in {plain(figures['seconds'])} s "
                  f"({plain(figures['reviews_per_second'])} reviews/s).", ""]
    if picture is not None:
        lines += [markdown_image(picture, "the run's files against the drift thresholds")]
    notes, rows = [], []
    for key, value in figures.items():
        if isinstance(value, dict) or key in ("model_version",):
            continue
        text = plain(value)
        if len(text) > LONGEST_CELL:
            notes.append(f"- **{key}**: {text}")
        else:
            rows.append([key, text])
    encodings = figures.get("encodings") or {}
    rows.append(["encodings", ", ".join(f"{name}: {n} file{'s' * (n != 1)}"
                                        for name, n in encodings.items()) or "-"])
    lines += ["## Figures", ""] + markdown_table(["figure", "value"], rows) + [""]
    if notes:
        lines += notes + [""]
    if figures.get("workers"):
        lines += ["## Where shards ran", ""] + markdown_table(
            ["worker", "host", "device", "shards", "model loads"],
            [[short_name(name), w["host"], w["device"], plain(w["shards"]),
              plain(w["model_loads"])] for name, w in figures["workers"].items()]) + [""]
    lines += ["## Drift signals of the run", ""] + markdown_table(
        ["signal", "the run", "flag a file above"],
        [[name, figure(drift.get(name)), figure(getattr(thresholds, limit))]
         for name, limit in (("oov_rate", "max_oov_rate"), ("score_psi", "max_psi"),
                             ("length_psi", "max_psi"), ("script_shift", "max_script_shift"))]
        + [["reviews by main script", mix(drift.get("review_shares")), "-"],
           ["letters by script", mix(drift.get("script_mix")), "-"],
           ["files flagged", plain(drift["files_flagged"]), "-"],
           ["has profile", plain(drift["has_profile"]), "-"],
           ["monitor seconds", plain(drift["monitor_seconds"]), "-"]]) + [""]
    attention = [f"- `{f.file}`: {f.status}: {f.detail}" for f in summary.files
                 if f.status != FileStatus.SCORED and f.detail]
    attention += [f"- `{row['source_file']}`: flagged for {', '.join(row['flags'])}"
                  for row in summary.monitoring if row["flags"]]
    if attention:
        lines += ["## Files to look at", "", *attention, ""]
    return "\n".join(lines)


def file_rows(summary) -> list[dict]:
    """``score-files``: one row per file, ``FILE_COLUMNS``."""
    rows = []
    for outcome in summary.files:
        row = {}
        for header, name in FILE_COLUMNS:
            value = getattr(outcome, name)
            row[header] = short_name(value) if name == "file" else (
                f"{value:.2f}" if name == "seconds" else plain(value))
        rows.append(row)
    return rows


def flagged(row: dict, name: str) -> str:
    """A file's figure, marked ``FLAG_MARK`` when the file was flagged for it."""
    return figure(row[name]) + (f" {FLAG_MARK}" if name in row["flags"] else "")


def monitoring_rows(summary, figures: dict) -> list[dict]:
    """``score-monitoring``: one row per scored file and one for the run,
    ``MONITORING_COLUMNS``. ``flags`` counts a file's flags and each flagged figure is
    marked in its own column, so a file flagged for all five signals fits as well as
    one flagged for none (their names in full: ``score-summary``); the run's row counts
    the files flagged."""
    rows = [{"file": short_name(row["source_file"]), "flags": str(len(row["flags"]) or "-"),
             "rows": count(row["rows"]),
             **{name: flagged(row, name) for name in (*DRIFT_SIGNALS, "accuracy")}}
            for row in summary.monitoring]
    drift = figures["drift"]
    rows.append({"file": "(run)",
                 "flags": f"{drift['files_flagged']} of {len(summary.monitoring)}",
                 "rows": count(summary.run_counts.rows),
                 **{name: figure(drift.get(name)) for name in DRIFT_SIGNALS},
                 "accuracy": figure(figures["accuracy_on_labeled_rows"])})
    return rows


def publish_run_artifacts(summary, figures: dict, thresholds: Thresholds) -> None:
    """The run's three artifacts (``summary``: ``flows.score_report.ScoreSummary``;
    ``figures``: its ``as_dict()``)."""
    picture = None
    if summary.monitoring:
        picture = run_picture(summary.monitoring, figures["drift"], thresholds)
    create_markdown_artifact(key="score-summary",
                             markdown=summary_markdown(figures, summary, thresholds, picture),
                             description="Files, rows, speed and drift of this scoring run")
    if summary.files:
        create_table_artifact(key="score-files", table=file_rows(summary),
                              description="What happened to each file (reasons: score-summary)")
    if summary.monitoring:
        create_table_artifact(
            key="score-monitoring", table=monitoring_rows(summary, figures),
            description=f"Drift signals per file and for the run ({FLAG_MARK}: the file was "
                        "flagged for it; flags: how many; the run's row: files flagged; "
                        "docs/monitoring.md)"
                        + ("" if summary.profile else "; this champion has no profile"))

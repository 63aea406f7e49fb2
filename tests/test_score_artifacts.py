"""What a scoring run shows in the Prefect UI (issue 40, item 6), read back from the
session's Prefect server: the run's picture, and tables that read at a normal window
width (no dict printed, no cell the UI would clip, the columns in order)."""

from __future__ import annotations

import base64
import json
import re
import shutil

from conftest import SAMPLES

from flows.score_artifacts import FILE_COLUMNS, MONITORING_COLUMNS
from tests.helpers import layout_of, monitoring_rows, score, write_csv

# The artifact panel of a 1280-pixel window shows about 120 characters of the UI's
# 0.875rem table text, with 3 characters of padding per cell: what a table may fill.
WINDOW_CHARS = 120
PADDING = 3
LONG_NAME = "partner-export-2025-06-01-final-version-two-really.docx"


def width(headers: list[str], rows: list[list[str]]) -> int:
    return sum(max(len(h), *(len(r[i]) for r in rows)) + PADDING for i, h in enumerate(headers))


def markdown_tables(markdown: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each Markdown table of ``markdown`` as (headers, rows of cells)."""
    tables, current = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif current:
            tables.append((current[0], current[2:]))
            current = []
    return tables


def artifacts_of(flow_run_id: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: (json.loads(a.data) if isinstance(a.data, str) and a.type == "table"
                    else a.data) for a in found}


def test_a_scoring_runs_artifacts_read_at_a_normal_window_width(scoring_root):
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "english.csv",
              [{"review_id": f"en-{i}", "text": f"Review {i}: a fine film, warm and funny.",
                "label": i % 2} for i in range(300)])
    shutil.copy(SAMPLES / "korean" / "test.tsv", inbox / "korean.tsv")
    (inbox / LONG_NAME).write_bytes(b"not a review file")
    summary = score(scoring_root)
    assert summary["files_scored"] == 2 and summary["files_quarantined"] == 1
    run_id = monitoring_rows(scoring_root)["flow_run_id"][0].as_py()
    artifacts = artifacts_of(run_id)

    # score-summary: the picture inline, every table narrow and without dicts, the
    # quarantined file's reason and the flagged file named in full below the tables.
    markdown = artifacts["score-summary"]
    picture = re.search(r"!\[[^]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert picture and base64.b64decode(picture.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    tables = markdown_tables(markdown)
    assert len(tables) == 3  # figures, where shards ran, drift signals
    for headers, rows in tables:
        assert width(headers, rows) <= WINDOW_CHARS, headers
        assert not any("{" in cell or "[" in cell for row in rows for cell in row), rows
    figures = dict(tables[0][1])
    assert figures["encodings"] == "utf-8: 2 files" and figures["rows_scored"] == "600"
    drift = {row[0]: row[1:] for row in tables[2][1]}
    assert drift["score_psi"] == [f"{summary['drift']['score_psi']:.3f}", "0.250"]
    assert drift["reviews by main script"] == ["50% Latin-script, 50% Hangul", "-"]
    assert f"- `{LONG_NAME}`: unsupported: not a supported review file" in markdown
    assert "- `korean.tsv`: flagged for oov_rate, script_shift" in markdown  # in full

    # score-files: the columns a reader needs, in order, within the width.
    files = artifacts["score-files"]
    assert [list(row) for row in files] == [[h for h, _ in FILE_COLUMNS]] * 3
    assert width(list(files[0]), [list(r.values()) for r in files]) <= WINDOW_CHARS
    by_file = {row["file"]: row for row in files}
    assert by_file["english.csv"]["rows scored"] == "300"
    (long,) = [name for name in by_file if name.startswith("partner-export")]
    assert long.endswith("really.docx") and "…" in long and len(long) <= 32

    # score-monitoring: file and flags first, the flags whole, the run last.
    monitoring = artifacts["score-monitoring"]
    assert [list(row) for row in monitoring] == [list(MONITORING_COLUMNS)] * 3
    assert width(list(MONITORING_COLUMNS), [list(r.values()) for r in monitoring]) <= WINDOW_CHARS
    rows = {row["file"]: row for row in monitoring}
    flags = {name: row["flags"] for name, row in monitoring_rows(scoring_root).to_pandas()
             .set_index("source_file").iterrows()}
    for name in ("english.csv", "korean.tsv"):
        assert rows[name]["flags"] == str(len(flags[name]) or "-")
        for signal in ("oov_rate", "score_psi", "length_psi", "script_shift", "accuracy"):
            assert rows[name][signal].endswith(" ▲") == (signal in flags[name]), (name, signal)
    assert {"oov_rate", "script_shift"} <= set(flags["korean.tsv"])
    assert rows["(run)"] == {"file": "(run)", "flags": "2 of 2", "rows": "600",
                             **{name: f"{summary['drift'][name]:.3f}" for name in
                                ("oov_rate", "score_psi", "length_psi", "script_shift")},
                             "accuracy": f"{summary['accuracy_on_labeled_rows']:.3f}"}
    assert not any("{" in str(v) for row in monitoring + files for v in row.values())

"""The score-reviews flow on real files: every row lands once, in scored/ or quarantine/."""

from __future__ import annotations

import json
import os
import shutil

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.score_reviews import score_reviews
from tasks.state.ledger import Ledger
from tests.helpers import (
    good_rows,
    layout_of,
    quarantined_copies,
    quarantined_files,
    quarantined_rows,
    score,
    scored_parts,
    scored_rows,
    scored_sql,
    write_csv,
)


def test_mixed_inbox_accounts_for_every_row(scoring_root):
    inbox = scoring_root / "incoming"
    write_csv(inbox / "good.csv", good_rows("g", 40))
    with open(inbox / "good.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in good_rows("j", 25))
    pq.write_table(pa.Table.from_pylist(good_rows("p", 15)), inbox / "good.parquet")
    (inbox / "latin1.csv").write_bytes("review_id,text\n1,très bon\n".encode("latin-1"))
    write_csv(inbox / "no-text.csv", [{"review_id": "x", "stars": 5}])
    (inbox / "empty.csv").write_bytes(b"")
    write_csv(inbox / "dupes.csv", good_rows("d", 10) + good_rows("d", 3))
    write_csv(inbox / "blanks.csv", good_rows("b", 8) + [{"review_id": "b-blank", "text": "  "},
                                                          {"review_id": "b-null", "text": None}])
    summary = score(scoring_root)

    scored, rejected = scored_rows(scoring_root), quarantined_rows(scoring_root)
    assert summary["rows_scored"] == scored.num_rows == 40 + 25 + 15 + 10 + 8
    assert summary["rows_quarantined"] == rejected.num_rows == 3 + 2
    assert summary["rows_read"] == summary["rows_scored"] + summary["rows_quarantined"]
    assert 0 < summary["state_seconds"] < summary["seconds"]  # ledger and locks, timed
    assert set(quarantined_files(scoring_root)) == {"latin1.csv", "no-text.csv", "empty.csv"}
    assert summary["files_scored"] == 5 and summary["files_quarantined"] == 3
    assert list(inbox.iterdir()) == []  # every file was archived or quarantined
    assert scored.column("review_id").to_pylist().count("d-0") == 1
    ids = scored.column("review_id").to_pylist()
    assert len(ids) == len(set(ids))


def test_invalid_utf8_file_is_quarantined_whole_with_a_reason(scoring_root):
    (scoring_root / "incoming" / "broken.csv").write_bytes(b"review_id,text\n1,ok\n2,\xff\xfe\n")
    write_csv(scoring_root / "incoming" / "fine.csv", good_rows("f", 5))
    summary = score(scoring_root)
    reason = quarantined_files(scoring_root)["broken.csv"]["reason"]
    assert "invalid UTF8" in reason or "utf" in reason.lower()
    assert summary["rows_scored"] == 5  # the run went on with the other file
    kept = quarantined_copies(scoring_root, "*broken.csv")
    assert len(kept) == 1 and kept[0].read_bytes().endswith(b"\xff\xfe\n")  # byte for byte


def test_file_without_text_column_is_quarantined(scoring_root):
    write_csv(scoring_root / "incoming" / "ids-only.csv", [{"review_id": "1", "stars": 3}])
    score(scoring_root)
    reason = quarantined_files(scoring_root)["ids-only.csv"]["reason"]
    assert "missing required column text" in reason and "stars" in reason


def test_empty_file_is_quarantined(scoring_root):
    (scoring_root / "incoming" / "nothing.jsonl").write_bytes(b"")
    summary = score(scoring_root)
    assert quarantined_files(scoring_root)["nothing.jsonl"]["reason"] == "the file is empty"
    assert summary["rows_scored"] == 0


def test_duplicate_ids_keep_the_first_and_quarantine_the_rest(scoring_root):
    rows = good_rows("d", 4) + [{"review_id": "d-1", "text": "A second, different d-1."}]
    write_csv(scoring_root / "incoming" / "dupes.csv", rows)
    score(scoring_root)
    rejected = quarantined_rows(scoring_root).to_pylist()
    assert [(r["review_id"], r["source_row"]) for r in rejected] == [("d-1", 5)]
    assert rejected[0]["failed_expectations"] == ["expect_column_values_to_be_unique(review_id)"]
    assert rejected[0]["reason"].startswith("dupes.csv row 5:")
    assert scored_rows(scoring_root).num_rows == 4


def test_blank_reviews_are_quarantined_row_by_row(scoring_root):
    rows = good_rows("b", 3) + [{"review_id": "b-x", "text": " \t "}]
    write_csv(scoring_root / "incoming" / "blanks.csv", rows)
    score(scoring_root)
    rejected = quarantined_rows(scoring_root).to_pylist()
    assert [r["review_id"] for r in rejected] == ["b-x"]
    assert rejected[0]["text"] == " \t "  # the row is kept as it came
    assert scored_rows(scoring_root).num_rows == 3


def test_second_run_and_a_resubmitted_file_add_nothing(scoring_root):
    source = write_csv(scoring_root.parent / "batch.csv", good_rows("s", 30))
    shutil.copy2(source, scoring_root / "incoming" / "batch.csv")
    first = score(scoring_root)
    assert first["rows_scored"] == 30
    assert score(scoring_root)["rows_scored"] == 0
    shutil.copy2(source, scoring_root / "incoming" / "batch-again.csv")  # same content, new name
    third = score(scoring_root)
    assert third["files_already_scored"] == 1 and third["rows_scored"] == 0
    assert scored_rows(scoring_root).num_rows == 30
    assert len(scored_parts(scoring_root)) == 1


def test_output_schema_and_readers(scoring_root):
    write_csv(scoring_root / "incoming" / "a.csv",
              [dict(r, label=i % 2) for i, r in enumerate(good_rows("a", 20))])
    summary = score(scoring_root)
    assert summary["accuracy_on_labeled_rows"] is not None
    table = scored_rows(scoring_root)
    types = {f.name: str(f.type) for f in table.schema}
    assert types["review_id"] == "string" and types["score"] == "float"
    assert types["predicted_label"] == "int8" and types["model_version"] == "string"
    assert types["scored_at"] == "timestamp[us, tz=UTC]"
    assert types["source_file"] == "string" and len(table.column("source_sha256")[0].as_py()) == 64
    assert set(table.column("scored_date").to_pylist()) == {table.column("scored_at")[0].as_py().strftime("%Y-%m-%d")}
    scores = table.column("score").to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (table.column("predicted_label").to_numpy() == (scores >= 0.5)).all()

    frame = pd.read_parquet(layout_of(scoring_root).scored)
    assert len(frame) == 20
    count, dates = duckdb.sql(f"SELECT count(*), count(DISTINCT scored_date) FROM "
                              f"{scored_sql(scoring_root)}").fetchall()[0]
    assert (count, dates) == (20, 1)
    ledger = Ledger(scoring_root / "state" / "ledger.sqlite").totals()
    assert ledger["rows_read"] == ledger["rows_scored"] + ledger["rows_quarantined"] == 20


def test_unsupported_entries_are_quarantined_and_recent_files_wait(scoring_root, tmp_path,
                                                                    caplog):
    inbox = scoring_root / "incoming"
    (inbox / "notes.txt").write_text("not reviews")
    outside = write_csv(tmp_path / "outside.csv", good_rows("o", 2))
    os.symlink(outside, inbox / "link.csv")
    write_csv(inbox / "fresh.csv", good_rows("n", 2))
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=3600)
    assert summary["files_settling"] == 1 and (inbox / "fresh.csv").exists()
    why = "0 files ready, 2 not review files; 1 left for the next run (modified in the last 3600 s)"
    assert summary["inbox"] == why
    assert any(r.levelname == "WARNING" and r.getMessage() == why for r in caplog.records)
    from prefect.artifacts import Artifact

    # Too long for a cell of the figures table: a line of its own below it.
    assert f"- **inbox**: {why}" in Artifact.get("score-summary").data
    assert set(quarantined_files(scoring_root)) == {"notes.txt", "link.csv"}
    assert outside.exists()  # the link was moved, never what it points to
    assert summary["rows_scored"] == 0


def test_every_file_quarantined_whole_is_a_warning_and_the_counts_agree(scoring_root,
                                                                       tmp_path, caplog):
    """Each way a whole file is quarantined (not a review file, a link, unreadable, not
    one row parsed, runs died on it) logs one WARNING naming it and why, and the
    summary counts what the inbox held, review files or not."""
    from prefect.artifacts import Artifact

    from tasks.layout import CLAIM_ATTEMPTS_FILE, CLAIMS_FOLDER

    inbox = scoring_root / "incoming"
    (inbox / "notes.txt").write_text("not reviews")
    os.symlink(write_csv(tmp_path / "outside.csv", good_rows("o", 2)), inbox / "link.csv")
    (inbox / "empty.csv").write_bytes(b"")
    (inbox / "broken.jsonl").write_text("{not json\n[1, 2\n")
    write_csv(inbox / "good.csv", good_rows("g", 4))
    dead = inbox / CLAIMS_FOLDER / "0123456789ab"
    dead.mkdir(parents=True)
    write_csv(dead / "dead.csv", good_rows("d", 2))
    (dead / CLAIM_ATTEMPTS_FILE).write_text("3\n")
    summary = score(scoring_root)

    quarantined = quarantined_files(scoring_root)
    assert set(quarantined) == {"notes.txt", "link.csv", "empty.csv", "broken.jsonl", "dead.csv"}
    warned = {r.getMessage().split(":", 1)[0].removeprefix("quarantined "): r.getMessage()
              for r in caplog.records
              if r.levelname == "WARNING" and r.getMessage().startswith("quarantined ")}
    assert set(warned) == set(quarantined), warned
    for name, message in warned.items():
        assert message == f"quarantined {name}: {quarantined[name]['reason']}"
    assert "not a supported review file" in warned["notes.txt"]
    assert "symbolic link" in warned["link.csv"] and "3 runs died" in warned["dead.csv"]
    note = "4 files ready, 2 not review files"
    assert summary["inbox"] == note
    assert summary["files_quarantined"] == len(quarantined) == 5
    assert summary["files_scored"] == 1 and summary["rows_scored"] == 4
    assert f"| inbox | {note} |" in Artifact.get("score-summary").data
    assert f"| files_quarantined | {len(quarantined)} |" in Artifact.get("score-summary").data


def test_no_champion_says_how_to_train_one(data_dir, capsys):
    from flows.cli import main

    write_csv(data_dir / "incoming" / "a.csv", good_rows("a", 2))
    with pytest.raises(SystemExit) as stopped:
        main(["score", "--data-dir", str(data_dir)])
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert "no champion model" in message and "reviewflow retrain" in message
    assert (data_dir / "incoming" / "a.csv").exists()


def test_demo_trains_a_first_model_then_scores_the_sample(data_dir, capsys):
    """`make demo` on a fresh data root: what a new user runs first."""
    from tests.helpers import cli_exit_code

    assert cli_exit_code(["demo", "--data-dir", str(data_dir)]) == 0
    printed = capsys.readouterr().out
    assert "promoted to champion" in printed and "scored " in printed
    assert scored_parts(data_dir)
    assert not list((data_dir / "incoming").iterdir())


def test_flow_parameters_show_the_values_a_run_uses(scoring_root, monkeypatch):
    """A parameter nobody names is None in the flow's schema (what a deployment and `prefect
    deployment inspect` show): the run takes the setting of its name where it runs, when
    it starts. The reviewflow command names every one, so its run shows each value it
    used, as the settings and the options give them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.utilities.callables import parameter_schema

    from tests.helpers import cli_exit_code

    defaults = parameter_schema(score_reviews.fn).properties
    assert {name: schema.get("default") for name, schema in defaults.items()} == dict.fromkeys(
        ["data_dir", "require_gpu", "settle_seconds", "task_runner", "dask_address",
         "shard_rows", "state_url"])
    assert [{"enum": ["threads", "dask"], "type": "string"}, {"type": "null"}] == \
        defaults["task_runner"]["anyOf"]

    write_csv(scoring_root / "incoming" / "a.csv", good_rows("a", 3))
    monkeypatch.setenv("REVIEWFLOW_SETTLE_SECONDS", "0")
    monkeypatch.setenv("REVIEWFLOW_SHARD_ROWS", "1000")
    assert cli_exit_code(["score", "--data-dir", str(scoring_root), "--task-runner", "threads"]) == 0
    with get_client(sync_client=True) as client:  # the latest run: this one
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["score-reviews"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
    assert run.parameters == {"data_dir": str(scoring_root), "require_gpu": False,
                              "settle_seconds": 0.0, "task_runner": "threads",
                              "dask_address": None, "shard_rows": 1000, "state_url": None}


def test_a_parameter_left_unset_is_the_setting_where_the_run_runs(scoring_root, tmp_path,
                                                                  monkeypatch):
    """What a deployment leaves unset is read when its run starts, from the settings of the
    process it runs in (a worker's REVIEWFLOW_*), not when the flow's module was
    imported: this module imported the flow before these settings were set."""
    monkeypatch.chdir(tmp_path)  # the default root, ./data, is not this test's
    write_csv(scoring_root / "incoming" / "a.csv", good_rows("a", 3))
    monkeypatch.setenv("REVIEWFLOW_DATA_DIR", str(scoring_root))
    monkeypatch.setenv("REVIEWFLOW_SETTLE_SECONDS", "0")  # the file was written just now
    summary = score_reviews()
    assert summary["rows_scored"] == 3 and summary["files_settling"] == 0
    assert scored_rows(scoring_root).num_rows == 3
    monkeypatch.setenv("REVIEWFLOW_SETTLE_SECONDS", "3600")
    write_csv(scoring_root / "incoming" / "b.csv", good_rows("b", 2))
    assert score_reviews()["files_settling"] == 1
    assert score_reviews(settle_seconds=0)["rows_scored"] == 2  # a parameter given wins

"""Past one machine: the scoring flow on a Dask cluster, and on S3-compatible object storage.

The Dask test runs the flow on a LocalCluster of two worker processes with files split
into shards, and compares its output with a default (thread runner, unsharded) run of
the same inbox, row for row. The S3 test starts moto's S3 server on loopback and runs
the flow with the data root in a bucket.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_same_scored_rows

from flows.score_reviews import score_reviews
from tasks.state.ledger import Ledger
from tests.helpers import layout_of, quarantined_rows, scored_parts, scored_rows, scored_sql

WORDS = ["wonderful and moving", "dull and far too long", "a delight", "a tedious mess",
         "not bad at all", "the worst I have seen"]
# Columns that differ between two runs by design: when they ran.
RUN_TIME = ["scored_at", "scored_date", "quarantined_at", "quarantined_date"]


def reviews(prefix: str, n: int) -> list[dict]:
    return [{"review_id": f"{prefix}-{i}", "text": f"Review {i}: the film was {WORDS[i % 6]}."}
            for i in range(n)]


def make_inbox(inbox: Path) -> int:
    """Files that shard at 100 rows, with duplicate ids across shard boundaries and bad rows."""
    big = reviews("c", 330)
    big[150]["review_id"] = "c-10"    # a duplicate of a row in shard 0, found in shard 1
    big[290]["review_id"] = "c-10"    # and again, in shard 2
    big[205]["text"] = "   "          # a blank review
    pd.DataFrame(big).to_csv(inbox / "big.csv", index=False)
    table = pa.Table.from_pylist(reviews("p", 250) + [{"review_id": "p-3", "text": "again"}])
    pq.write_table(table, inbox / "big.parquet", row_group_size=60)
    with open(inbox / "small.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in reviews("j", 30))
    return 330 + 251 + 30


def table_of(table: pa.Table, sort: list[str]) -> pd.DataFrame:
    frame = table.to_pandas()
    frame = frame.drop(columns=[c for c in RUN_TIME if c in frame.columns])
    return frame.sort_values(sort).reset_index(drop=True)


@pytest.fixture
def two_roots(scoring_root, tmp_path):
    """Two copies of a data root with a champion and the same inbox."""
    threads_root, dask_root = tmp_path / "threads", tmp_path / "dask"
    for root in (threads_root, dask_root):
        shutil.copytree(scoring_root, root)
        rows = make_inbox(layout_of(root).incoming)
    return threads_root, dask_root, rows


def test_dask_cluster_of_two_workers_equals_a_single_process_run(two_roots, monkeypatch):
    threads_root, dask_root, rows = two_roots
    monkeypatch.setenv("REVIEWFLOW_READ_BATCH_ROWS", "40")  # batches straddle shard edges
    single = score_reviews(data_dir=str(threads_root), settle_seconds=0)
    assert single["task_runner"] == "threads" and single["shards"] == 3  # one per file

    monkeypatch.setenv("REVIEWFLOW_DASK_WORKERS", "2")
    spread = score_reviews(data_dir=str(dask_root), settle_seconds=0, task_runner="dask",
                           shard_rows=100)

    # The same rows, scored and quarantined, as one process gives: row for row. Scores
    # to float32 round-off: the workers score other batches (shards) in other processes
    # (conftest.SCORE_TOLERANCE says why); ids, labels, model and sources exactly.
    key = ["source_file", "source_row"]
    assert_same_scored_rows(table_of(scored_rows(dask_root), key),
                            table_of(scored_rows(threads_root), key))
    pd.testing.assert_frame_equal(table_of(quarantined_rows(dask_root), key),
                                  table_of(quarantined_rows(threads_root), key),
                                  check_exact=True)
    assert single["rows_read"] == spread["rows_read"] == rows
    assert spread["rows_scored"] + spread["rows_quarantined"] == rows
    assert spread["rows_quarantined"] == single["rows_quarantined"] == 4  # 3 dupes, 1 blank
    for figure in ("rows_scored", "files_scored", "positive_share"):
        assert spread[figure] == single[figure]

    # Shards ran on two worker processes, each of which loaded the model once.
    assert spread["task_runner"] == "dask" and spread["shards"] == 4 + 3 + 1
    workers = spread["workers"]
    assert len(workers) == 2 and all(w.startswith("tcp://") for w in workers)
    assert len({w["pid"] for w in workers.values()}) == 2
    assert all(w["model_loads"] == 1 for w in workers.values()), workers
    assert sum(w["shards"] for w in workers.values()) == 8
    assert all(w["device"] for w in workers.values())
    # Each file is committed once, and its outcome says where its shards ran.
    ledger = Ledger(dask_root / "state" / "ledger.sqlite").totals()
    assert ledger["rows_read"] == rows
    parts = sorted(p.name for p in scored_parts(dask_root))
    assert len(parts) == 8 and sum("-s0" in name for name in parts) == 7
    assert not list(layout_of(dask_root).incoming.iterdir())
    assert not [p for p in dask_root.rglob("*.tmp")]


# --------------------------------------------------------------------------- S3
# (the S3 server and file system: conftest's s3_endpoint and s3_env)

def test_scoring_with_inputs_and_outputs_on_s3(s3_env, trained_models, tmp_path, monkeypatch):
    endpoint, fs = s3_env
    bucket = "reviews-test"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/team/reviews"
    local_inbox = tmp_path / "upload"
    local_inbox.mkdir()
    rows = make_inbox(local_inbox)
    (local_inbox / "latin1.csv").write_bytes("review_id,text\n1,très bon\n".encode("latin-1"))
    for path in sorted(local_inbox.iterdir()):
        fs.put_file(str(path), f"{root}/incoming/{path.name}")
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    state = tmp_path / "state"
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(state))
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint}))

    first = score_reviews(data_dir=root, settle_seconds=0)

    assert first["files_scored"] == 3 and first["files_quarantined"] == 1
    assert first["rows_read"] == rows == first["rows_scored"] + first["rows_quarantined"]
    assert first["workers"]["local"]["model_loads"] == 1
    assert fs.glob(f"{root}/incoming/*") == []
    assert len(fs.ls(f"{root}/archive", refresh=True)) == 1  # one date folder
    quarantined = fs.glob(f"{root}/quarantine/files/*/*")
    assert sorted(p.rsplit("/", 1)[1].split("-", 1)[1] for p in quarantined) == [
        "latin1.csv", "latin1.csv.reason.json"]

    # Read the output where it is, with pyarrow over fsspec ...
    scored = scored_rows(root, filesystem=fs)
    ids = scored.column("review_id").to_pylist()
    assert scored.num_rows == first["rows_scored"] and len(ids) == len(set(ids))
    # ... and with DuckDB on a downloaded copy; temporaries never reached it.
    remote, copy = layout_of(root), layout_of(tmp_path)
    fs.get(str(remote.scored), str(copy.scored), recursive=True)
    fs.get(str(remote.rejected_rows), str(tmp_path / "rows"), recursive=True)
    assert not [p for p in tmp_path.rglob("*.tmp")]
    count, distinct = duckdb.sql(f"SELECT count(*), count(DISTINCT (source_file, review_id)) "
                                 f"FROM {scored_sql(tmp_path)}").fetchall()[0]
    rejected = pq.ParquetDataset(tmp_path / "rows").read().num_rows
    assert count == distinct == first["rows_scored"] and count + rejected == rows

    # Run again: nothing new. Drop the same bytes under another name: not scored twice.
    assert score_reviews(data_dir=root, settle_seconds=0)["rows_scored"] == 0
    fs.put_file(str(local_inbox / "big.csv"), f"{root}/incoming/big-again.csv")
    again = score_reviews(data_dir=root, settle_seconds=0)
    assert again["files_already_scored"] == 1 and again["rows_scored"] == 0
    assert len(fs.glob(f"{root}/scored/*/*.parquet")) == 3
    ledger = Ledger(state / "ledger.sqlite").totals()
    assert ledger["rows_read"] == rows and ledger["files_quarantined"] == 1


def test_a_url_data_root_needs_a_local_state_dir():
    from pydantic import ValidationError

    from tasks.layout import DataLayout
    from tasks.settings import Settings

    with pytest.raises(ValidationError, match="REVIEWFLOW_STATE_DIR"):
        Settings(data_dir="s3://bucket/prefix")
    settings = Settings(data_dir="s3://bucket/prefix/", state_dir="/tmp/state")
    assert settings.remote and str(DataLayout.of(settings).incoming) == "s3://bucket/prefix/incoming"


def test_dask_workers_score_from_and_to_s3(s3_env, trained_models, tmp_path, monkeypatch):
    """Shards on two worker processes read their rows from the bucket, load the model
    from it (once each) and write their parts there; the driver commits them."""
    endpoint, fs = s3_env
    bucket = "reviews-dask"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/reviews"
    rows = make_inbox(tmp_path)
    for name in ("big.csv", "big.parquet", "small.jsonl"):
        fs.put_file(str(tmp_path / name), f"{root}/incoming/{name}")
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint}))

    summary = score_reviews(data_dir=root, settle_seconds=0, task_runner="dask", shard_rows=100)

    assert summary["rows_read"] == rows == summary["rows_scored"] + summary["rows_quarantined"]
    assert summary["rows_quarantined"] == 4 and summary["shards"] == 8
    assert len(summary["workers"]) == 2
    assert all(w["model_loads"] == 1 for w in summary["workers"].values())
    parts = fs.glob(f"{root}/scored/*/*.parquet")
    assert len(parts) == 8
    scored = scored_rows(root, filesystem=fs)
    keys = list(zip(scored.column("source_file").to_pylist(),
                    scored.column("review_id").to_pylist()))
    assert len(keys) == len(set(keys)) == summary["rows_scored"]
    assert fs.glob(f"{root}/incoming/*") == [] and not fs.glob(f"{root}/**/.*.tmp")


def test_shards_needing_a_gpu_land_only_on_gpu_workers(scoring_root, monkeypatch):
    """An existing cluster (dask_address) with one worker that advertises GPU=1, as
    `dask worker --resources GPU=1` does on a GPU host, and one that does not: with
    dask_resources {"GPU": 1} every shard runs on the first. (No GPU here: the worker's
    device is the CPU; the placement is what is shown.)"""
    from distributed import Nanny, SpecCluster

    monkeypatch.setenv("REVIEWFLOW_DASK_RESOURCES", json.dumps({"GPU": 1}))
    rows = make_inbox(layout_of(scoring_root).incoming)
    workers = {"gpu-0": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
               "cpu-0": {"cls": Nanny, "options": {"nthreads": 1}}}
    scheduler = {"cls": "distributed.Scheduler", "options": {"dashboard_address": ":0"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster:
        gpu_address = next(address for address, info in
                           cluster.scheduler_info["workers"].items() if info["resources"])
        summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0,
                                task_runner="dask", dask_address=cluster.scheduler_address,
                                shard_rows=100)
    assert summary["rows_read"] == rows
    assert list(summary["workers"]) == [gpu_address]
    assert summary["workers"][gpu_address]["shards"] == 8


def test_the_command_line_chooses_runner_and_shards(scoring_root):
    """``reviewflow score --task-runner threads --shard-rows 100``: the options reach the flow."""
    from flows.cli import main

    rows = make_inbox(layout_of(scoring_root).incoming)
    main(["score", "--data-dir", str(scoring_root), "--settle-seconds", "0",
          "--task-runner", "threads", "--shard-rows", "100"])
    parts = sorted(p.name for p in scored_parts(scoring_root))
    # big.csv (330 rows) in 4 shards, big.parquet (251) in 3, small.jsonl (30) whole
    assert len(parts) == 8 and sum("-s000" in name for name in parts) == 7
    scored = table_of(scored_rows(scoring_root), ["source_file", "source_row"])
    quarantined = table_of(quarantined_rows(scoring_root), ["source_file", "source_row"])
    assert len(scored) + len(quarantined) == rows

"""Checkpoints inside a large file (issue 37, items 6 and 7): a file scored in one pass on
the thread runner is cut into checkpoints that are kept as they finish
(tasks/state/checkpoints.py), a stopped run leaves them to the next one, which scores
only the rest; a stop reaches the shard within a prediction slice; progress inside a
file is logged while it scores.

The function-level tests call tasks.scoring.checkpointed directly; the kill tests run
the real ``reviewflow score`` with failpoints at each new step (tasks/failpoints.py) on
SQLite and on PostgreSQL (tests/postgres.py); the stop test sends the real CLI SIGINT;
the progress test captures a real flow run's log."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import PROJECT, reviewflow_command
from test_shard_scoring import job_for

from tasks.errors import ScoringStopped
from tasks.layout import part_name
from tasks.scoring.checkpointed import Checkpoints, score_checkpointed
from tasks.scoring.control import ShardControl
from tasks.scoring.planning import Shard
from tasks.scoring.queue import SMALL_FILE_BYTES
from tasks.scoring.shard import score_shard
from tasks.state.backend import open_state
from tasks.state.ledger import Ledger
from tasks.storage.local import file_sha256
from tests.helpers import good_rows, layout_of, quarantined_rows, scored_sql, write_csv

# A file of 62 rows in checkpoints of 20 (4 of them: 20, 20, 20, 2), read 10 rows a
# batch: row 25 has a blank text (quarantined), row 45 repeats the id of row 3
# (quarantined, two checkpoints later), so a resumed run must still know earlier ids.
# Its long texts make it larger than a small file (tasks.scoring.queue.SMALL_FILE_BYTES),
# which would be scored whole in a bundle instead.
CHECKPOINT_ROWS, BATCH_ROWS = 20, 10
FILLER = " It went on and on." * 1000


def _rows(prefix: str = "a", n: int = 62) -> list[dict]:
    rows = [{"review_id": row["review_id"], "text": row["text"] + FILLER}
            for row in good_rows(prefix, n)]
    rows[24]["text"] = " "
    rows[44]["review_id"] = rows[2]["review_id"]
    return rows


def _expected(rows: list[dict]) -> tuple[list[str], list[int]]:
    """The ids one pass scores, and the source rows (1-based) it quarantines."""
    seen, scored, quarantined = set(), [], []
    for number, row in enumerate(rows, start=1):
        if row["review_id"] in seen or not row["text"].strip():
            quarantined.append(number)
        else:
            scored.append(row["review_id"])
        seen.add(row["review_id"])
    return sorted(scored), quarantined


# --------------------------------------------------------------------------- one pass

def test_a_file_is_cut_into_checkpoints_that_hold_what_one_pass_gives(scoring_root):
    rows = _rows()
    path = write_csv(layout_of(scoring_root).incoming / "a.csv", rows)
    sha, job = file_sha256(path), job_for(scoring_root, read_batch_rows=7)
    control = ShardControl()
    results = score_checkpointed(path, sha, job, Checkpoints(CHECKPOINT_ROWS), control)

    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [r.rows_read for r in results] == [20, 20, 20, 2]
    # All but the last were handed over as they finished, for the driver to keep.
    assert control.take_finished() == results[:3]
    assert control.rows_done(sha) == 62 and control.rows_read(sha)[0] == 62
    finals = [r.scored_part[1].name for r in results]
    assert finals == [part_name(sha, job.model.version, k) for k in range(4)]
    temps = [r.scored_part[0] for r in results]
    assert all(t.name.startswith(".") and t.name.endswith(".tmp") for t in temps)
    ids = sorted(i for t in temps for i in pq.read_table(t).column("review_id").to_pylist())
    rejected = [r.rejected_part[0] for r in results if r.rejected_part]
    quarantined = sorted(n for t in rejected for n in pq.read_table(t).column(
        "source_row").to_pylist())
    assert (ids, quarantined) == _expected(rows)
    whole = score_shard(path, sha, Shard(), job)  # the same file in one unsharded shard
    assert pq.read_table(whole.scored_part[0]).num_rows == len(ids)
    assert sum(r.monitor.rows for r in results) == whole.monitor.rows


def test_a_resumed_pass_scores_only_the_rest_and_still_knows_earlier_ids(scoring_root):
    rows = _rows()
    path = write_csv(layout_of(scoring_root).incoming / "a.csv", rows)
    sha, job = file_sha256(path), job_for(scoring_root, read_batch_rows=BATCH_ROWS)
    results = score_checkpointed(path, sha, job, Checkpoints(CHECKPOINT_ROWS, done=(0, 1)))
    assert [r.index for r in results] == [2, 3]
    assert sum(r.rows_read for r in results) == 22
    rejected = pq.read_table(results[0].rejected_part[0])
    assert rejected.column("source_row").to_pylist() == [45]  # row 3's id, seen in checkpoint 0
    assert "unique" in rejected.column("reason")[0].as_py()


def _write(path: Path, rows: list[dict]) -> Path:
    """``rows`` in the format ``path``'s name says."""
    import gzip

    import pandas as pd

    frame = pd.DataFrame(rows)
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        frame.to_parquet(path, row_group_size=7)
    elif name.endswith(".jsonl"):
        text = frame.to_json(orient="records", lines=True)
    elif name.endswith(".json"):
        text = frame.to_json(orient="records")
    else:
        text = frame.to_csv(index=False, sep="\t" if name.endswith(".tsv") else ",")
    if not name.endswith(".parquet"):
        if path.name.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8") as out:
                out.write(text)
        else:
            path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["a.csv", "a.tsv", "a.jsonl", "a.json", "a.parquet",
                                  "a.csv.gz"])
def test_every_format_resumes_to_what_one_pass_gives(scoring_root, name):
    """The same cut, and the same resumed pass, whatever the format: the rows of the
    checkpoints left over hold what one pass over the whole file gives them."""
    rows = [{"review_id": r["review_id"], "text": r["text"][:40]} for r in _rows()]
    path = _write(layout_of(scoring_root).incoming / name, rows)
    sha, job = file_sha256(path), job_for(scoring_root, read_batch_rows=BATCH_ROWS)
    results = score_checkpointed(path, sha, job, Checkpoints(CHECKPOINT_ROWS, done=(0, 1)))
    assert [r.index for r in results] == [2, 3] and [r.rows_read for r in results] == [20, 2]
    ids = sorted(i for r in results for i in pq.read_table(r.scored_part[0]).column(
        "review_id").to_pylist())
    rejected = sorted(n for r in results if r.rejected_part
                      for n in pq.read_table(r.rejected_part[0]).column("source_row").to_pylist())
    assert ids == sorted(r["review_id"] for r in rows[40:] if r is not rows[44])
    assert rejected == [45]  # the id of row 3, read (not scored) in checkpoint 0


def test_a_file_within_one_checkpoint_is_one_unsharded_part(scoring_root):
    """Files of up to checkpoint_rows rows pay nothing: one part, named as always."""
    path = write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 20))
    sha, job = file_sha256(path), job_for(scoring_root, read_batch_rows=BATCH_ROWS)
    control = ShardControl()
    (result,) = score_checkpointed(path, sha, job, Checkpoints(20), control)
    assert result.index is None and result.rows_read == 20
    assert result.scored_part[1].name == part_name(sha, job.model.version, None)
    assert control.take_finished() == []


def test_a_stop_ends_the_shard_between_slices_and_leaves_no_part(scoring_root):
    path = write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 40))
    sha, job = file_sha256(path), job_for(scoring_root, read_batch_rows=40, predict_batch_size=4)
    control = ShardControl()
    real_count = control.count

    def count(sha256: str, rows: int) -> None:  # the driver stops the run after 8 rows
        real_count(sha256, rows)
        if control.rows_done(sha256) >= 8:
            control.stop()
    control.count = count
    with pytest.raises(ScoringStopped):
        score_checkpointed(path, sha, job, Checkpoints(100), control)
    assert control.rows_done(sha) == 8  # not one more prediction slice after the stop
    assert not list(job.scored_dir.parent.rglob("*.tmp"))
    with pytest.raises(ScoringStopped):
        score_shard(path, sha, Shard(), job, control=control)  # stopped before its first batch


def test_a_control_travels_to_a_dask_worker_as_a_new_one():
    """An event cannot cross processes: pickled (as prefect-dask sends parameters), a
    control arrives unlinked and not stopped; the driver cancels Dask futures instead."""
    control = ShardControl()
    control.count("a" * 64, 5)
    control.stop()
    copy = pickle.loads(pickle.dumps(control))
    assert copy.rows_done("a" * 64) == 0
    copy.check()  # not stopped: a stopped control raises ScoringStopped here
    with pytest.raises(ScoringStopped):
        control.check()


# --------------------------------------------------------------------------- kills
# Each new step of the protocol killed (SIGKILL, tasks/failpoints.py) in a real
# ``reviewflow score``, on SQLite and on PostgreSQL state; then runs until one completes.
# Afterwards every row is in scored/ or quarantine/ once, the ledger and the last
# run's summary count them all, and nothing of the checkpoints is left.
KILLS = {
    # a checkpoint's parts closed, not yet handed over: nothing kept, its temporaries swept
    "written": [("score:checkpoint-written", {})],
    # renamed to its checkpoint names, not recorded: scored again, the names reused
    "named": [("score:checkpoint-named", {})],
    # recorded: the next run reuses it
    "recorded": [("score:checkpoint-recorded", {})],
    # another plan (checkpoint_rows changed): the next run forgets the old record and is
    # killed before it removes the part; the run after sweeps it
    "forgotten": [("score:checkpoint-recorded", {}),
                  ("score:checkpoints-forgotten", {"REVIEWFLOW_CHECKPOINT_ROWS": "25"})],
    # a resumed file killed after its parts were published, before the ledger: the
    # record's part is gone (published), so the next run scores it all again
    "published": [("score:checkpoint-recorded", {}), ("score:parts-published", {})],
    # planned shards (shard_rows, as under Dask), each a task: kept when its task is done
    "planned": [("score:checkpoint-recorded", {"REVIEWFLOW_SHARD_ROWS": str(CHECKPOINT_ROWS)})],
}
RESUMED_AFTER = {"written": 0, "named": 0, "recorded": CHECKPOINT_ROWS, "forgotten": 0,
                 "published": 0, "planned": CHECKPOINT_ROWS}
# The checkpoints recorded when the last run is killed.
RECORDED = {"written": [], "named": [], "recorded": [0], "forgotten": [],
            "published": [0, 1, 2], "planned": [0]}


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request) -> str | None:
    if request.param == "sqlite":
        return None
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t{uuid.uuid4().hex[:12]}")


def _env(subprocess_env: dict, state_url: str | None, **extra) -> dict:
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0",
               REVIEWFLOW_READ_BATCH_ROWS=str(BATCH_ROWS),
               REVIEWFLOW_CHECKPOINT_ROWS=str(CHECKPOINT_ROWS))
    env.update(extra)
    if state_url:
        env["REVIEWFLOW_STATE_URL"] = state_url
    return env


def _score_cli(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(reviewflow_command("score", "--data-dir", str(root)), cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=600)


def _score_here(root, state_url: str | None, monkeypatch, **extra) -> dict:
    """The run after the killed ones, in this process with the settings ``_env`` gives a
    command. Its summary."""
    from tests.helpers import score, take_command_settings

    take_command_settings(monkeypatch, _env({}, state_url, **extra))
    return score(root)


def _state(root: Path, state_url: str | None):
    from tasks.layout import DataLayout

    return open_state(state_url, DataLayout(root=root))


def _check_once(root: Path, state_url: str | None, rows: list[dict], summary: dict) -> None:
    """Every row once in scored/ (read back with DuckDB) or quarantine/, counted so in
    the ledger and the summary; no checkpoint, temporary or input left."""
    expected_ids, expected_rejected = _expected(rows)
    ids = sorted(r for (r,) in duckdb.sql(f"SELECT review_id FROM {scored_sql(root)}").fetchall())
    assert ids == expected_ids
    rejected = sorted(quarantined_rows(root, columns=["source_row"]).column(
        "source_row").to_pylist())
    assert rejected == expected_rejected
    state = _state(root, state_url)
    try:
        totals, left = state.totals(), state.shard_records()
        (entry,) = [state.scored(sha, summary["model_version"]) for sha in
                    {r for (r,) in duckdb.sql(f"SELECT source_sha256 FROM {scored_sql(root)}"
                                              ).fetchall()}]
    finally:
        state.close()
    assert (entry.rows_read, entry.rows_scored, entry.rows_quarantined) == \
        (len(rows), len(expected_ids), len(expected_rejected))
    assert totals["rows_read"] == len(rows) and left == []
    assert not [p for p in root.rglob("*.tmp")]
    assert not [p for p in layout_of(root).incoming.rglob("*") if p.is_file()]


@pytest.mark.parametrize("kill", sorted(KILLS))
def test_a_run_killed_at_each_checkpoint_step_loses_nothing_and_doubles_nothing(
        scoring_root, subprocess_env, state_url, kill, monkeypatch):
    rows = _rows()
    path = write_csv(layout_of(scoring_root).incoming / "a.csv", rows)
    assert path.stat().st_size > SMALL_FILE_BYTES
    for failpoint, extra in KILLS[kill]:
        killed = _score_cli(scoring_root, _env(subprocess_env, state_url,
                                               REVIEWFLOW_FAILPOINT=failpoint, **extra))
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = _state(scoring_root, state_url)
    try:
        kept = state.shard_records()
    finally:
        state.close()
    assert [r.shard for r in kept] == RECORDED[kill]
    summary = _score_here(scoring_root, state_url, monkeypatch, **KILLS[kill][-1][1])
    assert summary["rows_read"] == len(rows) and summary["files_scored"] == 1
    assert summary["rows_resumed"] == RESUMED_AFTER[kill]
    assert summary["shards_resumed"] == (1 if RESUMED_AFTER[kill] else 0)
    _check_once(scoring_root, state_url, rows, summary)


def test_only_whole_checkpoints_of_the_same_model_and_plan_are_reused(scoring_root,
                                                                      state_url):
    """The protocol itself (tasks.state.checkpoints) on each backend: kept checkpoints
    come back as results only while their parts are there and hold the rows recorded;
    any other record of the content is forgotten and its parts removed."""
    from tasks.layout import DataLayout
    from tasks.scoring.shard import plan_key
    from tasks.state.checkpoints import Checkpointer

    rows = _rows()
    path = write_csv(layout_of(scoring_root).incoming / "a.csv", rows)
    sha, job = file_sha256(path), job_for(scoring_root, read_batch_rows=BATCH_ROWS)
    layout = DataLayout(root=scoring_root)
    state = _state(scoring_root, state_url)
    try:
        keeper = Checkpointer(state, job.model.version, layout.scored, layout.rejected_rows)
        plan = plan_key(job, path.name, CHECKPOINT_ROWS)
        results = score_checkpointed(path, sha, job, Checkpoints(CHECKPOINT_ROWS))
        for result in results[:3]:
            keeper.keep(plan, result)
        kept = [r.scored_part[0] for r in results[:3]]
        assert all(p.name.startswith(".") and p.name.endswith(f".{plan[:8]}.tmp") for p in kept)
        assert [r.shard for r in state.shard_records(sha)] == [0, 1, 2]

        # Another plan (another checkpoint_rows) or another model: nothing is reused.
        assert plan_key(job, path.name, 25) != plan
        assert plan_key(job, "renamed.csv", CHECKPOINT_ROWS) != plan
        other = Checkpointer(state, "another-version", layout.scored, layout.rejected_rows)
        assert other.resume(sha, plan, job.scored_dir, job.rejected_dir) == []
        assert state.shard_records(sha) == [] and not any(p.exists() for p in kept)

        for result in score_checkpointed(path, sha, job, Checkpoints(CHECKPOINT_ROWS))[:3]:
            keeper.keep(plan, result)
        records = state.shard_records(sha)
        shorter = pq.read_table(records[1].scored_part).slice(0, 5)
        pq.write_table(shorter, records[1].scored_part)  # a part with other rows than recorded
        Path(records[2].scored_part).unlink()  # a part gone
        (reused,) = keeper.resume(sha, plan, job.scored_dir, job.rejected_dir)
        assert reused.index == 0 and reused.resumed and reused.rows_read == CHECKPOINT_ROWS
        assert reused.scored_part == (Path(records[0].scored_part),
                                      job.scored_dir / part_name(sha, job.model.version, 0))
        assert [r.shard for r in state.shard_records(sha)] == [0]
        assert not Path(records[1].scored_part).exists()
        assert reused.monitor.rows == results[0].monitor.rows  # drift counts kept too
    finally:
        state.close()


def test_a_file_quarantined_past_its_checkpoints_forgets_them(scoring_root, monkeypatch):
    """A read that fails after two checkpoints were kept (a MemoryError in the reader):
    the file is quarantined whole, and its checkpoints go with it."""
    from tasks.scoring import checkpointed
    from tasks.state.checkpoints import Checkpointer
    from tests.helpers import quarantined_files, score

    real = checkpointed.iter_review_batches

    def reader(*args, **kwargs):  # 5 batches of 10 rows, then the reader dies
        for number, batch in enumerate(real(*args, **kwargs)):
            if number == 5:
                raise MemoryError("cannot allocate")
            yield batch

    monkeypatch.setattr(checkpointed, "iter_review_batches", reader)
    forgotten, real_forget = [], Checkpointer.forget

    def forget(self, sha256: str) -> None:  # what was kept when the file was given up
        forgotten.extend(self.state.shard_records(sha256))
        real_forget(self, sha256)

    monkeypatch.setattr(Checkpointer, "forget", forget)
    monkeypatch.setenv("REVIEWFLOW_CHECKPOINT_ROWS", str(CHECKPOINT_ROWS))
    monkeypatch.setenv("REVIEWFLOW_READ_BATCH_ROWS", str(BATCH_ROWS))
    write_csv(layout_of(scoring_root).incoming / "a.csv", _rows())
    summary = score(scoring_root)
    assert summary["files_quarantined"] == 1 and summary["rows_scored"] == 0
    assert "MemoryError" in quarantined_files(scoring_root)["a.csv"]["reason"]
    assert [r.shard for r in forgotten] == [0, 1]  # kept while it was read, then given up
    assert Ledger(scoring_root / "state" / "ledger.sqlite").shard_records() == []
    assert not list(scoring_root.rglob("*.tmp")) and not list(scoring_root.rglob("*.parquet"))


def test_dask_workers_score_only_the_shards_a_killed_run_did_not_keep(
        scoring_root, subprocess_env, monkeypatch):
    """A run on the thread runner with shard_rows killed once it kept a shard; the next
    run, on two Dask workers with the same shards, reuses it and sends only the others."""
    rows = _rows()
    write_csv(layout_of(scoring_root).incoming / "a.csv", rows)
    env = _env(subprocess_env, None, REVIEWFLOW_SHARD_ROWS=str(CHECKPOINT_ROWS),
               REVIEWFLOW_FAILPOINT="score:checkpoint-recorded")
    killed = _score_cli(scoring_root, env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    from tests.helpers import score

    monkeypatch.setenv("REVIEWFLOW_READ_BATCH_ROWS", str(BATCH_ROWS))
    summary = score(scoring_root, task_runner="dask", shard_rows=CHECKPOINT_ROWS)
    assert summary["rows_resumed"] == CHECKPOINT_ROWS and summary["shards_resumed"] == 1
    assert summary["shards"] == 4 and summary["rows_read"] == len(rows)
    workers = summary["workers"]
    assert all(w.startswith("tcp://") for w in workers)
    assert sum(w["shards"] for w in workers.values()) == 3  # the shard kept was not sent
    _check_once(scoring_root, None, rows, summary)


def test_checkpoints_on_an_s3_root_are_kept_and_reused(s3_env, trained_models,
                                                       subprocess_env, pg_cluster, tmp_path,
                                                       monkeypatch):
    """On object storage (a rename is a copy and a delete, a footer a ranged read) with
    PostgreSQL state: a run killed once it kept a checkpoint, the next one reuses it."""
    endpoint, fs = s3_env
    bucket = f"ckpt-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/team"
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    rows = _rows()
    local = write_csv(tmp_path / "a.csv", rows)
    fs.put_file(str(local), f"{root}/incoming/a.csv")
    url = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")
    env = _env(subprocess_env, url, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               REVIEWFLOW_STORAGE_OPTIONS=json.dumps({"endpoint_url": endpoint}))

    killed = subprocess.run(reviewflow_command("score", "--data-dir", root), cwd=PROJECT,
                            env=dict(env, REVIEWFLOW_FAILPOINT="score:checkpoint-recorded"),
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # The kept checkpoint, and the temporaries of the checkpoints scored after it.
    assert len(fs.glob(f"{root}/scored/*/.part-*-s0000.parquet.*.tmp")) == 1
    summary = _score_here(root, url, monkeypatch,  # the credentials: s3_env set them here
                          REVIEWFLOW_STORAGE_OPTIONS=env["REVIEWFLOW_STORAGE_OPTIONS"])
    assert summary["rows_resumed"] == CHECKPOINT_ROWS and summary["rows_read"] == len(rows)
    copy = tmp_path / "copy"
    fs.get(f"{root}/", str(copy), recursive=True)
    expected_ids, expected_rejected = _expected(rows)
    ids = sorted(r for (r,) in duckdb.sql(f"SELECT review_id FROM {scored_sql(copy)}").fetchall())
    assert ids == expected_ids
    assert sorted(quarantined_rows(copy, columns=["source_row"]).column(
        "source_row").to_pylist()) == expected_rejected
    assert fs.glob(f"{root}/**/.*.tmp") == [] and fs.glob(f"{root}/incoming/**") == []


# --------------------------------------------------------------------------- a real stop

def _write_large(path: Path, rows: int) -> Path:
    """A CSV of ``rows`` short reviews (larger than a small file), its ids and texts
    named after the file."""
    words = ["a fine film", "a dull film", "moving and kind", "far too long"]
    with open(path, "w", encoding="utf-8") as out:
        out.write("review_id,text\n")
        out.writelines(f"{path.stem}-{i},Take {i}: {words[i % 4]} with a cast to match.\n"
                       for i in range(rows))
    assert path.stat().st_size > SMALL_FILE_BYTES
    return path


LOG_TIME = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) \| ")


def _logged_at(line: str, near: float) -> float:
    """The wall-clock time of a Prefect log line (local time, no date), as a timestamp:
    the one of that clock time nearest ``near``, so a line across midnight reads right."""
    clock = datetime.strptime(LOG_TIME.match(line)[1], "%H:%M:%S.%f").time()
    day = datetime.fromtimestamp(near).date()
    candidates = [datetime.combine(day + timedelta(days=shift), clock).timestamp()
                  for shift in (-1, 0, 1)]
    return min(candidates, key=lambda at: abs(at - near))


def test_a_stop_inside_a_large_file_is_quick_and_the_next_run_scores_only_the_rest(
        scoring_root, subprocess_env, tmp_path, monkeypatch):
    """SIGINT (Ctrl-C, to the process group) once two checkpoints of a large file are
    kept, the next file queued behind it, with the temporary Prefect API a command
    starts: the shard stops within seconds, the run's last log lines still reach the
    API, the command exits 130 saying what it kept, and the next run publishes the kept
    checkpoints as they are (the same files) and scores only the other rows: every row
    once."""
    rows, every = 30_000, 5_000
    _write_large(layout_of(scoring_root).incoming / "big.csv", rows)
    _write_large(layout_of(scoring_root).incoming / "next.csv", rows)  # queued, cancelled
    # Prediction slices of 2 rows: the file takes tens of seconds even on a fast host.
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0", REVIEWFLOW_PREDICT_BATCH_SIZE="2",
               REVIEWFLOW_CHECKPOINT_ROWS=str(every), PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL")  # the command starts its own API, as on a first install
    log = tmp_path / "score.log"
    ledger = Ledger(scoring_root / "state" / "ledger.sqlite")
    with open(log, "w") as out:
        process = subprocess.Popen(reviewflow_command("score", "--data-dir", str(scoring_root)),
                                   cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while len(ledger.shard_records()) < 2:  # two checkpoints kept: stop now
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no two checkpoints were ever kept"
            time.sleep(0.1)
        signalled = time.time()
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=120)
        exited = time.time() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    said = log.read_text()
    assert code == 130, said[-3000:]
    (stopped,) = [line for line in said.splitlines() if "ScoringStopped" in line]
    took_effect = _logged_at(stopped, signalled) - signalled
    print(f"the shard stopped {took_effect:.2f} s after SIGINT; the command exited after "
          f"{exited:.2f} s")
    assert took_effect <= 5, stopped
    assert exited <= 5 + 20, said[-3000:]  # the stop, then Prefect's and the command's exit
    assert "Traceback" not in said and "Error logging to API" not in said
    # The run's last lines reached the temporary API before it was stopped (its database).
    with closing(sqlite3.connect(tmp_path / "prefect" / "prefect.db")) as db:
        logged = [message for (message,) in db.execute("SELECT message FROM log")]
    assert any("ScoringStopped" in m for m in logged) and any("Crash detected" in m
                                                                for m in logged), logged

    kept = ledger.shard_records()
    assert 2 <= len(kept) < rows // every and [r.shard for r in kept] == list(range(len(kept)))
    kept_rows = sum(json.loads(r.counts)["rows_read"] for r in kept)
    (line,) = [line for line in said.splitlines() if line.startswith("reviewflow: ")]
    assert "finishes the rest (2 files: 2 this run had claimed" in line, line
    assert line.endswith(f"; {kept_rows} rows of 1 unfinished files are kept in finished "
                         "checkpoints: the next run scores only the rest of those files"), line
    inodes = {r.shard: os.stat(r.scored_part).st_ino for r in kept}
    assert not list(layout_of(scoring_root).scored.rglob("*.parquet"))  # nothing published yet

    from tests.helpers import score

    monkeypatch.setenv("REVIEWFLOW_CHECKPOINT_ROWS", str(every))
    summary = score(scoring_root)
    assert summary["rows_resumed"] == kept_rows and summary["shards_resumed"] == len(kept)
    assert summary["rows_read"] == 2 * rows == summary["rows_scored"]
    (sha,) = {r.source_sha256 for r in kept}
    published = {int(p.stem.rsplit("-s", 1)[1]): p for p in layout_of(scoring_root).scored.rglob(
        f"part-{sha[:16]}-*.parquet")}
    assert sorted(published) == list(range(rows // every))
    for shard, inode in inodes.items():  # the kept checkpoints themselves, not scored again
        assert published[shard].stat().st_ino == inode
    count, distinct = duckdb.sql(f"SELECT count(*), count(DISTINCT (source_file, review_id)) "
                                 f"FROM {scored_sql(scoring_root)}").fetchall()[0]
    assert count == distinct == 2 * rows
    assert ledger.shard_records() == [] and ledger.totals()["rows_read"] == 2 * rows
    assert not list(scoring_root.rglob("*.tmp"))


# --------------------------------------------------------------------------- progress

def test_progress_inside_a_long_file_is_logged_at_least_every_10_s(scoring_root, caplog,
                                                                  monkeypatch):
    """A worker's log (no terminal) shows, while one long file scores, its rows done,
    rows/s and what is left, at least every 10 s: from the run's log records."""
    import logging

    import tasks.scoring.rows
    from tests.helpers import score

    rows = 20_000
    _write_large(layout_of(scoring_root).incoming / "big.csv", rows)
    # A slow device: each prediction slice of 50 rows takes at least 40 ms more, so the
    # file takes 16 s or more of wall time (and little CPU) however fast this host is.
    monkeypatch.setenv("REVIEWFLOW_PREDICT_BATCH_SIZE", "50")
    predict_scores = tasks.scoring.rows.predict_scores

    def on_a_slow_device(model, texts, batch_size, between=None):
        def slowly(done: int) -> None:
            time.sleep(0.04)
            if between is not None:
                between(done)
        return predict_scores(model, texts, batch_size, slowly)

    monkeypatch.setattr(tasks.scoring.rows, "predict_scores", on_a_slow_device)
    caplog.set_level(logging.INFO, logger="prefect.flow_runs")  # the suite runs at WARNING
    summary = score(scoring_root)
    assert summary["rows_scored"] == rows
    records = [r for r in caplog.records if r.name == "prefect.flow_runs"]
    (began,) = [r.created for r in records if r.getMessage().startswith("scoring on ")]
    (ended,) = [r.created for r in records if r.getMessage().startswith("1/1 files, ")]
    inside = [r for r in records if r.getMessage().startswith("scoring big.csv: ")]
    print(f"the file took {ended - began:.1f} s; {len(inside)} progress lines inside it")
    times = [began, *(r.created for r in inside), ended]
    assert len(inside) >= 2 and max(b - a for a, b in zip(times, times[1:])) <= 10, \
        [(r.created - began, r.getMessage()) for r in inside]
    pattern = re.compile(r"scoring big\.csv: ([\d,]+) of about ([\d,]+) rows done, (\d+) rows/s, "
                         r"([\d,]+) rows left \(about \d+ s\); 0/1 files done, 0 more waiting")
    found = [pattern.fullmatch(r.getMessage()) for r in inside]
    assert all(found), [r.getMessage() for r in inside]
    done = [int(m[1].replace(",", "")) for m in found]
    assert done == sorted(done) and 0 < done[0] and done[-1] < rows
    for match in found:  # the estimate of the file's rows, from its bytes, is close
        assert abs(int(match[2].replace(",", "")) - rows) < rows // 20
        assert int(match[3]) > 0

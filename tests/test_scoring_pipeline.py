"""A shard's batches in a bounded pipeline (tasks.scoring.pipeline): read and validated in
a thread of their own ahead of scoring, written in another behind it; an error in either,
or a stop, ends the shard with its threads joined and its parts removed. Real model,
real suite, real Parquet parts; no flow runs here."""

from __future__ import annotations

import threading
import time

import pyarrow.parquet as pq
import pytest

from tasks.errors import ScoringStopped
from tasks.scoring.checkpointed import Checkpoints, score_checkpointed
from tasks.scoring.control import ShardControl
from tasks.scoring.pipeline import THREAD_PREFIX, ReadAhead, WriteBehind
from tasks.scoring.planning import Shard
from tasks.scoring.shard import score_shard
from tasks.storage.local import StagedParquet, file_sha256
from tasks.validation import ReviewValidator
from tests.helpers import good_rows, layout_of, write_csv
from tests.test_shard_scoring import job_for

ROWS, BATCH = 40, 5  # eight read batches


def pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def left_behind(root) -> list:
    """Every file under scored/ and quarantine/: a shard that failed leaves none."""
    layout = layout_of(root)
    return [p for folder in (layout.scored, layout.quarantine) if folder.exists()
            for p in folder.rglob("*") if p.is_file()]


def finished_parts(control: ShardControl) -> set:
    return {part[0] for result in control.take_finished()
            for part in (result.scored_part, result.rejected_part) if part is not None}


@pytest.fixture
def inbox_file(scoring_root):
    path = write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", ROWS))
    return path, file_sha256(path)


def shard_runner(kind: str):
    """Score a whole file as the thread runner does (in checkpoints) or as a Dask shard."""
    if kind == "checkpointed":
        return lambda path, sha, job, control: score_checkpointed(
            path, sha, job, Checkpoints(3 * BATCH), control)
    return lambda path, sha, job, control: [score_shard(path, sha, Shard(), job,
                                                        control=control)]


def failing_after(calls: int, original, error: Exception, seen: list):
    def wrapped(*args, **kwargs):
        seen.append(threading.current_thread().name)
        if len(seen) > calls:
            raise error
        return original(*args, **kwargs)
    return wrapped


KINDS = ["checkpointed", "shard"]


@pytest.mark.parametrize("kind", KINDS)
def test_reading_and_writing_run_beside_scoring_and_keep_every_row_in_order(
        scoring_root, inbox_file, monkeypatch, kind):
    path, sha = inbox_file
    validated, written = [], []
    monkeypatch.setattr(ReviewValidator, "validate", failing_after(
        10**6, ReviewValidator.validate, AssertionError, validated))
    monkeypatch.setattr(StagedParquet, "write", failing_after(
        10**6, StagedParquet.write, AssertionError, written))
    job = job_for(scoring_root, read_batch_rows=BATCH)
    results = shard_runner(kind)(path, sha, job, ShardControl())
    shard_thread = threading.current_thread().name
    assert validated and set(validated) == {f"{THREAD_PREFIX}-read"} != {shard_thread}
    assert written and set(written) == {f"{THREAD_PREFIX}-write"}
    ids = [i for r in results for i in pq.read_table(r.scored_part[0]).column(
        "review_id").to_pylist()]
    assert ids == [f"a-{i}" for i in range(ROWS)]
    assert sum(r.rows_scored for r in results) == ROWS
    assert pipeline_threads() == []
    for result in results:
        result.discard()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stage", ["read", "write"])
@pytest.mark.parametrize("error", [OSError, RuntimeError])
def test_an_error_mid_file_in_a_pipeline_thread_ends_the_shard_cleanly(
        scoring_root, inbox_file, monkeypatch, kind, stage, error):
    """An OSError (the environment: a full disk) is raised in the shard's thread and
    fails the run; any other error quarantines the file (``poison_reason``). Either way
    both threads are joined and only the checkpoints finished before it keep parts."""
    path, sha = inbox_file
    seen: list = []
    if stage == "read":  # validation runs in the reader thread, after the read
        monkeypatch.setattr(ReviewValidator, "validate", failing_after(
            3, ReviewValidator.validate, error("disk gone"), seen))
    else:
        monkeypatch.setattr(StagedParquet, "write", failing_after(
            5, StagedParquet.write, error("disk gone"), seen))
    job = job_for(scoring_root, read_batch_rows=BATCH)
    control = ShardControl()
    if error is OSError:
        with pytest.raises(OSError, match="disk gone"):
            shard_runner(kind)(path, sha, job, control)
    else:
        results = shard_runner(kind)(path, sha, job, control)
        assert "RuntimeError (disk gone)" in results[-1].unreadable
        assert results[-1].scored_part is None
    assert pipeline_threads() == []
    # Only the parts of checkpoints finished before the error stay: the driver's to keep.
    assert set(left_behind(scoring_root)) == finished_parts(control)


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_mid_file_ends_the_shard_at_once_with_its_threads(
        scoring_root, inbox_file, monkeypatch, kind):
    path, sha = inbox_file
    control, seen = ShardControl(), []
    original = StagedParquet.write

    def write_then_stop(self, table):
        seen.append(1)
        if len(seen) == 3:
            control.stop()
        return original(self, table)
    monkeypatch.setattr(StagedParquet, "write", write_then_stop)
    job = job_for(scoring_root, read_batch_rows=BATCH)
    started = time.monotonic()
    with pytest.raises(ScoringStopped):
        shard_runner(kind)(path, sha, job, control)
    assert time.monotonic() - started < 60
    assert pipeline_threads() == []
    assert control.rows_done(sha) < ROWS
    assert set(left_behind(scoring_root)) == finished_parts(control)


def test_the_reader_keeps_at_most_one_batch_ahead_of_its_consumer():
    produced = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i
    reader = ReadAhead(items())
    try:
        for item in reader:
            time.sleep(0.05)  # the reader has all the time it wants
            assert len(produced) <= item + 2  # this one and one ahead
    finally:
        reader.close()
    assert produced == list(range(10))
    assert pipeline_threads() == []


def test_a_reader_stopped_early_closes_its_generator_and_thread():
    closed = []

    def items():
        try:
            yield from range(100)
        finally:
            closed.append(True)
    reader = ReadAhead(items())
    assert next(iter(reader)) == 0
    reader.close()
    assert closed == [True] and pipeline_threads() == []


def test_the_writer_raises_a_failed_job_at_the_next_call_and_drops_the_rest():
    done = []
    writer = WriteBehind()

    def fail():
        raise OSError("no space left")
    writer.submit(fail)
    with pytest.raises(OSError, match="no space"):
        for i in range(50):
            writer.submit(lambda i=i: done.append(i))
            time.sleep(0.01)
    writer.close()
    assert done == [] and pipeline_threads() == []

"""A shard's work as a plain function (tasks.scoring.shard): what the flow's tasks and the
profiler call. No flow runs here; the model is the session's trained champion."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow.parquet as pq

from tasks.layout import DataLayout, day_of
from tasks.scoring.planning import Shard
from tasks.scoring.shard import STAGES, ScoringJob, StageClock, score_shard, score_small_files
from tasks.scoring.workers import ModelRef
from tasks.settings import Settings
from tasks.storage.local import file_sha256
from tasks.training.registry import Registry
from tests.helpers import good_rows, layout_of, write_csv


def job_for(root, **settings) -> ScoringJob:
    registry = Registry(layout_of(root).models)
    version = registry.champion_version()
    layout, started = DataLayout(root=root), datetime.now(UTC)
    return ScoringJob.from_settings(Settings(data_dir=root, **settings),
                                    ModelRef(version, registry.model_path(version)), None,
                                    started, layout.scored_partition(day_of(started)),
                                    layout.rejected_partition(day_of(started)))


def test_a_shard_leaves_temporary_parts_and_counts_its_rows(scoring_root):
    rows = good_rows("a", 12) + [{"review_id": "a-3", "text": "A repeated id."}]
    path = write_csv(layout_of(scoring_root).incoming / "a.csv", rows)
    job, clock = job_for(scoring_root, read_batch_rows=5), StageClock()
    result = score_shard(path, file_sha256(path), Shard(), job, clock)
    assert (result.rows_read, result.rows_scored, result.rows_quarantined) == (13, 12, 1)
    temp, final = result.scored_part
    assert temp.name.startswith(".") and temp.name.endswith(".tmp") and not final.exists()
    assert pq.read_table(temp).num_rows == 12  # the whole part, not yet published
    assert result.monitor.rows == 12
    assert set(clock.seconds) == set(STAGES) and all(clock.seconds[s] > 0 for s in STAGES)


def test_a_bundle_scores_each_file_as_a_shard_would(scoring_root):
    inbox = layout_of(scoring_root).incoming
    # The repeated id straddles read batches: uniqueness holds over the whole file.
    paths = [write_csv(inbox / "a.csv", good_rows("a", 7) + [{"review_id": "a-0", "text": "x"}]),
             write_csv(inbox / "b.csv", good_rows("b", 3))]
    (inbox / "c.csv").write_bytes(b"\xff\xfe\x00garbage")
    files = [(p, file_sha256(p)) for p in [*paths, inbox / "c.csv"]]
    job = job_for(scoring_root, read_batch_rows=3)
    bundled = score_small_files(files, job)
    for result in bundled:
        result.discard()
    alone = [score_shard(path, sha256, Shard(), job) for path, sha256 in files]
    for one, other in zip(bundled, alone):
        assert (one.rows_read, one.rows_scored, one.rows_quarantined, one.unreadable) == \
            (other.rows_read, other.rows_scored, other.rows_quarantined, other.unreadable)
    assert (bundled[0].rows_scored, bundled[0].rows_quarantined) == (7, 1)
    assert bundled[2].unreadable and bundled[2].scored_part is None

"""Checkpoints: the finished shards of a file not yet committed, kept for the next run.

A run stopped inside a large file (Ctrl-C, SIGTERM, a spot host reclaimed, a crash)
keeps the shards it finished; the next run scores only the rest. A file is cut into
shards by its plan: the planned shards of ``shard_rows`` (Dask, or that setting), or,
on the thread runner, checkpoints of ``checkpoint_rows`` rows cut while one task reads
the file (``tasks.scoring.checkpointed``); the plan's key is ``tasks.scoring.shard.plan_key``.
Every step below runs on the driver, under
the file's content lock (``Committer.claim``), beside the commit of ``tasks.state.commit``:

1. ``Checkpointer.keep`` (a shard is finished, its parts closed under random temporary
   names): each part is renamed to its checkpoint name, ``.part-<sha16>-<version>-s0003.
   parquet.<plan8>.tmp`` (a dot-name: ``*.parquet`` globs, pyarrow and DuckDB never see
   it; the content's sweeps do, ``tasks.layout.is_part_of``), then the shard is recorded
   in the run state (``RunState.record_shard``) with its counts.
2. ``Checkpointer.resume`` (the next run has claimed the same content): the records of
   another model or plan (``plan_key``: the rows per shard, the file's name, how it is
   read and validated) are forgotten and their parts removed; a record of this model and
   plan whose parts are missing, or whose footers hold other row counts than recorded,
   is forgotten too. The rest come back as results, and only the other shards are scored.
3. The commit publishes them with the file's other parts (renamed into the run's date
   partition) and records the file; the same ledger transaction forgets its checkpoints
   (``RunState.record_scored_many``). A file quarantined whole or changed while read
   forgets its checkpoints and removes their parts (``forget``).

A kill between any two steps leaves a part without a record (overwritten by the next
rename of that shard, or swept by the commit's ``replace_stale_parts``) or a record
whose part is gone or renamed (forgotten by step 2's check): never a row twice or lost.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.failpoints import failpoint
from tasks.monitoring import MonitorCounts
from tasks.outcomes import RowCounts
from tasks.state.backend import RunState, ShardRecord
from tasks.state.staged import StagedShard
from tasks.storage.local import Location, publish
from tasks.storage.objects import as_location

# What a checkpoint record keeps of its shard's result, besides the parts.
_KEPT = [f.name for f in fields(RowCounts)] + ["encoding", "worker", "host", "pid", "device"]


def checkpoint_name(final: Location, plan: str) -> Location:
    """Where a finished shard's part waits for its file's commit: beside its final name,
    a dot-name ending in ``.tmp`` (``tasks.layout.is_part_of`` names it this content's)."""
    return final.with_name(f".{final.name}.{plan[:8]}.tmp")


@dataclass
class Checkpointer:
    """Keeps, finds and forgets the checkpoints of one run's model in the run state.
    ``scored`` and ``rejected``: the data root's ``scored/`` and ``quarantine/rows/``,
    where a recorded part is found again by its date partition and name (so a root
    that moved, or an object store's options, are the run's own)."""

    state: RunState
    model_version: str
    scored: Location
    rejected: Location

    def keep(self, plan: str, result: StagedShard) -> None:
        """Step 1: rename a finished shard's parts to their checkpoint names, then
        record it. ``result`` then points at the checkpoint names (``kept``)."""
        for attribute in ("scored_part", "rejected_part"):
            part = getattr(result, attribute)
            if part is not None:
                temp, final = part
                setattr(result, attribute, (publish(temp, checkpoint_name(final, plan)), final))
        failpoint("score:checkpoint-named")
        self.state.record_shard(ShardRecord(
            result.sha256, self.model_version, plan, result.index,
            _path(result.scored_part), _path(result.rejected_part), _counts(result)))
        result.kept = True
        failpoint("score:checkpoint-recorded")

    def resume(self, sha256: str, plan: str | None, scored_dir: Location,
               rejected_dir: Location) -> list[StagedShard]:
        """Step 2: this content's checkpoints of ``plan`` that are whole, as results to
        publish with the file (into ``scored_dir`` and ``rejected_dir``, the run's date
        partitions); every other record of the content forgotten, its parts removed.
        ``plan`` None: none is reused."""
        reused, stale = [], []
        for record in self.state.shard_records(sha256):
            fits = record.model_version == self.model_version and record.plan == plan
            result = self._result(record, scored_dir, rejected_dir) if fits else None
            (reused if result is not None else stale).append(result or record)
        self._forget(stale)
        return reused

    def forget(self, sha256: str) -> None:
        """This content's checkpoints are of no use (its file was quarantined, or changed
        while read): forget them, remove their parts."""
        self._forget(self.state.shard_records(sha256))

    def _forget(self, records: list[ShardRecord]) -> None:
        if not records:
            return
        self.state.forget_shards(records)
        failpoint("score:checkpoints-forgotten")
        for record in records:
            for part, folder in ((record.scored_part, self.scored),
                                 (record.quarantine_part, self.rejected)):
                if part:
                    _found(folder, part).unlink(missing_ok=True)

    def _result(self, record: ShardRecord, scored_dir: Location,
                rejected_dir: Location) -> StagedShard | None:
        """The result a whole checkpoint stands for, or None if its parts are not whole."""
        counts = json.loads(record.counts)
        monitor = MonitorCounts(**counts.pop("monitor"))
        result = StagedShard(record.shard, **counts, monitor=monitor,
                             sha256=record.source_sha256, kept=True, resumed=True)
        for attribute, part, rows, folder, target in (
                ("scored_part", record.scored_part, result.rows_scored, self.scored,
                 scored_dir),
                ("rejected_part", record.quarantine_part, result.rows_quarantined,
                 self.rejected, rejected_dir)):
            if part is None:
                if rows:
                    return None
                continue
            where = _found(folder, part)
            if _parquet_rows(where) != rows:
                return None
            final_name = where.name[1:].rsplit(".", 2)[0]  # .<final>.<plan8>.tmp
            setattr(result, attribute, (where, target / final_name))
        return result


def kept_rows(state: RunState) -> tuple[int, int]:
    """The rows read in every checkpoint the state keeps, and the contents they are of:
    what stopped runs left for the next one."""
    records = state.shard_records()
    rows = sum(json.loads(record.counts)["rows_read"] for record in records)
    return rows, len({record.source_sha256 for record in records})


def _path(part: tuple[Location, Location] | None) -> str | None:
    return None if part is None else str(part[0])


def _counts(result: StagedShard) -> str:
    kept = {name: getattr(result, name) for name in _KEPT}
    return json.dumps(kept | {"monitor": asdict(result.monitor)})


def _found(folder: Location, part: str) -> Location:
    """A recorded part found again under ``folder`` by its date partition and name."""
    partition, _, name = part.rstrip("/").rpartition("/")
    return folder / partition.rpartition("/")[2] / name


def _parquet_rows(part: Location) -> int | None:
    """Rows in a Parquet file's footer; None if it is missing or not a whole Parquet file."""
    try:
        if (native := as_location(part).arrow_path()) is not None:
            return pq.read_metadata(native).num_rows
        with part.open("rb") as stream:
            return pq.ParquetFile(stream).metadata.num_rows
    except (OSError, pa.ArrowException):
        return None

"""What happened to a file, or to one shard of it: the counts every step adds up."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum


class FileStatus(StrEnum):
    """What a run did with one input file (``FileOutcome.status``, the run summary's rows)."""

    SCORED = "scored"
    ALREADY_SCORED = "already scored"   # its content was scored before, by this model
    QUARANTINED = "quarantined"         # whole file to quarantine/files/ with its reason
    UNSUPPORTED = "unsupported"         # not a format reviewflow reads; quarantined too
    BUSY = "busy"                       # another run holds it
    CHANGED = "changed"                 # modified while read; left for the next run
    FAILED = "failed"                   # an archived file a backfill could not score: its
                                        # reason recorded, the file left where it was


@dataclass(kw_only=True)
class RowCounts:
    """What happened to the rows of a file or of one shard of it."""

    rows_read: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    positives: int = 0  # scored rows predicted positive
    labeled: int = 0    # scored rows that carried a label
    correct: int = 0    # ... and whose prediction matched it
    rows_id_generated: int = 0  # rows read whose review_id was generated (no id column)

    def add(self, other: RowCounts) -> None:
        for name in (f.name for f in fields(RowCounts)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class FileOutcome(RowCounts):
    file: str
    status: FileStatus
    seconds: float = 0.0
    encoding: str = ""  # the text encoding it was read in ("" for Parquet)
    detail: str = ""
    # Where the file's work ran (docs/scaling-out.md): its shards, and the Dask worker
    # addresses ("local" for the flow's own process), hosts and devices they ran on.
    shards: int = 0
    workers: str = ""
    hosts: str = ""
    devices: str = ""
    # Of its shards, those a stopped run had finished and this one reused
    # (tasks.state.checkpoints): how many, their rows read and of these the rows scored.
    shards_resumed: int = 0
    rows_resumed: int = 0
    scored_resumed: int = 0


"""What the commit needs of one shard's work: its staged parts and its counts.

A shard (``tasks.scoring``) leaves its scored and rejected rows in parts under temporary
names; ``StagedShard`` names them (``(temporary, final)``) with the rows they hold and
where the work ran. The commit publishes them (``tasks.state.commit``), a checkpoint
keeps them for the next run (``tasks.state.checkpoints``). Scoring's own result
(``tasks.scoring.shard.ShardResult``) is one, with what only the run's report reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.monitoring import MonitorCounts
from tasks.outcomes import RowCounts
from tasks.storage.local import Location


@dataclass
class StagedShard(RowCounts):
    """One shard's staged parts (still temporaries: ``(temp, final)``) and counts."""

    index: int | None
    scored_part: tuple[Location, Location] | None = None
    rejected_part: tuple[Location, Location] | None = None
    unreadable: str | None = None  # the file cannot be read: quarantine it whole
    encoding: str = ""  # the text encoding the reader used
    worker: str = "local"
    host: str = ""
    pid: int = 0
    device: str = ""
    sha256: str = ""
    monitor: MonitorCounts = field(default_factory=MonitorCounts)  # drift signal counts
    # A checkpoint (tasks.state.checkpoints): its parts are under their checkpoint names
    # and recorded in the run state, so a failure of the run leaves them for the next
    # one (kept); one kept by an earlier, stopped run and reused by this one (resumed).
    kept: bool = False
    resumed: bool = False

    def discard(self) -> None:
        """Remove the shard's temporary parts (its file is quarantined, changed or failed)."""
        for part in (self.scored_part, self.rejected_part):
            if part is not None:
                part[0].unlink(missing_ok=True)

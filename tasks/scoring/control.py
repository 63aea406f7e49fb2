"""What the flow's process shares with the shards it runs in its own threads: a stop and counts.

The driver (``tasks.scoring.queue``) passes one ``ShardControl`` to every shard task. A
shard calls ``check`` between record batches and between prediction slices; once the
driver has called ``stop`` (it was interrupted, or failed), ``check`` raises
``ScoringStopped``, so a stop takes effect within one slice instead of at the end of the
shard. The shard adds the rows it finishes to counts the driver's progress lines read
(``count``, ``rows_done``), and hands over each checkpoint it finishes (``finished``)
for the driver to keep (``take_finished``). Control flows down: a shard never calls into
the flow; the driver reads what the shards left here when it wakes.

A control pickled to a Dask worker arrives there as a new, unlinked one (an event or a
lock cannot travel between processes): a Dask shard is never stopped this way and its
counts stay on the worker. There the driver cancels the shards' futures instead, and
counts rows per finished shard.
"""

from __future__ import annotations

import threading

from tasks.errors import ScoringStopped


class ShardControl:
    """A stop, row counts per file and shard, and finished checkpoints; thread-safe."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._rows: dict[str, int] = {}  # sha256 -> rows done
        self._read: dict[str, tuple[int, int]] = {}  # sha256 -> (rows read, their bytes)
        self._finished: list = []

    def __reduce__(self):
        return ShardControl, ()  # a new one where it arrives: see the module's docstring

    # -- the stop ---------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def check(self) -> None:
        """Raise ``ScoringStopped`` if the run is stopping."""
        if self._stop.is_set():
            raise ScoringStopped("the run is stopping: this shard stopped with it")

    # -- counts -----------------------------------------------------------------------
    def count(self, sha256: str, rows: int) -> None:
        """``rows`` more rows of this file are done (scored, or quarantined)."""
        with self._lock:
            self._rows[sha256] = self._rows.get(sha256, 0) + rows

    def count_read(self, sha256: str, rows: int, size: int) -> None:
        """``rows`` more rows of the file were read, ``size`` bytes of ids and texts: how
        the driver estimates the rows of a text file it cannot count in advance."""
        with self._lock:
            done, seen = self._read.get(sha256, (0, 0))
            self._read[sha256] = (done + rows, seen + size)

    def rows_done(self, sha256: str) -> int:
        with self._lock:
            return self._rows.get(sha256, 0)

    def rows_read(self, sha256: str) -> tuple[int, int]:
        """Rows of the file read so far (in order, from its start) and their bytes."""
        with self._lock:
            return self._read.get(sha256, (0, 0))

    def forget(self, sha256: str) -> None:
        """The file is done: drop its counts."""
        with self._lock:
            self._rows.pop(sha256, None)
            self._read.pop(sha256, None)

    # -- finished checkpoints ---------------------------------------------------------
    def finished(self, result) -> None:
        """A checkpoint of a file is finished (its parts closed): for the driver to keep."""
        with self._lock:
            self._finished.append(result)

    def take_finished(self) -> list:
        with self._lock:
            taken, self._finished = self._finished, []
        return taken


"""The driver's side of the shards it waits for: checkpoints kept as they finish, progress
inside a file, and a stop that reaches the shards.

``Watch.gather`` waits for a unit's shard futures ``TICK_SECONDS`` at a time. Each time
it wakes, it keeps the checkpoints finished since (``tasks.state.checkpoints``): a planned
shard once its future is done, a checkpoint of a file scored in one pass once its task
hands it over through the ``ShardControl``; and it yields the counts of the files in
flight (``Working``), which ``FileQueue.score`` hands up to the flow for its progress
lines. Control flows down: the shards only count and hand over; the flow reads the
counts it is given; everything here runs in the flow's thread. On the thread runner the
counts move with every prediction slice; a shard on a Dask worker counts once it is done.

A future (what the ``submit`` the queue is given returns) is anything with ``done()``,
``cancel()``, ``wait(timeout)`` and ``result()``.

``Watch.stop``, when the run stops (an interrupt, a failure): the shards in this process
stop at their next batch or prediction slice (``ShardControl.stop``); futures on Dask
are cancelled (a Dask task already running cannot be stopped: its result is abandoned,
its temporary parts swept by a later commit of its file); what finished meanwhile is
kept.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass, field

from tasks.reading import detect_format
from tasks.scoring.control import ShardControl
from tasks.scoring.shard import ShardResult
from tasks.state.checkpoints import Checkpointer
from tasks.state.commit import discard
from tasks.storage.local import readable_name

# How often the driver wakes while shards run: to keep checkpoints, and for progress.
TICK_SECONDS = 1.0
# How long a stop waits for this process's shards to end (each ends at its next check).
STOP_WAIT_SECONDS = 10.0
LOCAL_WORKER = "local"  # tasks.scoring.workers.here(): a shard run in this process

# One file of a unit: the queue's record of it (``tasks.scoring.queue.InFlight``: its
# claim, shards, plan and resumed checkpoints) and the futures of its shards.
Waited = tuple[object, list]


@dataclass(frozen=True)
class FileProgress:
    """A file being scored, as a progress line shows it."""

    name: str
    rows_done: int  # by this run
    rows_resumed: int  # kept from a stopped run
    expected: int | None  # all its rows, when known or estimated
    exact: bool  # expected counted, not estimated


@dataclass(frozen=True)
class Working:
    """The files in flight while the driver waits: what ``FileQueue.score`` yields between
    the files it finishes, for the flow's progress lines."""

    files: list[FileProgress]


@dataclass
class Watch:
    """What the driver does while its shards run (see the module's docstring)."""

    control: ShardControl
    checkpoints: Checkpointer
    logger: object
    flights: dict[str, object] = field(default_factory=dict)  # files in flight, by sha256
    expected: dict[str, tuple[int | None, bool]] = field(default_factory=dict)

    def track(self, flight) -> None:
        self.flights[flight.claim.sha256] = flight

    def untrack(self, flight) -> None:
        sha256 = flight.claim.sha256
        self.flights.pop(sha256, None)
        self.expected.pop(sha256, None)
        self.control.forget(sha256)

    def gather(self, files: list[Waited]) -> Iterator[Working]:
        """Every shard result of every file of a unit (one file, or a bundle of small
        ones), returned once all are in; meanwhile the files' counts, once per tick.
        On a failure the run's other shards are stopped; once all have ended,
        the results are discarded (but the checkpoints kept) and the first failure
        raised, so nothing is cleaned up under a running task."""
        gathered: list[list[ShardResult]] = [[] for _ in files]
        pending = [(index, future) for index, (_, futures) in enumerate(files)
                   for future in futures]
        error: BaseException | None = None
        while pending:
            _wait(pending[0][1], TICK_SECONDS)
            waiting = []
            for index, future in pending:
                if not _done(future):
                    waiting.append((index, future))
                    continue
                try:
                    found = future.result()
                except BaseException as exc:  # noqa: BLE001 - raised once all have ended
                    if error is None:
                        error = exc
                        self._stop_shards([f for _, f in waiting + pending])
                    continue
                for result in found if isinstance(found, list) else [found]:
                    self._arrived(files[index][0], result)
                    gathered[index].append(result)
            pending = waiting
            self._keep_handed_over()
            yield self.working()
        if error is not None:
            for results in gathered:
                discard(results)
            raise error
        return gathered

    def stop(self, files: list[Waited]) -> None:
        """The run stops: stop its shards, wait a moment for those of this process, keep
        what finished meanwhile."""
        futures = [future for _, waited in files for future in waited]
        self._stop_shards(futures)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for future in futures:
            _wait(future, max(deadline - time.monotonic(), 0))
        kept = 0
        try:
            for flight, waited in files:
                for future in waited:
                    for result in _succeeded(future):
                        kept += self._arrived(flight, result)
            kept += self._keep_handed_over()
        except Exception as exc:  # noqa: BLE001 - the stop goes on; the next run rescores
            self.logger.warning("stopping: a finished shard could not be kept (%s); the next "
                                "run scores it again", exc)
        if kept:
            self.logger.info("stopping: kept %d more finished checkpoints for the next run",
                             kept)

    def working(self) -> Working:
        """The counts of the files in flight."""
        return Working([
            FileProgress(readable_name(flight.claim.name), self.control.rows_done(sha256),
                         sum(r.rows_read for r in flight.resumed), *self._expected(flight))
            for sha256, flight in self.flights.items()])

    def _stop_shards(self, futures: list) -> None:
        self.control.stop()
        for future in futures:
            future.cancel()  # a Dask future, or a thread's not yet started

    def _arrived(self, flight, result: ShardResult) -> int:
        """A shard's result is here: count a Dask worker's rows; keep a planned shard as
        a checkpoint. Returns 1 if it was kept."""
        if result.worker != LOCAL_WORKER:
            self.control.count(flight.claim.sha256, result.rows_read)
        planned = len(flight.shards) > 1 and result.index is not None
        if planned and flight.plan and not result.kept and result.unreadable is None:
            self.checkpoints.keep(flight.plan, result)
            return 1
        return 0

    def _keep_handed_over(self) -> int:
        """Keep the checkpoints tasks handed over since the last time."""
        kept = 0
        for result in self.control.take_finished():
            flight = self.flights.get(result.sha256)
            if flight is not None and flight.plan and not result.kept:
                self.checkpoints.keep(flight.plan, result)
                kept += 1
        return kept

    def _expected(self, flight) -> tuple[int | None, bool]:
        """All the file's rows: a Parquet footer's count, or for a plain text file read
        from its start an estimate from the bytes of the rows read so far."""
        claim = flight.claim
        if claim.sha256 in self.expected:
            return self.expected[claim.sha256]
        found = detect_format(claim.path)
        if found is not None and found.format.row_count is not None:
            try:
                counted = (found.format.row_count(claim.path), True)
            except Exception:  # noqa: BLE001 - progress only; the shard reports the file
                counted = (None, False)
            self.expected[claim.sha256] = counted
            return counted
        if found is None or found.gzipped:
            return None, False
        rows, size = self.control.rows_read(claim.sha256)
        if not size:
            return None, False
        return max(rows, round(rows * claim.size / size)), False


def _done(future) -> bool:
    return future.done()


def _wait(future, timeout: float) -> None:
    """Wait up to ``timeout`` for a future to end; a cancelled one has ended."""
    if _done(future):
        return
    with contextlib.suppress(Exception, CancelledError):  # cancelled meanwhile
        future.wait(timeout)


def _succeeded(future) -> list[ShardResult]:
    """A finished future's results; none if it failed, was cancelled or is still running."""
    if not _done(future):
        return []
    try:
        found = future.result()
    except BaseException:  # noqa: BLE001 - failed or cancelled: nothing to keep
        return []
    return found if isinstance(found, list) else [found]

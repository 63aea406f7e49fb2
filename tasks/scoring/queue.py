"""The file queue: how the ready files of a run become Parquet, a few files ahead.

Who does what (docs/scaling-out.md): the flow's process (the driver) claims each file
(``tasks.state.commit``), plans its shards here (``tasks.scoring.planning``), submits
their work through the ``submit`` it is given, and commits the file once every shard is
done (``tasks.state.commit``), so the crash-consistency of a single process holds for any
number of workers. ``submit(fn, **params)`` runs ``fn`` (``score_shard``,
``score_small_files`` or ``score_checkpointed``) with those parameters somewhere and
returns a future (``tasks.scoring.watch``); the flow passes one built from its Prefect
task runner (threads, or Dask), so nothing here knows Prefect. Small whole files go to
workers in bundles, one ``score_small_files`` call each. On the thread runner, any other
file that is not split into shards is one ``score_checkpointed`` call, which cuts it into
checkpoints as it reads.

Finished shards and checkpoints are kept as they finish (``tasks.state.checkpoints``), so
a run stopped inside a large file leaves them to the next run, which scores only the
rest; ``tasks.scoring.watch`` keeps them, counts progress inside files, and stops the
shards when the run stops.

``FileQueue.score`` yields each file as it is committed, for the run's report, and
between them the counts of the files in flight (``Working``), for the progress lines.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from tasks.errors import poison_reason
from tasks.outcomes import FileOutcome
from tasks.reading import UnreadableFileError, detect_format
from tasks.scoring.checkpointed import Checkpoints, score_checkpointed
from tasks.scoring.control import ShardControl
from tasks.scoring.passthrough import file_columns, register, root_key
from tasks.scoring.planning import Shard, plan_shards, unique_columns
from tasks.scoring.shard import (
    ScoringJob,
    ShardResult,
    plan_key,
    score_shard,
    score_small_files,
)
from tasks.scoring.watch import Watch, Working
from tasks.settings import Settings
from tasks.state.claim import Claim, Hashed
from tasks.state.commit import Committer
from tasks.state.inbox import is_claimed, runs_died
from tasks.storage.local import readable_name

# Files whose shards may be queued at once. Threads: the next file is hashed and planned
# while one scores. Dask: enough to keep a large cluster busy, few enough that the driver
# does not hold thousands of locks (each an open file).
THREADS_FILES_AHEAD = 1
DASK_FILES_IN_FLIGHT = 64
# Small whole files are scored in bundles (one ``score_small_files`` call, one suite
# run) of up to BUNDLE_FILES files or BUNDLE_BYTES bytes: per-file fixed costs (task
# runs, Great Expectations' graph) would otherwise dominate an inbox of tiny files.
SMALL_FILE_BYTES = 1 << 20
BUNDLE_FILES = 128
BUNDLE_BYTES = 32 << 20
# Each begun file holds its lock (an open file) until committed: keep well under the
# usual limit of 1,024 open files however many units are in flight.
MAX_FILES_LOCKED = 384

# Runs one unit of work (a function of tasks.scoring with its parameters) and returns
# its future: the flow's task runner.
Submit = Callable[..., object]


@dataclass
class InFlight:
    """A claimed file whose shards are queued or running: its claim, how it is cut
    (its shards, and the checkpoint plan: ``plan_key``; None for no checkpoints), the
    checkpoints a stopped run left that this run reuses, and its shards' futures."""

    claim: Claim
    shards: list[Shard]
    plan: str | None = None
    resumed: list[ShardResult] = field(default_factory=list)
    futures: list = field(default_factory=list)

    @property
    def small(self) -> bool:
        """A whole file small enough to be scored in a bundle with others, whose batches
        are all held at once. Not a gzip: its size on disk says nothing of what it
        expands to (up to max_decompressed_bytes), so it streams on its own."""
        found = detect_format(self.claim.path)
        return (len(self.shards) == 1 and self.shards[0].index is None
                and self.claim.size <= SMALL_FILE_BYTES and found is not None
                and not found.gzipped)


@dataclass(frozen=True)
class _BundleSlot:
    """One file's share of a ``score_small_files`` call: its result, in a future's place."""

    future: object
    index: int

    def done(self) -> bool:
        return self.future.done()

    def cancel(self) -> None:
        self.future.cancel()

    def wait(self, timeout: float | None = None) -> None:
        self.future.wait(timeout)

    def result(self):
        return self.future.result()[self.index]


# A file done: its outcome, its shards' results and when its work began (perf_counter).
Done = tuple[FileOutcome, list[ShardResult], float]


@dataclass
class FileQueue:
    """Claims files, submits their shards through ``submit`` and commits files in order.

    ``score(ready)`` yields each file as it is done (``Done``), for the run's report, and
    the counts of the files in flight (``Working``) while it waits. Used as a context
    manager: leaving it releases every claim still held, whether the queue or its
    caller failed.
    """

    settings: Settings
    submit: Submit
    job: ScoringJob
    committer: Committer
    # Units (one file's shards, or a bundle of small files) in the order they were queued;
    # small files claimed and not yet queued; files waiting for their twin's commit.
    in_flight: deque[list[InFlight]] = field(default_factory=deque)
    bundle: list[InFlight] = field(default_factory=list)
    waiting: list[Hashed] = field(default_factory=list)
    unique: list[str] = field(init=False)  # the columns unique over a whole file
    control: ShardControl = field(default_factory=ShardControl)  # shared with the shards
    watch: Watch = field(init=False)
    finishing: list[InFlight] = field(default_factory=list)  # the unit being waited for

    def __post_init__(self) -> None:
        self.unique = unique_columns(self.job.suite_config)
        self.watch = Watch(self.control, self.committer.checkpoints, self.committer.logger)

    def __enter__(self) -> FileQueue:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        flights = [f for unit in self.in_flight for f in unit] + self.bundle + self.finishing
        try:
            if exc_type is not None:  # interrupted, or failed: the shards stop too
                self.watch.stop([(f, f.futures) for f in flights])
        finally:
            for flight in flights:
                flight.claim.release()
            for hashed in self.waiting:
                hashed.release()

    def score(self, ready: list) -> Iterator[Done | Working]:
        """Queue files' work a few units ahead, finish files in the order they were listed.

        A file whose content is already in flight under another name (the same bytes
        twice in the inbox) waits until that one is committed, then is found in the
        ledger. On a failure every claim still held is released.

        Claims left by runs that died come after the new files, fewest deaths first,
        and each is in flight alone: a new file is never held up by one that keeps
        killing runs, and a run that dies on a leftover counts a death for that file
        only (``Committer.claim`` quarantines it at ``max_claim_deaths``).
        """
        for path in [p for p in ready if not is_claimed(p)]:
            yield from self._make_room()
            yield from self._take(path)
        yield from self._drain()
        for path in sorted((p for p in ready if is_claimed(p)), key=runs_died):
            yield from self._take(path, runs_died(path))
            yield from self._drain()
        for hashed in self.waiting:
            yield from self._score_alone(hashed)

    def _drain(self) -> Iterator[Done | Working]:
        self._queue_bundle()
        while self.in_flight:
            yield from self._finish_oldest()

    def _make_room(self) -> Iterator[Done | Working]:
        """Finish the oldest units until another may be queued."""
        ahead = (self.settings.thread_workers + THREADS_FILES_AHEAD
                 if self.settings.task_runner == "threads" else DASK_FILES_IN_FLIGHT)
        while self.in_flight and (len(self.in_flight) >= ahead
                                  or self._locked() >= MAX_FILES_LOCKED):
            yield from self._finish_oldest()

    def _begin(self, hashed: Hashed, died: int | None = None) -> InFlight | FileOutcome:
        """Lock the file's content and check the ledger (``Committer.claim``), then plan
        its shards under that lock; a file that cannot be read is quarantined whole.
        ``died``: the runs that died with it claimed, None for a file this run claimed
        itself."""
        began = self.committer.claim(hashed, died=died,
                                     max_deaths=self.settings.max_claim_deaths)
        if not isinstance(began, Claim):
            return began
        job = self.job
        try:
            shards = plan_shards(began.path, self.settings.effective_shard_rows, self.unique,
                                 job.columns, job.read_batch_rows, job.max_decompressed_bytes,
                                 **job.read_options(began.sha256))
            extra = register(self.committer.ledger, root_key(self.committer.layout.root),
                             file_columns(began.path, job, began.sha256))
            shards = [replace(shard, extra=extra) for shard in shards]
        except UnreadableFileError as exc:
            return self.committer.reject(began, exc.reason)
        except FileNotFoundError as exc:  # moved by another run meanwhile
            began.release()
            return self.committer.busy(began.name, exc)
        except Exception as exc:
            if (reason := poison_reason(exc)) is None:
                began.release()
                raise
            return self.committer.reject(began, reason)
        except BaseException:
            began.release()
            raise
        return InFlight(began, shards)

    def _take(self, path, died: int | None = None) -> Iterator[Done | Working]:
        """Claim, hash and plan one inbox file, then queue it (or yield why not)."""
        hashed = self.committer.take(path)
        if isinstance(hashed, FileOutcome):
            yield hashed, [], time.perf_counter()
            return
        if self._pending(hashed.sha256):
            self.waiting.append(hashed)
            return
        flight = self._begin(hashed, died)
        if isinstance(flight, FileOutcome):
            yield flight, [], hashed.started
            return
        self._resume(flight)
        if flight.small:
            self.bundle.append(flight)
            if (len(self.bundle) >= BUNDLE_FILES
                    or sum(f.claim.size for f in self.bundle) >= BUNDLE_BYTES):
                self._queue_bundle()
        else:
            self._queue_bundle()  # files finish in the order they were listed
            self._submit_shards(flight)
            self.in_flight.append([flight])

    def _score_alone(self, hashed: Hashed) -> Iterator[Done | Working]:
        """A file that waited for its twin: by now, usually found in the ledger."""
        hashed.started = time.perf_counter()
        flight = self._begin(hashed)
        if isinstance(flight, FileOutcome):
            yield flight, [], hashed.started
            return
        self._resume(flight)
        self._submit_shards(flight)
        ((outcome, results),) = yield from self._finish([flight])
        yield outcome, results, hashed.started

    def _locked(self) -> int:
        return sum(len(unit) for unit in self.in_flight) + len(self.bundle)

    def _pending(self, sha256: str) -> bool:
        return any(f.claim.sha256 == sha256
                   for unit in (*self.in_flight, self.bundle) for f in unit)

    def _queue_bundle(self) -> None:
        if self.bundle:
            self._submit_bundle(self.bundle)
            self.in_flight.append(list(self.bundle))
            self.bundle.clear()

    def _finish_oldest(self) -> Iterator[Done | Working]:
        unit = self.in_flight.popleft()
        finished = yield from self._finish(unit)
        for flight, (outcome, results) in zip(unit, finished):
            yield outcome, results, flight.claim.started

    def _in_one_pass(self, flight: InFlight) -> bool:
        """Scored by one ``score_checkpointed`` call, in checkpoints: on the thread
        runner, a file neither split into shards nor small enough for a bundle."""
        shards = flight.shards
        return (self.settings.task_runner == "threads" and not flight.small
                and len(shards) == 1 and shards[0].index is None)

    def _resume(self, flight: InFlight) -> None:
        """Under the file's lock: how it is cut (its plan), and the checkpoints a stopped
        run left of it that this run reuses (``tasks.state.checkpoints``). A small file
        has none: the commit forgets any a run cut differently left of its content."""
        claim = flight.claim
        if flight.small:
            return
        shards = flight.shards
        rows = (self.settings.checkpoint_rows if self._in_one_pass(flight)
                else shards[0].rows[1] - shards[0].rows[0] if len(shards) > 1 else None)
        flight.plan = plan_key(self.job, claim.path.name, rows) if rows else None
        try:
            flight.resumed = [ShardResult.of(kept) for kept in self.committer.checkpoints.resume(
                claim.sha256, flight.plan, self.job.scored_dir, self.job.rejected_dir)]
        except BaseException:
            claim.release()  # not queued yet: nothing else would release it
            raise
        if flight.resumed:
            self.committer.logger.info(
                "%s: %d rows in %d finished shards were kept by a stopped run; scoring the "
                "rest", readable_name(claim.name), sum(r.rows_read for r in flight.resumed),
                len(flight.resumed))

    def _submit_shards(self, flight: InFlight) -> None:
        """Submit one ``score_shard`` per shard of a claimed file not resumed, or one
        ``score_checkpointed`` for a file scored in one pass."""
        claimed = flight.claim
        self.watch.track(flight)
        done = tuple(sorted(r.index for r in flight.resumed))
        if self._in_one_pass(flight):
            flight.futures = [self.submit(
                score_checkpointed, path=claimed.path, sha256=claimed.sha256, job=self.job,
                checkpoints=Checkpoints(self.settings.checkpoint_rows, done),
                control=self.control, extra=flight.shards[0].extra, name=claimed.name)]
            return
        flight.futures = [self.submit(
            score_shard, path=claimed.path, sha256=claimed.sha256, shard=shard, job=self.job,
            control=self.control, name=claimed.name)
            for shard in flight.shards if shard.index not in done]

    def _submit_bundle(self, flights: list[InFlight]) -> None:
        """Submit one ``score_small_files`` for several small claimed files."""
        for flight in flights:
            self.watch.track(flight)
        future = self.submit(score_small_files,
                             files=[(f.claim.path, f.claim.sha256) for f in flights],
                             job=self.job, control=self.control,
                             extras=[f.shards[0].extra for f in flights],
                             names=[f.claim.name for f in flights])
        for index, flight in enumerate(flights):
            flight.futures = [_BundleSlot(future, index)]

    def _finish(self, flights: list[InFlight]):
        """Wait for a unit's files (one file, or a bundle of small ones) and commit them,
        each with the checkpoints it resumed, in shard order; the counts of the files in
        flight are yielded while it waits. Returns each file's outcome and results."""
        self.finishing = flights
        gathered = yield from self.watch.gather([(f, f.futures) for f in flights])
        gathered = [sorted(f.resumed + results, key=_shard_order)
                    for f, results in zip(flights, gathered)]
        self.finishing = []
        try:
            outcomes = self.committer.commit([f.claim for f in flights], gathered)
        finally:
            for flight in flights:
                self.watch.untrack(flight)
        return list(zip(outcomes, gathered))


def _shard_order(result: ShardResult) -> int:
    return -1 if result.index is None else result.index

"""Where the scoring flow's shards run, and how files are queued to them.

Who does what (docs/scaling-out.md): the flow's process (the driver) claims each file
and plans its shards (``tasks.state.commit``); each shard is a ``score-shard`` task run by the
task runner the settings choose: Prefect's thread pool in this process (the default),
or prefect-dask's ``DaskTaskRunner`` on a Dask cluster. Only when every shard of a file
is done does the driver commit it, so the crash-consistency of a single process holds
for any number of workers. Small whole files go to workers in bundles, one
``score-small-files`` task each. On the thread runner, any other file that is not
split into shards is one ``score-file`` task, which cuts it into checkpoints as it reads.

Finished shards and checkpoints are kept as they finish (``tasks.state.checkpoints``), so
a run stopped inside a large file leaves them to the next run, which scores only the
rest; ``flows.score_watch`` keeps them, reports progress inside files, and stops the
shards when the run stops.

``FileQueue`` does all of that for the flow: it claims, plans, submits and commits, and
hands each file back to the flow as it is committed, for the run's report.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.score_watch import Watch
from tasks.outcomes import FileOutcome, FileStatus
from tasks.reading import detect_format
from tasks.scoring import shard as shard_scoring
from tasks.scoring.checkpointed import Checkpoints, score_checkpointed
from tasks.scoring.control import ShardControl
from tasks.scoring.planning import Shard, plan_shards, unique_columns
from tasks.scoring.shard import ScoringJob, ShardResult
from tasks.settings import Settings
from tasks.state.checkpoints import plan_key
from tasks.state.commit import HANDLED_ELSEWHERE, Claim, Committer, changed_outcome
from tasks.state.inbox import Identity, claim_for_run, claim_key, is_claimed, runs_died
from tasks.state.object_claims import ObjectChangedError
from tasks.storage.local import Location, LockHeldError, file_sha256, readable_name

# Files whose shards may be queued at once. Threads: the next file is hashed and planned
# while one scores. Dask: enough to keep a large cluster busy, few enough that the driver
# does not hold thousands of locks (each an open file).
THREADS_FILES_AHEAD = 1
DASK_FILES_IN_FLIGHT = 64
# Small whole files are scored in bundles (one ``score-small-files`` task, one suite
# run) of up to BUNDLE_FILES files or BUNDLE_BYTES bytes: per-file fixed costs (task
# runs, Great Expectations' graph) would otherwise dominate an inbox of tiny files.
SMALL_FILE_BYTES = 1 << 20
BUNDLE_FILES = 128
BUNDLE_BYTES = 32 << 20
# Each begun file holds its lock (an open file) until committed: keep well under the
# usual limit of 1,024 open files however many units are in flight.
MAX_FILES_LOCKED = 384


@task(name="score-shard", cache_policy=NO_CACHE)
def score_shard(path: Location, sha256: str, shard: Shard, job: ScoringJob,
                control: ShardControl) -> ShardResult:
    """``tasks.scoring.shard.score_shard`` as a task: one shard, on a thread or a Dask worker."""
    return shard_scoring.score_shard(path, sha256, shard, job, control=control)


@task(name="score-small-files", cache_policy=NO_CACHE)
def score_small_files(files: list[tuple[Location, str]], job: ScoringJob,
                      control: ShardControl) -> list[ShardResult]:
    """``tasks.scoring.shard.score_small_files`` as a task: a bundle of small whole files."""
    return shard_scoring.score_small_files(files, job, control=control)


@task(name="score-file", cache_policy=NO_CACHE)
def score_file(path: Location, sha256: str, job: ScoringJob, checkpoints: Checkpoints,
               control: ShardControl) -> list[ShardResult]:
    """``tasks.scoring.checkpointed.score_checkpointed`` as a task: a whole file in one
    pass, in checkpoints (the thread runner)."""
    return score_checkpointed(path, sha256, job, checkpoints, control)


def task_runner_for(settings: Settings) -> TaskRunner:
    """The task runner the settings choose for the shards.

    Built here, inside the run, because the flow's parameters choose it (``task_runner``,
    ``dask_address``), and a deployment run or a direct call passes them per run:
    ``score_reviews.with_options(task_runner=...)`` fixes a runner where the flow is
    called, before its parameters are known, and ``score_shard.submit()`` always goes to
    the flow's own runner. So ``FileQueue`` submits to this runner with ``runner.submit``.
    """
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=settings.thread_workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise RuntimeError("task_runner=dask needs prefect-dask (in requirements.lock; run "
                           "`make install`)") from exc
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    cluster = {"n_workers": settings.dask_workers, "threads_per_worker": 1, "processes": True,
               "dashboard_address": ":0"}  # any free port: several runs may share a host
    if settings.dask_resources:
        cluster["resources"] = dict(settings.dask_resources)
    return DaskTaskRunner(cluster_kwargs=cluster)


@contextlib.contextmanager
def api_for_workers(settings: Settings):
    """Point Dask workers at this process's Prefect API.

    Without PREFECT_API_URL (no-server mode) the flow talks to a temporary server this
    process started; a worker process would otherwise start one of its own (slow to
    start, and its task runs land elsewhere). The URL travels in the settings context
    that prefect-dask sends with each task. Workers on other hosts cannot reach that
    temporary server: give them a real one (PREFECT_API_URL) instead.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if settings.task_runner != "dask" or PREFECT_API_URL.value():
        yield
        return
    from prefect.client.orchestration import get_client

    url = str(get_client(sync_client=True).api_url)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


@dataclass
class _InFlight:
    """A claimed file whose shards are queued or running."""

    claim: Claim
    futures: list = field(default_factory=list)

    @property
    def small(self) -> bool:
        """A whole file small enough to be scored in a bundle with others, whose batches
        are all held at once. Not a gzip: its size on disk says nothing of what it
        expands to (up to max_decompressed_bytes), so it streams on its own."""
        shards, found = self.claim.shards, detect_format(self.claim.path)
        return (len(shards) == 1 and shards[0].index is None
                and self.claim.size <= SMALL_FILE_BYTES and found is not None
                and not found.gzipped)


@dataclass(frozen=True)
class _BundleSlot:
    """One file's share of a ``score-small-files`` task: its result, in a future's place."""

    future: object
    index: int

    @property
    def wrapped_future(self):
        return self.future.wrapped_future

    def wait(self, timeout: float | None = None) -> None:
        self.future.wait(timeout)

    def result(self):
        return self.future.result()[self.index]


# A file done: its outcome, its shards' results and when its work began (perf_counter).
Done = tuple[FileOutcome, list[ShardResult], float]


@dataclass
class FileQueue:
    """Claims files, submits their shards to ``runner`` and commits files in order.

    ``score(ready)`` yields each file as it is done, for the run's report. Used as a
    context manager: leaving it releases every claim still held, whether the queue or
    its caller failed.
    """

    settings: Settings
    runner: TaskRunner
    job: ScoringJob
    committer: Committer
    progress: object | None = None  # flows.score_report.Progress: lines inside files
    # Units (one file's shards, or a bundle of small files) in the order they were queued;
    # small files claimed and not yet queued; files waiting for their twin's commit.
    in_flight: deque[list[_InFlight]] = field(default_factory=deque)
    bundle: list[_InFlight] = field(default_factory=list)
    waiting: list[tuple[Location, str, Identity | None, contextlib.ExitStack]] = field(
        default_factory=list)
    unique: list[str] = field(init=False)  # the columns unique over a whole file
    control: ShardControl = field(default_factory=ShardControl)  # shared with the shards
    watch: Watch = field(init=False)
    finishing: list[_InFlight] = field(default_factory=list)  # the unit being waited for

    def __post_init__(self) -> None:
        self.unique = unique_columns(self.job.suite_config)
        self.watch = Watch(self.control, self.committer.checkpoints, self.committer.logger,
                           self.progress)

    def __enter__(self) -> FileQueue:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        flights = [f for unit in self.in_flight for f in unit] + self.bundle + self.finishing
        try:
            if exc_type is not None:  # interrupted, or failed: the shards stop too
                self.watch.stop([(f.claim, f.futures) for f in flights])
        finally:
            for flight in flights:
                flight.claim.release()
            for *_, held in self.waiting:
                held.close()

    def score(self, ready: list[Location]) -> Iterator[Done]:
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
        for path, sha256, known, held in self.waiting:
            yield from self._score_alone(path, sha256, known, held)

    def _drain(self) -> Iterator[Done]:
        self._queue_bundle()
        while self.in_flight:
            yield from self._finish_oldest()

    def _make_room(self) -> Iterator[Done]:
        """Finish the oldest units until another may be queued."""
        ahead = (self.settings.thread_workers + THREADS_FILES_AHEAD
                 if self.settings.task_runner == "threads" else DASK_FILES_IN_FLIGHT)
        while self.in_flight and (len(self.in_flight) >= ahead
                                  or self._locked() >= MAX_FILES_LOCKED):
            yield from self._finish_oldest()

    def _claim(self, path: Location, sha256: str, started: float, known: Identity | None,
               died: int | None, held: contextlib.ExitStack) -> Claim | FileOutcome:
        """Lock the file's content and plan its shards (``Committer.claim``); ``died``: the
        runs that died with it claimed, None for a file this run claimed itself."""
        job = self.job
        return self.committer.claim(path, sha256, started, known, plan=lambda claimed: plan_shards(
            claimed, self.settings.effective_shard_rows, self.unique, job.columns,
            job.read_batch_rows, job.max_decompressed_bytes, **job.read_options(sha256)),
            died=died, max_deaths=self.settings.max_claim_deaths, held=held)

    def _take(self, path: Location, died: int | None = None) -> Iterator[Done]:
        """Claim, hash and plan one inbox file, then queue it (or yield why not)."""
        started = time.perf_counter()
        held = contextlib.ExitStack()  # this run's hold on the claim, released with it
        try:
            path, known = claim_for_run(path, self.committer.ledger.claim_lock)
            # Held while this run has the file: another run that lists the claim skips
            # it at once instead of reading (downloading) the whole file to hash it.
            held.enter_context(self.committer.ledger.claim_lock(claim_key(path)))
            sha256 = file_sha256(path)
        except (FileNotFoundError, LockHeldError):  # claimed by another run, or being
            held.close()
            yield (FileOutcome(readable_name(path.name), FileStatus.BUSY, detail=HANDLED_ELSEWHERE),
                   [], started)
            return
        except ObjectChangedError as exc:
            self.committer.logger.warning("%s", exc)
            yield changed_outcome(path), [], started
            return
        except BaseException:
            held.close()
            raise
        if self._pending(sha256):
            self.waiting.append((path, sha256, known, held))
            return
        began = self._claim(path, sha256, started, known, died, held)
        if not isinstance(began, Claim):
            yield began, [], started
            return
        flight = _InFlight(began)
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

    def _score_alone(self, path: Location, sha256: str, known: Identity | None,
                     held: contextlib.ExitStack) -> Iterator[Done]:
        """A file that waited for its twin: by now, usually found in the ledger."""
        started = time.perf_counter()
        began = self._claim(path, sha256, started, known, None, held)
        if not isinstance(began, Claim):
            yield began, [], started
            return
        flight = _InFlight(began)
        self._resume(flight)
        self._submit_shards(flight)
        ((outcome, results),) = self._finish([flight])
        yield outcome, results, started

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

    def _finish_oldest(self) -> Iterator[Done]:
        unit = self.in_flight.popleft()
        for flight, (outcome, results) in zip(unit, self._finish(unit)):
            yield outcome, results, flight.claim.started

    def _in_one_pass(self, flight: _InFlight) -> bool:
        """Scored by one ``score-file`` task, in checkpoints: on the thread runner, a file
        neither split into shards nor small enough for a bundle."""
        shards = flight.claim.shards
        return (self.settings.task_runner == "threads" and not flight.small
                and len(shards) == 1 and shards[0].index is None)

    def _resume(self, flight: _InFlight) -> None:
        """Under the file's lock: how it is cut (its plan), and the checkpoints a stopped
        run left of it that this run reuses (``tasks.state.checkpoints``). A small file
        has none: the commit forgets any a run cut differently left of its content."""
        claim = flight.claim
        if flight.small:
            return
        shards = claim.shards
        rows = (self.settings.checkpoint_rows if self._in_one_pass(flight)
                else shards[0].rows[1] - shards[0].rows[0] if len(shards) > 1 else None)
        claim.plan = plan_key(self.job, claim.path.name, rows) if rows else None
        try:
            claim.resumed = self.committer.checkpoints.resume(
                claim.sha256, claim.plan, self.job.scored_dir, self.job.rejected_dir)
        except BaseException:
            claim.release()  # not queued yet: nothing else would release it
            raise
        if claim.resumed:
            self.committer.logger.info(
                "%s: %d rows in %d finished shards were kept by a stopped run; scoring the "
                "rest", readable_name(claim.path.name), sum(r.rows_read for r in claim.resumed),
                len(claim.resumed))

    def _submit_shards(self, flight: _InFlight) -> None:
        """Queue one ``score-shard`` task per shard of a claimed file not resumed, or one
        ``score-file`` task for a file scored in one pass."""
        claimed = flight.claim
        self.watch.track(claimed)
        done = tuple(sorted(r.index for r in claimed.resumed))
        if self._in_one_pass(flight):
            flight.futures = [self._submit(score_file, {
                "path": claimed.path, "sha256": claimed.sha256, "job": self.job,
                "checkpoints": Checkpoints(self.settings.checkpoint_rows, done),
                "control": self.control})]
            return
        flight.futures = [self._submit(score_shard, {
            "path": claimed.path, "sha256": claimed.sha256, "shard": shard, "job": self.job,
            "control": self.control})
            for shard in claimed.shards if shard.index not in done]

    def _submit_bundle(self, flights: list[_InFlight]) -> None:
        """Queue one ``score-small-files`` task for several small claimed files."""
        for flight in flights:
            self.watch.track(flight.claim)
        future = self._submit(score_small_files, {
            "files": [(f.claim.path, f.claim.sha256) for f in flights], "job": self.job,
            "control": self.control})
        for index, flight in enumerate(flights):
            flight.futures = [_BundleSlot(future, index)]

    def _submit(self, task_function, parameters: dict):
        if self.settings.task_runner == "dask" and self.settings.dask_resources:
            import dask

            # Only workers started with these resources (--resources GPU=1) take the task.
            with dask.annotate(resources=dict(self.settings.dask_resources)):
                return self.runner.submit(task_function, parameters=parameters)
        return self.runner.submit(task_function, parameters=parameters)

    def _finish(self, flights: list[_InFlight]) -> list[tuple[FileOutcome, list[ShardResult]]]:
        """Wait for a unit's files (one file, or a bundle of small ones) and commit them,
        each with the checkpoints it resumed, in shard order."""
        self.finishing = flights
        gathered = self.watch.gather([(f.claim, f.futures) for f in flights])
        gathered = [sorted(f.claim.resumed + results, key=_shard_order)
                    for f, results in zip(flights, gathered)]
        self.finishing = []
        try:
            outcomes = self.committer.commit([f.claim for f in flights], gathered)
        finally:
            for flight in flights:
                self.watch.untrack(flight.claim)
        return list(zip(outcomes, gathered))


def _shard_order(result: ShardResult) -> int:
    return -1 if result.index is None else result.index

"""Flow ``score-reviews``: score every new file in ``incoming/`` with the champion model.

For each ready file: hash it, skip it if the ledger says this content was already
scored by this model version, else read it in record batches, validate each batch
with the expectation suite, score the valid rows and stream them to a staged Parquet
part, stream rejected rows to a staged quarantine part, then publish both parts,
commit the file to the ledger and move it to ``archive/``. A file that cannot be read
is moved whole to ``quarantine/files/`` with a reason file. Every input row ends in
``scored/`` or ``quarantine/``.

Who does what (README, "Scaling out"): the flow's process (the driver) lists the
inbox, hashes each file, holds its lock, checks the ledger and, for a file larger than
``shard_rows``, plans shards. Each shard is a ``score-shard`` task run by the task
runner the settings choose: Prefect's thread pool in this process (the default), or
prefect-dask's ``DaskTaskRunner`` on a Dask cluster. A shard reads, validates and scores
its rows and leaves its parts under temporary names; only when every shard of a file
is done does the driver publish the parts, commit the ledger and archive the input, so
the crash-consistency of a single process holds for any number of workers.

Run it as ``reviewflow score`` or ``python -m flows.score_reviews``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.common import FileOutcome, RowCounts, quarantine_file, settings_from
from tasks.failpoints import failpoint
from tasks.inbox import list_inbox, part_glob, part_name
from tasks.ledger import Ledger, ScoredFile
from tasks.readers import UnreadableFileError, iter_review_batches
from tasks.registry import Registry
from tasks.settings import ColumnMapping, DataLayout, Settings
from tasks.shards import Shard, plan_shards, unique_columns
from tasks.storage import (
    Location,
    LockHeldError,
    StagedParquet,
    exclusive_lock,
    file_sha256,
    move_file,
    publish,
)
from tasks.validation import QUARANTINE_SCHEMA, SeenValues, load_suite_config, with_source
from tasks.workers import ModelRef, cached_model, cached_validator, here, model_loads

# Files whose shards may be queued at once. Threads: the next file is hashed and planned
# while one scores. Dask: enough to keep a large cluster busy, few enough that the driver
# does not hold thousands of locks (each an open file).
THREADS_FILES_AHEAD = 1
DASK_FILES_IN_FLIGHT = 64


class GPURequiredError(RuntimeError):
    """The run was told to require a GPU and TensorFlow sees none."""


@dataclass
class ScoreSummary:
    model_version: str
    device: str
    files: list[FileOutcome] = field(default_factory=list)
    files_settling: int = 0
    seconds: float = 0.0
    task_runner: str = "threads"
    busy_seconds: float = 0.0  # wall time during which at least one file was being worked on
    workers: dict[str, dict] = field(default_factory=dict)  # where shards ran (see here())

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def reviews_per_second(self) -> float:
        # Files overlap in time when several workers score, so their seconds are not
        # summed: the busy wall time (for one file at a time, the same thing).
        busy = self.busy_seconds or sum(f.seconds for f in self.files if f.status == "scored")
        return self.total("rows_scored") / busy if busy else 0.0

    def as_dict(self) -> dict:
        scored = self.total("rows_scored")
        labeled = self.total("labeled")
        return {
            "model_version": self.model_version, "device": self.device,
            "files_scored": self.count("scored"), "files_already_scored": self.count("already scored"),
            "files_quarantined": self.count("quarantined") + self.count("unsupported"),
            "files_busy": self.count("busy"), "files_settling": self.files_settling,
            "rows_read": self.total("rows_read"), "rows_scored": scored,
            "rows_quarantined": self.total("rows_quarantined"),
            "positive_share": round(self.total("positives") / scored, 4) if scored else None,
            "accuracy_on_labeled_rows": round(self.total("correct") / labeled, 4) if labeled else None,
            "reviews_per_second": round(self.reviews_per_second, 1),
            "seconds": round(self.seconds, 2),
            "task_runner": self.task_runner,
            "shards": self.total("shards"),
            "workers": self.workers,
        }


@dataclass(frozen=True)
class ScoringJob:
    """Everything a ``score-shard`` task needs besides its file; picklable, since it
    travels to Dask workers (paths are local ``Path``s or ``ObjectPath`` URLs)."""

    model: ModelRef
    suite_config: dict
    validator_parameters: dict
    columns: ColumnMapping
    read_batch_rows: int
    max_decompressed_bytes: int
    predict_batch_size: int
    require_gpu: bool
    scored_dir: Location    # scored/scored_date=<day>
    rejected_dir: Location  # quarantine/rows/quarantined_date=<day>
    run_started: datetime


@dataclass
class ShardResult(RowCounts):
    """What one shard did, and where: its parts are still temporaries (``(temp, final)``)."""

    index: int | None
    scored_part: tuple[Location, Location] | None = None
    rejected_part: tuple[Location, Location] | None = None
    unreadable: str | None = None  # the file cannot be read: quarantine it whole
    worker: str = "local"
    host: str = ""
    pid: int = 0
    device: str = ""
    model_loads: int = 0
    seconds: float = 0.0


@task(name="load-champion", cache_policy=NO_CACHE)
def load_champion(ref: ModelRef):
    """The champion's model, loaded once per process in Keras safe mode (tasks.workers)."""
    return cached_model(ref)


@task(name="score-shard", cache_policy=NO_CACHE)
def score_shard(path: Location, sha256: str, shard: Shard, job: ScoringJob) -> ShardResult:
    """Validate and score one shard (or the whole file); leave its parts as temporaries.

    Runs wherever the task runner puts it: a thread of the flow's process or a Dask
    worker. The model and the validator come from that process's cache, so a worker
    loads the model once however many shards it scores. Never publishes, never touches
    the ledger or the inbox: the flow does that once every shard of the file is done.
    """
    from tasks.scoring import SCORED_SCHEMA, score_batch

    started = time.perf_counter()
    where = here()
    if job.require_gpu and not where["device"].startswith("GPU"):
        raise GPURequiredError(f"this run requires a GPU (require_gpu) but {where['worker']} on "
                               f"{where['host']} sees none; start Dask workers on GPU hosts "
                               "(deployments/DASK.md) or install the 'gpu' extra")
    model = cached_model(job.model)
    validator = cached_validator(job.suite_config, job.validator_parameters)
    version = job.model.version
    scored = StagedParquet(job.scored_dir / part_name(sha256, version, shard.index), SCORED_SCHEMA)
    rejected = StagedParquet(job.rejected_dir / part_name(sha256, None, shard.index),
                             QUARANTINE_SCHEMA)
    result = ShardResult(shard.index, worker=where["worker"], host=where["host"],
                         pid=where["pid"], device=where["device"])
    seen_ids = {column: SeenValues(values) for column, values in shard.seen.items()}
    try:
        for batch in iter_review_batches(path, job.columns, job.read_batch_rows,
                                         job.max_decompressed_bytes, rows=shard.rows):
            checked = validator.validate(batch, seen_ids, source_name=path.name)
            output = score_batch(model, checked.valid, job.predict_batch_size, version,
                                 path.name, sha256, job.run_started)
            scored.write(output)
            rejected.write(with_source(checked.rejected, path.name, sha256, job.run_started))
            result.rows_read += batch.num_rows
            result.rows_scored += output.num_rows
            result.rows_quarantined += checked.rejected.num_rows
            result.positives += pc.sum(output.column("predicted_label")).as_py() or 0
            given = pc.is_valid(output.column("label"))
            result.labeled += pc.sum(given).as_py() or 0
            agree = pc.equal(output.column("label"), output.column("predicted_label"))
            result.correct += pc.sum(pc.and_kleene(given, agree)).as_py() or 0
            failpoint("score:mid-file")
        scored_temp, rejected_temp = scored.finish(), rejected.finish()
    except UnreadableFileError as exc:
        scored.abort()
        rejected.abort()
        result.unreadable = exc.reason
    except BaseException:
        scored.abort()
        rejected.abort()
        raise
    else:
        result.scored_part = (scored_temp, scored.final) if scored_temp else None
        result.rejected_part = (rejected_temp, rejected.final) if rejected_temp else None
    result.model_loads = model_loads(job.model)
    result.seconds = time.perf_counter() - started
    return result


def _replace_stale_parts(published: list[Location], folder: Location, pattern: str) -> None:
    """Remove what a killed run left of this file's parts: temporaries, and parts of the
    same content and model under another name (another date partition, another shard
    layout). Called under the file's lock, so no live run owns them."""
    keep = {str(p) for p in published}
    temporaries = "." + pattern.removesuffix(".parquet") + ".tmp"
    for stale in [*folder.glob(f"*/{pattern}"), *folder.glob(f"*/{temporaries}")]:
        if str(stale) not in keep:
            stale.unlink(missing_ok=True)


def _part_record(parts: list[Location]) -> str | None:
    """The ledger's ``scored_part``/``quarantine_part``: a path, or a JSON list for shards."""
    if not parts:
        return None
    return str(parts[0]) if len(parts) == 1 else json.dumps([str(p) for p in parts])


def _discard(results: list[ShardResult]) -> None:
    for result in results:
        for part in (result.scored_part, result.rejected_part):
            if part is not None:
                part[0].unlink(missing_ok=True)


@dataclass
class _InFlight:
    """A file whose shards are queued or running; the driver holds its lock."""

    path: Location
    sha256: str
    lock: contextlib.ExitStack
    futures: list
    started: float


@dataclass
class _Driver:
    """The flow's side of the per-file work: locks, plans, publishing, the ledger."""

    settings: Settings
    layout: DataLayout
    ledger: Ledger
    runner: TaskRunner
    job: ScoringJob
    day: str
    logger: object
    unique: list[str]

    def begin(self, path: Location, sha256: str, started: float) -> FileOutcome | _InFlight:
        """Lock the file (by its content hash), then archive it (already scored),
        quarantine it (unreadable) or queue its shards."""
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(exclusive_lock(self.layout.state / "locks" / f"{sha256[:16]}.lock"))
            if not path.exists():
                raise FileNotFoundError(path)
            version = self.job.model.version
            if self.ledger.scored(sha256, version):
                move_file(path, self.layout.archive / self.day, f"{sha256[:16]}-{path.name}")
                lock.close()
                return FileOutcome(path.name, "already scored",
                                   detail=f"content {sha256[:16]} was scored by {version}")
            try:
                shards = plan_shards(path, self.settings.effective_shard_rows, self.unique,
                                     self.job.columns, self.job.read_batch_rows,
                                     self.job.max_decompressed_bytes)
            except UnreadableFileError as exc:
                self.logger.warning("quarantined %s: %s", path.name, exc.reason)
                outcome = quarantine_file(path, self.layout, exc.reason, sha256, self.ledger)
                lock.close()
                return outcome
            futures = [self._submit(path, sha256, shard) for shard in shards]
            return _InFlight(path, sha256, lock, futures, started)
        except LockHeldError:
            lock.close()
            self.logger.info("%s: another run is scoring this content; leaving it to that run",
                             path.name)
            return FileOutcome(path.name, "busy")
        except FileNotFoundError:
            lock.close()
            self.logger.info("%s: moved by another run while this one waited; nothing to do",
                             path.name)
            return FileOutcome(path.name, "busy", detail="handled by another run")
        except BaseException:
            lock.close()
            raise

    def _submit(self, path: Location, sha256: str, shard: Shard):
        parameters = {"path": path, "sha256": sha256, "shard": shard, "job": self.job}
        if self.settings.task_runner == "dask" and self.settings.dask_resources:
            import dask

            # Only workers started with these resources (--resources GPU=1) take the task.
            with dask.annotate(resources=dict(self.settings.dask_resources)):
                return self.runner.submit(score_shard, parameters=parameters)
        return self.runner.submit(score_shard, parameters=parameters)

    def finish(self, flight: _InFlight) -> tuple[FileOutcome, list[ShardResult]]:
        """Wait for every shard of the file; publish, commit and archive, or quarantine."""
        path, sha256 = flight.path, flight.sha256
        try:
            results: list[ShardResult] = []
            error: BaseException | None = None
            for future in flight.futures:  # all of them, before anything is cleaned up
                try:
                    results.append(future.result())
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    error = error or exc
            if error is not None:
                _discard(results)
                raise error
            unreadable = next((r.unreadable for r in results if r.unreadable), None)
            if unreadable is not None:
                _discard(results)
                self.logger.warning("quarantined %s: %s", path.name, unreadable)
                return quarantine_file(path, self.layout, unreadable, sha256, self.ledger), results
            version = self.job.model.version
            scored = [publish(*r.scored_part) for r in results if r.scored_part]
            rejected = [publish(*r.rejected_part) for r in results if r.rejected_part]
            _replace_stale_parts(scored, self.layout.scored, part_glob(sha256, version))
            _replace_stale_parts(rejected, self.layout.quarantine / "rows", part_glob(sha256))
            failpoint("score:parts-published")
            outcome = FileOutcome(path.name, "scored")
            for result in results:
                outcome.add(result)
            self.ledger.record_scored(ScoredFile(
                sha256, version, path.name, outcome.rows_read, outcome.rows_scored,
                outcome.rows_quarantined, _part_record(scored), _part_record(rejected)))
            failpoint("score:ledger-committed")
            move_file(path, self.layout.archive / self.day, f"{sha256[:16]}-{path.name}")
            outcome.shards = len(results)
            outcome.workers = ", ".join(sorted({r.worker for r in results}))
            outcome.hosts = ", ".join(sorted({r.host for r in results}))
            outcome.devices = ", ".join(sorted({r.device for r in results}))
            outcome.seconds = time.perf_counter() - flight.started
            return outcome, results
        finally:
            flight.lock.close()


def task_runner_for(settings: Settings) -> TaskRunner:
    """The task runner the settings choose for the shards."""
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
def _api_for_workers(settings: Settings):
    """Point Dask workers at this process's Prefect API.

    Without PREFECT_API_URL (no-server mode) the flow talks to a temporary server this
    process started; a worker process would otherwise start one of its own (seconds
    each, and its task runs land elsewhere). The URL travels in the settings context
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


def _busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@flow(name="score-reviews", log_prints=True)
def score_reviews(data_dir: str | None = None, require_gpu: bool | None = None,
                  settle_seconds: float | None = None, task_runner: str | None = None,
                  dask_address: str | None = None, shard_rows: int | None = None) -> dict:
    """Score every new review file in the inbox with the champion model.

    ``task_runner`` ("threads" or "dask"), ``dask_address`` and ``shard_rows`` override
    the settings of the same name (README, "Scaling out"). Returns the run summary; the
    same figures are published as a Prefect artifact.
    """
    logger = get_run_logger()
    settings = settings_from(data_dir, require_gpu=require_gpu, settle_seconds=settle_seconds,
                             task_runner=task_runner, dask_address=dask_address,
                             shard_rows=shard_rows)
    layout = settings.layout.ensure()
    run_started = datetime.now(UTC)
    clock = time.perf_counter()
    local = settings.task_runner == "threads"
    device = "Dask workers"
    if local:  # the shards run in this process: check its device now, as before scoring
        from tasks.model import compute_device

        device = compute_device()
        if settings.require_gpu and not device.startswith("GPU"):
            raise GPURequiredError("this run requires a GPU (require_gpu) but TensorFlow sees "
                                   "none; run it on a GPU worker or install the 'gpu' extra")
        logger.info("scoring on %s", device)
    registry, ledger = Registry(layout.models), Ledger(layout.state / "ledger.sqlite")
    model_version = registry.champion_version()
    model = ModelRef(model_version, registry.model_path(model_version))
    if local:
        load_champion(model)  # fails here, before the inbox is touched, if it cannot load
    summary = ScoreSummary(model_version=model_version, device=device,
                           task_runner=settings.task_runner)
    inbox = list_inbox(layout.incoming, settings.settle_seconds)
    summary.files_settling = len(inbox.settling)
    for path in inbox.settling:
        logger.info("%s was modified in the last %.0f s; leaving it for the next run",
                    path.name, settings.settle_seconds)
    for path in inbox.unsupported:
        reason = ("a symbolic link; put the file itself in the inbox" if path.is_symlink()
                  else "not a supported review file (.csv, .tsv, .jsonl, .parquet, .gz)")
        try:
            summary.files.append(quarantine_file(path, layout, reason, None, ledger))
        except FileNotFoundError:  # another run scoring this inbox quarantined it first
            summary.files.append(FileOutcome(path.name, "busy", detail="handled by another run"))
    if inbox.ready:
        suite = load_suite_config(settings.suite_path)
        day = run_started.strftime("%Y-%m-%d")
        job = ScoringJob(
            model=model, suite_config=suite,
            validator_parameters={"max_text_chars": settings.max_text_chars},
            columns=settings.columns, read_batch_rows=settings.read_batch_rows,
            max_decompressed_bytes=settings.max_decompressed_bytes,
            predict_batch_size=settings.predict_batch_size, require_gpu=settings.require_gpu,
            scored_dir=layout.scored / f"scored_date={day}",
            rejected_dir=layout.quarantine / "rows" / f"quarantined_date={day}",
            run_started=run_started)
        if local:  # built here once, as before, so its slow import is not inside a file's time
            cached_validator(job.suite_config, job.validator_parameters)
        with _api_for_workers(settings), task_runner_for(settings) as runner:
            driver = _Driver(settings, layout, ledger, runner, job, day, logger,
                             unique_columns(suite))
            _score_inbox(driver, inbox.ready, summary)
        if not local:
            summary.device = ", ".join(sorted({w["device"] for w in summary.workers.values()})) \
                or "Dask workers"
    summary.seconds = time.perf_counter() - clock
    publish_summary(summary)
    return summary.as_dict()


def _score_inbox(driver: _Driver, ready: list[Location], summary: ScoreSummary) -> None:
    """Queue files' shards a few files ahead, finish files in order, record outcomes.

    A file whose content is already in flight under another name (the same bytes twice
    in the inbox) waits until that one is committed, then is found in the ledger.
    """
    ahead = (driver.settings.thread_workers + THREADS_FILES_AHEAD
             if driver.settings.task_runner == "threads" else DASK_FILES_IN_FLIGHT)
    in_flight: deque[_InFlight] = deque()
    waiting: list[tuple[Location, str]] = []
    intervals: list[tuple[float, float]] = []

    def record(outcome: FileOutcome, results: list[ShardResult], started: float) -> None:
        summary.files.append(outcome)
        intervals.append((started, time.perf_counter()))
        for result in results:
            seen = summary.workers.setdefault(result.worker, {
                "host": result.host, "pid": result.pid, "device": result.device,
                "shards": 0, "model_loads": 0})
            seen["shards"] += 1
            seen["model_loads"] = max(seen["model_loads"], result.model_loads)

    def finish_oldest() -> None:
        flight = in_flight.popleft()
        outcome, results = driver.finish(flight)
        record(outcome, results, flight.started)

    try:
        for path in ready:
            while len(in_flight) >= ahead:
                finish_oldest()
            started = time.perf_counter()
            try:
                sha256 = file_sha256(path)
            except FileNotFoundError:
                record(FileOutcome(path.name, "busy", detail="handled by another run"), [], started)
                continue
            if any(f.sha256 == sha256 for f in in_flight):
                waiting.append((path, sha256))
                continue
            began = driver.begin(path, sha256, started)
            if isinstance(began, _InFlight):
                in_flight.append(began)
            else:
                record(began, [], started)
        while in_flight:
            finish_oldest()
        for path, sha256 in waiting:
            started = time.perf_counter()
            began = driver.begin(path, sha256, started)
            if isinstance(began, _InFlight):
                outcome, results = driver.finish(began)
                record(outcome, results, started)
            else:
                record(began, [], started)
    finally:
        for flight in in_flight:  # a failure stopped the run: release what it still holds
            flight.lock.close()
    summary.busy_seconds = _busy_seconds(intervals)


def publish_summary(summary: ScoreSummary) -> None:
    figures = summary.as_dict()
    lines = ["# Scoring run", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in figures.items()]
    create_markdown_artifact(key="score-summary", markdown="\n".join(lines),
                             description="Files, rows and speed of this scoring run")
    if summary.files:
        # File and status first: asdict() puts the inherited row counts before them.
        rows = [{"file": f.file, "status": f.status, **asdict(f)} for f in summary.files]
        create_table_artifact(key="score-files", table=rows,
                              description="What happened to each file")
    print(json.dumps(figures))


if __name__ == "__main__":
    import sys

    from flows.cli import main

    main(["score", *sys.argv[1:]])

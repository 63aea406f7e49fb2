"""Score one shard of a file, or a bundle of small whole files: the work a worker does.

Read the rows in record batches, validate each batch with the expectation suite, score
the valid rows, count the drift signals, and stream the scored and the rejected rows to
staged Parquet parts, left under temporary names. Nothing here publishes a part, touches
the ledger or moves an input: ``tasks.state.commit`` does that once every shard of a file is
done, under the file's lock.

These are plain functions: the flow wraps them in thin Prefect tasks (which run in a
thread of the flow's process or on a Dask worker), the tests call them directly, and
``benchmarks/profile_scoring.py`` times them stage by stage through a ``StageClock``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from tasks.errors import GPURequiredError, poison_reason
from tasks.failpoints import failpoint
from tasks.layout import part_name
from tasks.monitoring import observe_batch
from tasks.reading import ReadReport, UnreadableFileError, iter_review_batches
from tasks.reading.columns import ColumnMapping
from tasks.scoring.control import ShardControl
from tasks.scoring.passthrough import (
    Carried,
    rejected_part_schema,
    scored_part_schema,
    split,
    with_carried,
)
from tasks.scoring.planning import Shard
from tasks.scoring.workers import ModelRef, cached_model, cached_validator, here, model_loads
from tasks.settings import Settings
from tasks.state.staged import StagedShard
from tasks.storage.local import Location, StagedParquet
from tasks.validation import SeenValues, with_source

STAGES = ("read", "validate", "score", "monitor", "write")


class StageClock:
    """Seconds spent per stage of a shard's work (``STAGES``), for the profiler."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def each(self, name: str, items: Iterable) -> Iterator:
        """The items of ``items``, the time spent producing each counted to ``name``."""
        iterator = iter(items)
        while True:
            with self.stage(name):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item


class _NoClock(StageClock):
    """What the flow passes: no timing at all."""

    def stage(self, name: str):
        return contextlib.nullcontext()

    def each(self, name: str, items: Iterable) -> Iterable:
        return items


_END = object()
NO_CLOCK = _NoClock()


@dataclass(frozen=True)
class ScoringJob:
    """Everything a shard needs besides its file; picklable, since it travels to Dask
    workers (paths are local ``Path``s or ``ObjectPath`` URLs)."""

    model: ModelRef
    suite_config: dict
    validator_parameters: dict
    columns: ColumnMapping
    read_batch_rows: int
    max_decompressed_bytes: int
    predict_batch_size: int
    require_gpu: bool
    scored_dir: Location    # DataLayout.scored_partition(day)
    rejected_dir: Location  # DataLayout.rejected_partition(day)
    run_started: datetime
    encodings: tuple[str, ...] = ()  # Settings.encodings
    detect_encoding: bool = True
    profile: dict | None = None  # the champion's reference profile (tasks.monitoring)
    monitor_sample_rows: int = 1_000  # Settings.monitor_sample_rows

    @classmethod
    def from_settings(cls, settings: Settings, model: ModelRef, profile: dict | None,
                      run_started: datetime, scored_dir: Location,
                      rejected_dir: Location) -> ScoringJob:
        """The job a run's settings describe (the flow's, and the profiler's)."""
        from tasks.validation import load_suite_config

        return cls(
            model=model, suite_config=load_suite_config(settings.suite_path),
            validator_parameters={"max_text_chars": settings.max_text_chars},
            columns=settings.columns, read_batch_rows=settings.read_batch_rows,
            max_decompressed_bytes=settings.max_decompressed_bytes,
            predict_batch_size=settings.predict_batch_size, require_gpu=settings.require_gpu,
            scored_dir=scored_dir, rejected_dir=rejected_dir, run_started=run_started,
            encodings=tuple(settings.encodings), detect_encoding=settings.detect_encoding,
            profile=profile, monitor_sample_rows=settings.monitor_sample_rows)

    def read_options(self, sha256: str) -> dict:
        """How every reader of the file reads it: the shards and the shard planner alike."""
        return {"encodings": self.encodings, "detect_encoding": self.detect_encoding,
                "sha256": sha256,
                "max_text_chars": self.validator_parameters.get("max_text_chars")}


@dataclass
class ShardResult(StagedShard):
    """What one shard did, and where: its staged parts and counts (``StagedShard``, what
    the commit needs), and what only the run's report reads."""

    model_loads: int = 0
    seconds: float = 0.0
    monitor_seconds: float = 0.0  # time spent counting the drift signals

    @classmethod
    def of(cls, staged: StagedShard) -> ShardResult:
        """A checkpoint a stopped run kept (``tasks.state.checkpoints``), as a result."""
        return cls(**{f.name: getattr(staged, f.name) for f in fields(StagedShard)})


def plan_key(job: ScoringJob, source_name: str, rows: int) -> str:
    """16 hex digits naming how a file is cut and what its rows hold: the rows per
    shard, the model, the file's name (every row carries it) and everything that
    decides how it is read and validated. Checkpoints (``tasks.state.checkpoints``) of
    another plan are not reused."""
    described = json.dumps([rows, job.model.version, source_name, job.suite_config,
                            job.validator_parameters, job.columns.model_dump(mode="json"),
                            list(job.encodings), job.detect_encoding,
                            job.max_decompressed_bytes], sort_keys=True, default=str)
    return hashlib.sha256(described.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def worker_ready(job: ScoringJob) -> dict:
    """Where this shard runs; refuses to score without a GPU when the job requires one."""
    where = here()
    if job.require_gpu and not where["device"].startswith("GPU"):
        raise GPURequiredError(f"this run requires a GPU (require_gpu) but {where['worker']} on "
                               f"{where['host']} sees none; start Dask workers on GPU hosts "
                               "(deployments/DASK.md) or install the 'gpu' extra")
    return where


class Worker:
    """The model, its vocabulary and the validator of this process, and where it is."""

    def __init__(self, job: ScoringJob) -> None:
        from tasks.model import model_vocabulary

        self.where = worker_ready(job)
        self.model = cached_model(job.model)
        self.vocabulary = model_vocabulary(self.model)
        self.validator = cached_validator(job.suite_config, job.validator_parameters)

    def result(self, index: int | None, sha256: str) -> ShardResult:
        return ShardResult(index, worker=self.where["worker"], host=self.where["host"],
                           pid=self.where["pid"], device=self.where["device"], sha256=sha256)


def staged_parts(job: ScoringJob, sha256: str, index: int | None,
                 extra: pa.Schema | None = None):
    """A shard's scored and quarantine parts, with the file's pass-through columns
    ``extra`` (None: the types its batches bring, set at its first batch)."""
    scored = StagedParquet(job.scored_dir / part_name(sha256, job.model.version, index),
                           scored_part_schema(extra, job.columns))
    rejected = StagedParquet(job.rejected_dir / part_name(sha256, None, index),
                             rejected_part_schema(extra))
    return scored, rejected


def score_checked(worker: Worker, job: ScoringJob, path: Location, batch, checked,
                  ids_generated: bool, scored: StagedParquet, rejected: StagedParquet,
                  result: ShardResult, clock: StageClock,
                  control: ShardControl | None = None, carried: Carried | None = None,
                  name: str | None = None) -> None:
    """Score a validated batch, stream both parts, count what happened to its rows and
    the drift signals' counts. ``name``: the file's uploaded name, which its rows say
    (``Claim.name``; default ``path.name``). With ``control``: the rows done are counted there as
    they are (its rejected rows, then each prediction slice), and a stop of the run
    raises ``ScoringStopped`` between slices. ``carried``: the batch's pass-through
    columns (``tasks.scoring.passthrough.split``)."""
    from tasks.scoring.rows import score_batch

    sha256 = result.sha256
    between = None
    if control is not None:
        control.count(sha256, checked.rejected.num_rows)

        def between(rows: int) -> None:
            control.count(sha256, rows)
            control.check()
    with clock.stage("score"):
        output = score_batch(worker.model, checked.valid, job.predict_batch_size,
                             job.model.version, name or path.name, sha256, job.run_started,
                             between)
    with clock.stage("write"):
        output, rejected_rows = with_carried(
            output, checked.valid, with_source(checked.rejected, name or path.name, sha256,
                                               job.run_started), batch, carried, job.columns)
        if carried is not None:
            scored.schema = scored_part_schema(carried.schema, job.columns)
            rejected.schema = rejected_part_schema(carried.schema)
        scored.write(output)
        rejected.write(rejected_rows)
    result.rows_read += batch.num_rows
    result.rows_scored += output.num_rows
    result.rows_quarantined += checked.rejected.num_rows
    result.rows_id_generated += batch.num_rows if ids_generated else 0
    result.positives += pc.sum(output.column("predicted_label")).as_py() or 0
    given = pc.is_valid(output.column("label"))
    result.labeled += pc.sum(given).as_py() or 0
    agree = pc.equal(output.column("label"), output.column("predicted_label"))
    result.correct += pc.sum(pc.and_kleene(given, agree)).as_py() or 0
    counting = time.perf_counter()
    with clock.stage("monitor"):
        result.monitor.add(observe_batch(
            checked.valid.column("text"), output.column("score").to_numpy(),
            output.column("label"), worker.vocabulary, job.profile, job.monitor_sample_rows))
    result.monitor_seconds += time.perf_counter() - counting
    failpoint("score:mid-file", path.name)


def finish_parts(result: ShardResult, scored: StagedParquet, rejected: StagedParquet,
                  clock: StageClock) -> None:
    with clock.stage("write"):
        scored_temp, rejected_temp = scored.finish(), rejected.finish()
    result.scored_part = (scored_temp, scored.final) if scored_temp else None
    result.rejected_part = (rejected_temp, rejected.final) if rejected_temp else None


def score_shard(path: Location, sha256: str, shard: Shard, job: ScoringJob,
                clock: StageClock = NO_CLOCK, *,
                control: ShardControl | None = None, name: str | None = None) -> ShardResult:
    """Validate and score one shard (or the whole file); leave its parts as temporaries.

    The model and the validator come from this process's cache (``tasks.scoring.workers``), so
    a worker loads the model once however many shards it scores. A file that cannot be
    read gives a result with ``unreadable`` set and no parts. ``control``: the run's
    stop and progress counts (``tasks.scoring.control``); a stop raises
    ``ScoringStopped`` between batches and prediction slices, the parts removed.
    ``name``: the file's uploaded name (``Claim.name``; default ``path.name``), which its
    rows and validation errors say.
    """
    name = name or path.name
    started = time.perf_counter()
    worker = Worker(job)
    scored, rejected = staged_parts(job, sha256, shard.index, shard.extra)
    result = worker.result(shard.index, sha256)
    seen_ids = {column: SeenValues(values) for column, values in shard.seen.items()}
    found = ReadReport()
    try:
        batches = iter_review_batches(path, job.columns, job.read_batch_rows,
                                      job.max_decompressed_bytes, rows=shard.rows,
                                      report=found, passthrough=True,
                                      **job.read_options(sha256))
        for batch in clock.each("read", batches):
            if control is not None:
                control.check()
            with clock.stage("read"):
                batch, carried = split(batch, shard.extra, job.columns)
            with clock.stage("validate"):
                checked = worker.validator.validate(batch, seen_ids, source_name=name)
            score_checked(worker, job, path, batch, checked, found.ids_generated,
                          scored, rejected, result, clock, control, carried, name)
        finish_parts(result, scored, rejected, clock)
    except UnreadableFileError as exc:
        scored.abort()
        rejected.abort()
        result.unreadable = exc.reason
    except BaseException as exc:
        scored.abort()
        rejected.abort()
        if (reason := poison_reason(exc)) is None:
            raise
        result.unreadable = reason
        result.rows_read = result.rows_scored = result.rows_quarantined = 0
    result.encoding = found.encoding
    result.model_loads = model_loads(job.model)
    result.seconds = time.perf_counter() - started
    return result


def _validate_each(worker: Worker, read: list, results: list[ShardResult],
                   names: list[str]) -> list[list]:
    """The suite's verdicts on every batch of every small file, per file, from one suite
    run over all of them. If that run raises what one strange file can bring out
    (``poison_reason``), each file is validated alone (its ids seen afresh), so only
    the file that raises is quarantined (its ``unreadable`` set), as a file scored in
    a task of its own would be."""
    items = [(batch, seen, name) for (_, batches, _, seen), name in zip(read, names, strict=True)
             for batch in batches]
    try:
        checked = iter(worker.validator.validate_many(items))
        return [[next(checked) for _ in batches] for _, batches, _, _ in read]
    except Exception as exc:
        if poison_reason(exc) is None:
            raise
    verdicts: list[list] = []
    for index, ((_, batches, _, _), name) in enumerate(zip(read, names, strict=True)):
        fresh: dict = {}  # the failed run may have filled the shared ones part way
        try:
            verdicts.append(worker.validator.validate_many(
                [(batch, fresh, name) for batch in batches]))
        except Exception as exc:
            if (reason := poison_reason(exc)) is None:
                raise
            results[index].unreadable = reason
            verdicts.append([])
    return verdicts


def score_small_files(files: list[tuple[Location, str]], job: ScoringJob, *,
                      control: ShardControl | None = None,
                      extras: list[pa.Schema | None] | None = None,
                      names: list[str] | None = None) -> list[ShardResult]:
    """``score_shard`` for many small whole files at once: one result per file, in order.

    The same reading, validation, scoring and parts per file, and the same guarantees
    (each file is still committed on its own); only the suite runs once over all of
    them (``ReviewValidator.validate_many``): its cost is fixed per run, and an inbox of
    one-row files would otherwise spend most of its time there. ``control``: as for
    ``score_shard``; a stop ends the whole bundle, none of its parts kept. ``extras``:
    each file's pass-through columns (``Shard.extra``); ``names``: each file's uploaded
    name (``Claim.name``; default its path's).
    """
    extras = extras if extras is not None else [None] * len(files)
    names = names if names is not None else [path.name for path, _ in files]
    started = time.perf_counter()
    worker = Worker(job)
    results, read = [], []
    carried: list[list] = []
    for (path, sha256), extra in zip(files, extras, strict=True):
        if control is not None:
            control.check()
        result = worker.result(None, sha256)
        found = ReadReport()
        try:  # small files: all their batches fit in memory at once
            split_batches = [split(batch, extra, job.columns) for batch in iter_review_batches(
                path, job.columns, job.read_batch_rows, job.max_decompressed_bytes,
                report=found, passthrough=True, **job.read_options(sha256))]
            batches = [batch for batch, _ in split_batches]
            carried.append([kept for _, kept in split_batches])
        except UnreadableFileError as exc:
            result.unreadable, batches = exc.reason, []
            carried.append([])
        except Exception as exc:
            if (reason := poison_reason(exc)) is None:
                raise
            result.unreadable, batches = reason, []
            carried.append([])
        result.encoding = found.encoding
        results.append(result)
        # One seen-ids dict per file, shared by its batches: uniqueness holds file-wide.
        read.append((path, batches, found.ids_generated, {}))
    checks = _validate_each(worker, read, results, names)
    staged = []
    try:
        for index, (path, batches, ids_generated, _) in enumerate(read):
            result = results[index]
            if result.unreadable is not None:
                continue
            scored, rejected = staged_parts(job, result.sha256, None, extras[index])
            staged.append((scored, rejected))
            try:
                for batch, checked, kept in zip(batches, checks[index], carried[index],
                                                strict=True):
                    score_checked(worker, job, path, batch, checked, ids_generated,
                                  scored, rejected, result, NO_CLOCK, control, kept,
                                  names[index])
                finish_parts(result, scored, rejected, NO_CLOCK)
            except Exception as exc:  # one strange file: quarantined, the bundle goes on
                if (reason := poison_reason(exc)) is None:
                    raise
                scored.abort()
                rejected.abort()
                results[index] = worker.result(None, result.sha256)
                results[index].unreadable, results[index].encoding = reason, result.encoding
    except BaseException:
        for scored, rejected in staged:
            scored.abort()
            rejected.abort()
        raise
    seconds = (time.perf_counter() - started) / max(len(files), 1)
    for result in results:
        result.model_loads, result.seconds = model_loads(job.model), seconds
    return results

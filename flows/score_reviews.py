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

Drift signals (README, "Monitoring"): each shard counts, on the batches it scores,
what ``tasks.monitoring`` needs (lengths, scores, tokens unknown to the model, scripts,
labels); the driver adds the counts up per file, compares them with the champion's
reference profile, writes one row per file to ``monitoring/``, logs a WARNING per
threshold crossed and emits the Prefect event ``reviewflow.drift.detected``.

Run it as ``reviewflow score`` or ``python -m flows.score_reviews``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.common import (
    FileOutcome,
    RowCounts,
    quarantine_file,
    settings_from,
    terminal_progress,
)
from tasks.columns import ColumnMapping
from tasks.errors import GPURequiredError
from tasks.failpoints import failpoint
from tasks.inbox import Identity, claim, identity, list_inbox, release_claim_folder
from tasks.layout import (
    DataLayout,
    content_key,
    day_of,
    is_part_of,
    kept_name,
    part_glob,
    part_name,
)
from tasks.ledger import Ledger, ScoredFile
from tasks.monitoring import (
    MONITORING_SCHEMA,
    Flag,
    MonitorCounts,
    Thresholds,
    flags,
    monitoring_row,
    monitoring_table,
    observe_batch,
    signals,
)
from tasks.readers import ReadReport, UnreadableFileError, detect_format, iter_review_batches
from tasks.registry import Registry
from tasks.settings import Settings
from tasks.shards import Shard, plan_shards, unique_columns
from tasks.storage import (
    Location,
    LockHeldError,
    StagedParquet,
    exclusive_lock,
    file_sha256,
    move_file_keeping,
    publish,
)
from tasks.validation import QUARANTINE_SCHEMA, SeenValues, load_suite_config, with_source
from tasks.workers import ModelRef, cached_model, cached_validator, here, model_loads

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


@dataclass
class ScoreSummary:
    model_version: str
    device: str
    files: list[FileOutcome] = field(default_factory=list)
    files_settling: int = 0
    inbox_note: str = ""  # what the inbox held (tasks.inbox.Inbox.note)
    seconds: float = 0.0
    task_runner: str = "threads"
    busy_seconds: float = 0.0  # wall time during which at least one file was being worked on
    workers: dict[str, dict] = field(default_factory=dict)  # where shards ran (see here())
    # Drift signals: the champion's reference profile (None if trained before profiles),
    # one monitoring/ row per scored file, and the counts of the whole run.
    profile: dict | None = None
    monitoring: list[dict] = field(default_factory=list)
    run_counts: MonitorCounts = field(default_factory=MonitorCounts)
    monitor_seconds: float = 0.0  # summed over shards: the cost of the signals

    def drift(self) -> dict:
        """The run's signals over all its scored files, and how many files were flagged."""
        found = signals(self.run_counts, self.profile)
        return {key: found[key] for key in ("oov_rate", "length_psi", "score_psi",
                                            "script_shift", "script_mix")} | {
            "has_profile": self.profile is not None,
            "files_flagged": sum(bool(row["flags"]) for row in self.monitoring),
            "monitor_seconds": round(self.monitor_seconds, 3)}

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    def encodings(self) -> dict[str, int]:
        """Files read, by the text encoding they were read in."""
        found: dict[str, int] = {}
        for outcome in self.files:
            if outcome.encoding:
                found[outcome.encoding] = found.get(outcome.encoding, 0) + 1
        return found

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
            "inbox": self.inbox_note,
            "files_scored": self.count("scored"), "files_already_scored": self.count("already scored"),
            "files_quarantined": self.count("quarantined") + self.count("unsupported"),
            "files_busy": self.count("busy"), "files_changed": self.count("changed"),
            "files_settling": self.files_settling,
            "rows_read": self.total("rows_read"), "rows_scored": scored,
            "rows_quarantined": self.total("rows_quarantined"),
            "rows_id_generated": self.total("rows_id_generated"),
            "encodings": self.encodings(),
            "positive_share": round(self.total("positives") / scored, 4) if scored else None,
            "accuracy_on_labeled_rows": round(self.total("correct") / labeled, 4) if labeled else None,
            "reviews_per_second": round(self.reviews_per_second, 1),
            "seconds": round(self.seconds, 2),
            "task_runner": self.task_runner,
            "shards": self.total("shards"),
            "workers": self.workers,
            "drift": self.drift(),
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
    encodings: tuple[str, ...] = ()  # Settings.encodings
    detect_encoding: bool = True
    profile: dict | None = None  # the champion's reference profile (tasks.monitoring)
    monitor_sample_rows: int = 1_000  # Settings.monitor_sample_rows


@dataclass
class ShardResult(RowCounts):
    """What one shard did, and where: its parts are still temporaries (``(temp, final)``)."""

    index: int | None
    scored_part: tuple[Location, Location] | None = None
    rejected_part: tuple[Location, Location] | None = None
    unreadable: str | None = None  # the file cannot be read: quarantine it whole
    encoding: str = ""  # the text encoding the reader used
    worker: str = "local"
    host: str = ""
    pid: int = 0
    device: str = ""
    model_loads: int = 0
    seconds: float = 0.0
    sha256: str = ""
    monitor: MonitorCounts = field(default_factory=MonitorCounts)  # drift signal counts
    monitor_seconds: float = 0.0  # time spent counting them


@task(name="load-champion", cache_policy=NO_CACHE)
def load_champion(ref: ModelRef):
    """The champion's model, loaded once per process in Keras safe mode (tasks.workers)."""
    return cached_model(ref)


def _worker_ready(job: ScoringJob) -> dict:
    """Where this task runs; refuses to score without a GPU when the job requires one."""
    where = here()
    if job.require_gpu and not where["device"].startswith("GPU"):
        raise GPURequiredError(f"this run requires a GPU (require_gpu) but {where['worker']} on "
                               f"{where['host']} sees none; start Dask workers on GPU hosts "
                               "(deployments/DASK.md) or install the 'gpu' extra")
    return where


def _staged_parts(job: ScoringJob, sha256: str, index: int | None):
    from tasks.scoring import SCORED_SCHEMA

    scored = StagedParquet(job.scored_dir / part_name(sha256, job.model.version, index),
                           SCORED_SCHEMA)
    rejected = StagedParquet(job.rejected_dir / part_name(sha256, None, index), QUARANTINE_SCHEMA)
    return scored, rejected


def _score_checked(model, job: ScoringJob, path: Location, sha256: str, batch, checked,
                   ids_generated: bool, scored: StagedParquet, rejected: StagedParquet,
                   result: ShardResult, vocabulary) -> None:
    """Score a validated batch, stream both parts, count what happened to its rows and
    the drift signals' counts (``vocabulary``: the model's, ``tasks.model.model_vocabulary``)."""
    from tasks.scoring import score_batch

    output = score_batch(model, checked.valid, job.predict_batch_size, job.model.version,
                         path.name, sha256, job.run_started)
    scored.write(output)
    rejected.write(with_source(checked.rejected, path.name, sha256, job.run_started))
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
    result.monitor.add(observe_batch(
        checked.valid.column("text"), output.column("score").to_numpy(),
        output.column("label"), vocabulary, job.profile, job.monitor_sample_rows))
    result.monitor_seconds += time.perf_counter() - counting
    failpoint("score:mid-file")


def _finish_parts(result: ShardResult, scored: StagedParquet, rejected: StagedParquet) -> None:
    scored_temp, rejected_temp = scored.finish(), rejected.finish()
    result.scored_part = (scored_temp, scored.final) if scored_temp else None
    result.rejected_part = (rejected_temp, rejected.final) if rejected_temp else None


@task(name="score-shard", cache_policy=NO_CACHE)
def score_shard(path: Location, sha256: str, shard: Shard, job: ScoringJob) -> ShardResult:
    """Validate and score one shard (or the whole file); leave its parts as temporaries.

    Runs wherever the task runner puts it: a thread of the flow's process or a Dask
    worker. The model and the validator come from that process's cache, so a worker
    loads the model once however many shards it scores. Never publishes, never touches
    the ledger or the inbox: the flow does that once every shard of the file is done.
    """
    from tasks.model import model_vocabulary

    started = time.perf_counter()
    where = _worker_ready(job)
    model = cached_model(job.model)
    validator = cached_validator(job.suite_config, job.validator_parameters)
    vocabulary = model_vocabulary(model)
    scored, rejected = _staged_parts(job, sha256, shard.index)
    result = ShardResult(shard.index, worker=where["worker"], host=where["host"],
                         pid=where["pid"], device=where["device"], sha256=sha256)
    seen_ids = {column: SeenValues(values) for column, values in shard.seen.items()}
    found = ReadReport()
    try:
        for batch in iter_review_batches(path, job.columns, job.read_batch_rows,
                                         job.max_decompressed_bytes, rows=shard.rows,
                                         encodings=job.encodings,
                                         detect_encoding=job.detect_encoding, sha256=sha256,
                                         report=found):
            checked = validator.validate(batch, seen_ids, source_name=path.name)
            _score_checked(model, job, path, sha256, batch, checked, found.ids_generated,
                           scored, rejected, result, vocabulary)
        _finish_parts(result, scored, rejected)
    except UnreadableFileError as exc:
        scored.abort()
        rejected.abort()
        result.unreadable = exc.reason
    except BaseException:
        scored.abort()
        rejected.abort()
        raise
    result.encoding = found.encoding
    result.model_loads = model_loads(job.model)
    result.seconds = time.perf_counter() - started
    return result


@task(name="score-small-files", cache_policy=NO_CACHE)
def score_small_files(files: list[tuple[Location, str]], job: ScoringJob) -> list[ShardResult]:
    """``score_shard`` for many small whole files at once: one result per file, in order.

    The same reading, validation, scoring and parts per file, and the same guarantees
    (the flow publishes and commits each file on its own); only the suite runs once over
    all of them (``ReviewValidator.validate_many``): its cost is fixed per run, and an
    inbox of one-row files would otherwise spend most of its time there.
    """
    started = time.perf_counter()
    where = _worker_ready(job)
    from tasks.model import model_vocabulary

    model = cached_model(job.model)
    vocabulary = model_vocabulary(model)
    validator = cached_validator(job.suite_config, job.validator_parameters)
    results, read = [], []
    for path, sha256 in files:
        result = ShardResult(None, worker=where["worker"], host=where["host"],
                             pid=where["pid"], device=where["device"], sha256=sha256)
        found = ReadReport()
        try:  # small files: all their batches fit in memory at once
            batches = list(iter_review_batches(
                path, job.columns, job.read_batch_rows, job.max_decompressed_bytes,
                encodings=job.encodings, detect_encoding=job.detect_encoding, sha256=sha256,
                report=found))
        except UnreadableFileError as exc:
            result.unreadable, batches = exc.reason, []
        result.encoding = found.encoding
        results.append(result)
        read.append((path, sha256, batches, found.ids_generated, {}))
    checked = iter(validator.validate_many(
        [(batch, seen, path.name) for path, _, batches, _, seen in read for batch in batches]))
    staged = []
    try:
        for result, (path, sha256, batches, ids_generated, _) in zip(results, read):
            if result.unreadable is not None:
                continue
            scored, rejected = _staged_parts(job, sha256, None)
            staged.append((scored, rejected))
            for batch in batches:
                _score_checked(model, job, path, sha256, batch, next(checked), ids_generated,
                               scored, rejected, result, vocabulary)
            _finish_parts(result, scored, rejected)
    except BaseException:
        for scored, rejected in staged:
            scored.abort()
            rejected.abort()
        raise
    seconds = (time.perf_counter() - started) / max(len(files), 1)
    for result in results:
        result.model_loads, result.seconds = model_loads(job.model), seconds
    return results


def _replace_stale_parts(published: list[Location], folder: Location, sha256: str,
                         model_version: str | None) -> None:
    """Remove what a killed run left of this file's parts: temporaries, and parts of the
    same content and model under another name (another date partition, another shard
    layout). Only names that are exactly this content's and model's parts: another
    version's parts stay, whatever its name. Called under the file's lock, so no live
    run owns them."""
    keep = {str(p) for p in published}
    for stale in folder.glob(f"*/{part_glob(sha256)}"):
        if str(stale) not in keep and is_part_of(stale.name, sha256, model_version):
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


def _changed_outcome(path: Location) -> FileOutcome:
    return FileOutcome(path.name, "changed",
                       detail="modified while read; left for the next run")


@dataclass
class _InFlight:
    """A file whose shards are queued or running; the driver holds its lock."""

    path: Location
    sha256: str
    lock: contextlib.ExitStack
    futures: list
    started: float
    identity: Identity | None  # of a local file when hashed; None on object storage
    shards: list[Shard] = field(default_factory=list)
    size: int = 0  # bytes

    @property
    def small(self) -> bool:
        """A whole file small enough to be scored in a bundle with others, whose batches
        are all held at once. Not a gzip: its size on disk says nothing of what it
        expands to (up to max_decompressed_bytes), so it streams on its own."""
        found = detect_format(self.path)
        return (len(self.shards) == 1 and self.shards[0].index is None
                and self.size <= SMALL_FILE_BYTES and found is not None and not found.gzipped)


@dataclass(frozen=True)
class _BundleSlot:
    """One file's share of a ``score-small-files`` task: its result, in a future's place."""

    future: object
    index: int

    def result(self):
        return self.future.result()[self.index]


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
    thresholds: Thresholds = field(default_factory=Thresholds)

    def begin(self, path: Location, sha256: str, started: float,
              known: Identity | None = None) -> FileOutcome | _InFlight:
        """Lock the file (by its content hash), then archive it (already scored),
        quarantine it (unreadable) or queue its shards.

        ``known`` is the local file's identity when it was hashed: a file whose bytes
        changed since is not archived or scored under that hash (``_changed``)."""
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(exclusive_lock(self.layout.lock_file(sha256)))
            if not path.exists():
                raise FileNotFoundError(path)
            version = self.job.model.version
            # Committed before by this model, or by any model in a run that died before
            # archiving it (a promotion since then must not score it a second time).
            done = (self.ledger.scored(sha256, version)
                    or self.ledger.committed_not_archived(sha256))
            if done:
                if self._changed(path, known):
                    lock.close()
                    return _changed_outcome(path)
                self._archive(path, sha256)
                lock.close()
                return FileOutcome(path.name, "already scored",
                                   detail=f"content {content_key(sha256)} was scored by "
                                          f"{done.model_version}")
            try:
                shards = plan_shards(path, self.settings.effective_shard_rows, self.unique,
                                     self.job.columns, self.job.read_batch_rows,
                                     self.job.max_decompressed_bytes,
                                     encodings=self.job.encodings,
                                     detect_encoding=self.job.detect_encoding, sha256=sha256)
            except UnreadableFileError as exc:
                self.logger.warning("quarantined %s: %s", path.name, exc.reason)
                outcome = quarantine_file(path, self.layout, exc.reason, sha256, self.ledger)
                lock.close()
                return outcome
            return _InFlight(path, sha256, lock, [], started, known, shards,
                             path.stat().st_size)
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

    def _archive(self, path: Location, sha256: str) -> None:
        """Move a committed input to ``archive/<day>/``, then say so in the ledger."""
        self._move_to_archive(path, sha256)
        self.ledger.record_archived(sha256)

    def _move_to_archive(self, path: Location, sha256: str) -> None:
        """Beside, never over, an earlier copy of the same name."""
        move_file_keeping(path, self.layout.archive_folder(self.day), kept_name(sha256, path.name))
        release_claim_folder(path)

    def _changed(self, path: Location, known: Identity | None) -> bool:
        """True if the local file's bytes changed since it was hashed (an append or a
        rewrite in place): it stays claimed, for the next run to hash again."""
        if known is None:
            return False
        changed = identity(path) != known
        if changed:
            self.logger.warning("%s changed while this run read it; nothing of it is kept, "
                                "the next run scores its new content", path.name)
        return changed

    def observe(self, outcome: FileOutcome, results: list[ShardResult],
                summary: ScoreSummary) -> None:
        """The drift signals of a scored file: one monitoring/ row (written now, beside
        the file's parts), a WARNING per threshold crossed, a Prefect event if flagged."""
        if outcome.status != "scored" or not results:
            return
        counts = MonitorCounts()
        for result in results:
            counts.add(result.monitor)
            summary.monitor_seconds += result.monitor_seconds
        summary.run_counts.add(counts)
        sha256, version, profile = results[0].sha256, self.job.model.version, self.job.profile
        found = signals(counts, profile)
        raised = flags(outcome.file, found, profile, self.thresholds)
        for flag in raised:
            self.logger.warning(flag.message)
        from prefect.runtime import flow_run

        row = monitoring_row(found, raised, run_started=self.job.run_started,
                             flow_run_id=flow_run.id, model_version=version,
                             source_file=outcome.file, source_sha256=sha256,
                             has_profile=profile is not None)
        # Named like the file's scored part: a rerun after a crash overwrites, never adds.
        part = StagedParquet(self.layout.monitoring_partition(self.day) / part_name(sha256, version),
                             MONITORING_SCHEMA)
        part.write(monitoring_table([row]))
        part.commit()
        summary.monitoring.append(row)
        if raised and self.settings.monitor_emit_events:
            _emit_drift_event(version, outcome.file, sha256, found, raised, flow_run.id)

    def submit(self, flight: _InFlight) -> None:
        """Queue one ``score-shard`` task per shard of a begun file."""
        flight.futures = [self._submit(score_shard, {"path": flight.path, "sha256": flight.sha256,
                                                     "shard": shard, "job": self.job})
                          for shard in flight.shards]

    def submit_bundle(self, flights: list[_InFlight]) -> None:
        """Queue one ``score-small-files`` task for several small begun files."""
        future = self._submit(score_small_files, {
            "files": [(f.path, f.sha256) for f in flights], "job": self.job})
        for index, flight in enumerate(flights):
            flight.futures = [_BundleSlot(future, index)]

    def _submit(self, task_function, parameters: dict):
        if self.settings.task_runner == "dask" and self.settings.dask_resources:
            import dask

            # Only workers started with these resources (--resources GPU=1) take the task.
            with dask.annotate(resources=dict(self.settings.dask_resources)):
                return self.runner.submit(task_function, parameters=parameters)
        return self.runner.submit(task_function, parameters=parameters)

    def finish(self, flights: list[_InFlight]) -> list[tuple[FileOutcome, list[ShardResult]]]:
        """Wait for a unit's files (one file, or a bundle of small ones); publish each
        file's parts, commit them, archive them, or quarantine; outcomes in order.

        The commits of all the unit's files are one ledger transaction, and so are
        their archive marks: each is an fsync, which would otherwise be most of the
        time of a one-row file. A file is still committed only once all its parts are
        published, and archived only once committed.
        """
        try:
            gathered = self._results(flights)
            outcomes: dict[int, tuple[FileOutcome, list[ShardResult]]] = {}
            commits: list[tuple[int, _InFlight, FileOutcome, ScoredFile]] = []
            version = self.job.model.version
            for position, (flight, results) in enumerate(zip(flights, gathered)):
                path, sha256 = flight.path, flight.sha256
                unreadable = next((r.unreadable for r in results if r.unreadable), None)
                if unreadable is not None:
                    _discard(results)
                    self.logger.warning("quarantined %s: %s", path.name, unreadable)
                    outcomes[position] = (quarantine_file(path, self.layout, unreadable, sha256,
                                                          self.ledger), results)
                    continue
                if self._changed(path, flight.identity):
                    _discard(results)
                    outcomes[position] = (_changed_outcome(path), results)
                    continue
                scored = [publish(*r.scored_part) for r in results if r.scored_part]
                rejected = [publish(*r.rejected_part) for r in results if r.rejected_part]
                _replace_stale_parts(scored, self.layout.scored, sha256, version)
                _replace_stale_parts(rejected, self.layout.rejected_rows, sha256, None)
                outcome = FileOutcome(path.name, "scored")
                for result in results:
                    outcome.add(result)
                outcome.encoding = next((r.encoding for r in results if r.encoding), "")
                commits.append((position, flight, outcome, ScoredFile(
                    sha256, version, path.name, outcome.rows_read, outcome.rows_scored,
                    outcome.rows_quarantined, _part_record(scored), _part_record(rejected),
                    encoding=outcome.encoding or None,
                    rows_id_generated=outcome.rows_id_generated)))
                outcomes[position] = (outcome, results)
            failpoint("score:parts-published")
            self.ledger.record_scored_many([entry for *_, entry in commits])
            failpoint("score:ledger-committed")
            for position, flight, outcome, _ in commits:
                self._move_to_archive(flight.path, flight.sha256)
                results = outcomes[position][1]
                outcome.shards = len(results)
                outcome.workers = ", ".join(sorted({r.worker for r in results}))
                outcome.hosts = ", ".join(sorted({r.host for r in results}))
                outcome.devices = ", ".join(sorted({r.device for r in results}))
                outcome.seconds = time.perf_counter() - flight.started
            self.ledger.record_archived_many([flight.sha256 for _, flight, _, _ in commits])
            return [outcomes[position] for position in range(len(flights))]
        finally:
            for flight in flights:
                flight.lock.close()

    @staticmethod
    def _results(flights: list[_InFlight]) -> list[list[ShardResult]]:
        """Every shard result of every file; on any failure, discard them all and raise
        the first failure (after all have ended, so nothing is cleaned up under a task)."""
        gathered: list[list[ShardResult]] = []
        error: BaseException | None = None
        for flight in flights:
            results = []
            for future in flight.futures:
                try:
                    results.append(future.result())
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    error = error or exc
            gathered.append(results)
        if error is not None:
            for results in gathered:
                _discard(results)
            raise error
        return gathered


DRIFT_EVENT = "reviewflow.drift.detected"


def drift_resource(version: str) -> dict[str, str]:
    """The resource of a drift event: the model version (what a trigger matches on)."""
    return {"prefect.resource.id": f"reviewflow.model.{version}",
            "prefect.resource.name": version, "reviewflow.model-version": version}


def _emit_drift_event(version: str, file: str, sha256: str, found: dict,
                      raised: list[Flag], flow_run_id: str | None = None) -> None:
    """Tell Prefect that a file drifted: the model version is the event's resource, the
    file a related one, so an automation or a deployment trigger can match on either
    (deployments/prefect.yaml shows one that starts retrain-model)."""
    from prefect.events import emit_event

    emit_event(
        DRIFT_EVENT, resource=drift_resource(version),
        related=[{"prefect.resource.id": f"reviewflow.file.{sha256}",
                  "prefect.resource.role": "file", "prefect.resource.name": file,
                  "reviewflow.sha256": sha256}],
        payload={"file": file, "model_version": version, "flow_run_id": flow_run_id,
                 "flags": [flag.signal for flag in raised],
                 "messages": [flag.message for flag in raised],
                 "signals": {k: v for k, v in found.items() if k != "script_mix"}})


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
    registry, ledger = Registry(layout.models), Ledger(layout.ledger)
    model_version = registry.champion_version()
    model = ModelRef(model_version, registry.model_path(model_version))
    profile = registry.read_profile(model_version)
    if profile is None:  # said once per run: an older champion is not an error
        logger.info("champion %s was trained before reference profiles existed: the drift "
                    "signals that need one (length_psi, score_psi, script_shift, accuracy "
                    "drop) stay empty until a champion retrained by this version", model_version)
    if local:
        load_champion(model)  # fails here, before the inbox is touched, if it cannot load
    summary = ScoreSummary(model_version=model_version, device=device,
                           task_runner=settings.task_runner, profile=profile)
    inbox = list_inbox(layout.incoming, settings.settle_seconds)
    summary.files_settling = len(inbox.settling)
    summary.inbox_note = inbox.note(settings.settle_seconds)
    for path in inbox.settling:
        logger.info("%s was modified in the last %.0f s; leaving it for the next run",
                    path.name, settings.settle_seconds)
    if inbox.settling:  # a WARNING, so `prefect deployment run --watch` shows why
        logger.warning(summary.inbox_note)
    for path in inbox.unsupported:
        reason = ("a symbolic link; put the file itself in the inbox" if path.is_symlink()
                  else "not a supported review file (.csv, .tsv, .jsonl, .json, .parquet, .gz)")
        try:
            summary.files.append(quarantine_file(path, layout, reason, None, ledger))
        except FileNotFoundError:  # another run scoring this inbox quarantined it first
            summary.files.append(FileOutcome(path.name, "busy", detail="handled by another run"))
    if inbox.ready:
        suite = load_suite_config(settings.suite_path)
        day = day_of(run_started)
        job = ScoringJob(
            model=model, suite_config=suite,
            validator_parameters={"max_text_chars": settings.max_text_chars},
            columns=settings.columns, read_batch_rows=settings.read_batch_rows,
            max_decompressed_bytes=settings.max_decompressed_bytes,
            predict_batch_size=settings.predict_batch_size, require_gpu=settings.require_gpu,
            scored_dir=layout.scored_partition(day),
            rejected_dir=layout.rejected_partition(day),
            run_started=run_started, encodings=tuple(settings.encodings),
            detect_encoding=settings.detect_encoding, profile=profile,
            monitor_sample_rows=settings.monitor_sample_rows)
        if local:  # built here once, as before, so its slow import is not inside a file's time
            cached_validator(job.suite_config, job.validator_parameters)
        with _api_for_workers(settings), task_runner_for(settings) as runner:
            driver = _Driver(settings, layout, ledger, runner, job, day, logger,
                             unique_columns(suite), _thresholds(settings))
            _score_inbox(driver, inbox.ready, summary)
        if not local:
            summary.device = ", ".join(sorted({w["device"] for w in summary.workers.values()})) \
                or "Dask workers"
    summary.seconds = time.perf_counter() - clock
    publish_summary(summary)
    return summary.as_dict()


def _thresholds(settings: Settings) -> Thresholds:
    return Thresholds(max_oov_rate=settings.monitor_max_oov_rate,
                      max_psi=settings.monitor_max_psi,
                      max_script_shift=settings.monitor_max_script_shift,
                      max_accuracy_drop=settings.monitor_max_accuracy_drop,
                      min_rows=settings.monitor_min_rows)


@dataclass
class _Progress:
    """Progress of a long run: files done of all, rows, reviews/s, time left.

    On a terminal, a bar (rich); elsewhere (workers, cron, CI) log lines, at most one
    every ``every`` seconds and one for the last file, so an inbox of thousands of
    small files does not print thousands of lines.
    """

    total: int
    logger: object
    every: float = 5.0
    done: int = 0
    rows: int = 0
    started: float = field(default_factory=time.perf_counter)
    last: float = 0.0
    bar: object = None

    def __post_init__(self) -> None:
        self.bar = terminal_progress(self.total, "scoring",
                                     "files, {task.fields[rows]:,} rows, "
                                     "{task.fields[rate]:,.0f} reviews/s")
        if self.bar is not None:
            self.bar.add_task("files", total=self.total, rows=0, rate=0.0)
            self.bar.start()

    def file_done(self, outcome: FileOutcome) -> None:
        self.done += 1
        self.rows += outcome.rows_read
        now = time.perf_counter()
        elapsed = now - self.started
        rate = self.rows / max(elapsed, 1e-9)
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], advance=1, rows=self.rows, rate=rate)
            return
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        left = elapsed / self.done * (self.total - self.done)
        self.logger.info("%d/%d files, %d rows, %.0f reviews/s, about %.0f s left",
                         self.done, self.total, self.rows, rate, left)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _score_inbox(driver: _Driver, ready: list[Location], summary: ScoreSummary) -> None:
    """Queue files' work a few tasks ahead, finish files in order, record outcomes.

    A unit of work is one file's shards, or a bundle of small files scored by one task.
    A file whose content is already in flight under another name (the same bytes twice
    in the inbox) waits until that one is committed, then is found in the ledger.
    """
    ahead = (driver.settings.thread_workers + THREADS_FILES_AHEAD
             if driver.settings.task_runner == "threads" else DASK_FILES_IN_FLIGHT)
    in_flight: deque[list[_InFlight]] = deque()  # units, in the order they were queued
    bundle: list[_InFlight] = []  # small files begun, not yet queued
    waiting: list[tuple[Location, str, Identity | None]] = []
    intervals: list[tuple[float, float]] = []
    progress = _Progress(len(ready), driver.logger)

    def record(outcome: FileOutcome, results: list[ShardResult], started: float) -> None:
        summary.files.append(outcome)
        driver.observe(outcome, results, summary)
        intervals.append((started, time.perf_counter()))
        progress.file_done(outcome)
        for result in results:
            seen = summary.workers.setdefault(result.worker, {
                "host": result.host, "pid": result.pid, "device": result.device,
                "shards": 0, "model_loads": 0})
            seen["shards"] += 1
            seen["model_loads"] = max(seen["model_loads"], result.model_loads)

    def finish_oldest() -> None:
        unit = in_flight.popleft()
        for flight, (outcome, results) in zip(unit, driver.finish(unit)):
            record(outcome, results, flight.started)

    def queue_bundle() -> None:
        if bundle:
            driver.submit_bundle(bundle)
            in_flight.append(list(bundle))
            bundle.clear()

    def locked() -> int:
        return sum(len(unit) for unit in in_flight) + len(bundle)

    def pending(sha256: str) -> bool:
        return any(f.sha256 == sha256 for unit in (*in_flight, bundle) for f in unit)

    try:
        for path in ready:
            while in_flight and (len(in_flight) >= ahead or locked() >= MAX_FILES_LOCKED):
                finish_oldest()
            started = time.perf_counter()
            try:
                path, known = _claim(path)
                sha256 = file_sha256(path)
            except FileNotFoundError:
                record(FileOutcome(path.name, "busy", detail="handled by another run"), [], started)
                continue
            if pending(sha256):
                waiting.append((path, sha256, known))
                continue
            began = driver.begin(path, sha256, started, known)
            if not isinstance(began, _InFlight):
                record(began, [], started)
            elif began.small:
                bundle.append(began)
                if (len(bundle) >= BUNDLE_FILES
                        or sum(f.size for f in bundle) >= BUNDLE_BYTES):
                    queue_bundle()
            else:
                queue_bundle()  # files finish in the order they were listed
                driver.submit(began)
                in_flight.append([began])
        queue_bundle()
        while in_flight:
            finish_oldest()
        for path, sha256, known in waiting:
            started = time.perf_counter()
            began = driver.begin(path, sha256, started, known)
            if isinstance(began, _InFlight):
                driver.submit(began)
                ((outcome, results),) = driver.finish([began])
                record(outcome, results, started)
            else:
                record(began, [], started)
    finally:
        progress.close()
        for flight in [f for unit in in_flight for f in unit] + bundle:
            flight.lock.close()  # a failure stopped the run: release what it still holds
    summary.busy_seconds = _busy_seconds(intervals)


def _claim(path: Location) -> tuple[Location, Identity | None]:
    """Claim a local inbox file for this run (``tasks.inbox.claim``) and note its
    identity before it is hashed; object storage has no rename to claim with (README,
    "Exactly once without rename": uploaders never overwrite an object there)."""
    if not isinstance(path, Path):
        return path, None
    claimed = claim(path)
    return claimed, identity(claimed)


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
    if summary.monitoring:
        columns = ("source_file", "rows", "oov_rate", "length_psi", "score_psi", "script_shift",
                   "share_latin", "share_hangul", "positive_share", "accuracy")
        rows = [{name: row[name] for name in columns} | {"flags": ", ".join(row["flags"])}
                for row in summary.monitoring]
        drift = figures["drift"]
        rows.append({"source_file": "(run)", "rows": summary.run_counts.rows,
                     **{name: drift.get(name) for name in columns[2:6]},
                     "share_latin": (drift["script_mix"] or {}).get("latin"),
                     "share_hangul": (drift["script_mix"] or {}).get("hangul"),
                     "positive_share": figures["positive_share"],
                     "accuracy": figures["accuracy_on_labeled_rows"],
                     "flags": f"{drift['files_flagged']} files flagged"})
        create_table_artifact(
            key="score-monitoring", table=rows,
            description="Drift signals per file against the champion's reference profile "
                        "(README, Monitoring)" + ("" if summary.profile else
                                                  "; this champion has no profile"))
    print(json.dumps(figures))


if __name__ == "__main__":
    import sys

    from flows.cli import main

    main(["score", *sys.argv[1:]])

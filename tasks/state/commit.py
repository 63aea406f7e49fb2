"""How a file is committed exactly once (docs/what-happens-when.md).

One input file goes through these steps, all on the flow's side (the driver); the
shards in between (``tasks.scoring.shard``) only leave temporary parts:

1. ``Committer.take`` claims the inbox file for this run, takes its claim lock and hashes
   it (``tasks.state.claim``). ``Committer.claim``: lock the content
   (``RunState.content_lock``: one run at a time per content hash, released even on
   SIGKILL; a lock file, or a PostgreSQL advisory lock with a state URL), then ask the
   ledger. Content this model scored before, or that any model committed in a run that
   died before archiving it, is archived now and not scored again. Otherwise the claim
   is returned, and the queue plans its shards under the lock (``tasks.scoring.queue``);
   a file that cannot be read is quarantined whole (``Committer.reject``).
   A large file's shards that a stopped run finished (its checkpoints:
   ``tasks.state.checkpoints``) are found and checked under that lock too, and only the
   others are scored.
2. ``Committer.commit``, once every shard is done: write the file's monitoring row
   (``Committer.monitor``), publish the parts (a rename each),
   sweep what a killed run left of this content's parts, by any model, that the ledger
   never committed (``replace_stale_parts``), record the
   file in the ledger (the commit point: one transaction for a bundle of files), move
   the input to ``archive/<day>/`` and mark it archived. A file whose bytes changed
   while it was read is left claimed for the next run, nothing of it kept.

The inputs' source (``tasks.state.inputs``) says where a file is taken from and what
becomes of it: ``score``'s inbox files are archived after their commit and quarantined
whole when unreadable; a backfill's archived files stay where they are.

A crash before the ledger record leaves parts that the next run's publish overwrites
(deterministic names) or sweeps; a crash after it leaves an input the next run finds
in the ledger and archives. Either way every row ends in ``scored/`` or
``quarantine/`` once. Plain functions: no Prefect here; the flow passes its logger.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa

from tasks.errors import PartVanishedError
from tasks.failpoints import failpoint
from tasks.layout import (
    DataLayout,
    content_key,
    day_of,
    is_any_part_of,
    is_part_of,
    kept_name,
    part_version,
)
from tasks.outcomes import FileOutcome, FileStatus
from tasks.state.backend import RunState, SQLiteState
from tasks.state.checkpoints import Checkpointer
from tasks.state.claim import HANDLED_ELSEWHERE, Claim, Hashed, changed_outcome
from tasks.state.inbox import Identity, claimed_files, identity, note_begun
from tasks.state.inputs import FromInbox, InputSource
from tasks.state.ledger import Ledger, ScoredFile
from tasks.state.leftovers import parts_in_partitions
from tasks.state.quarantine import quarantine_file
from tasks.state.staged import StagedShard
from tasks.storage.local import (
    Location,
    LockHeldError,
    is_temporary,
    publish,
    readable_name,
    write_parquet_atomic,
)


def _archive_days(committed_at: str) -> list[str]:
    """The archive folders a file committed at ``committed_at`` may be in: its run's day
    is the commit's day, or the day before for a run that started before midnight."""
    committed = datetime.fromisoformat(committed_at)
    return [day_of(committed), day_of(committed - timedelta(days=1))]


def replace_stale_parts(published: list[Location], folder: Location, sha256: str,
                        model_version: str | None, committed: list[str]) -> None:
    """Remove what a killed run left of this file's parts, in every date partition.

    With ``model_version`` (scored parts): every part of this content, by any model,
    that is neither just published nor listed in the ledger (``committed``): a run
    killed before its commit, then a new champion, would otherwise leave the old
    model's rows beside the new one's. Parts another version committed stay (a
    deliberate rescore keeps both), whatever its name. Without (rejected rows, named
    for the content alone): this content's parts other than those just published.
    Compared by partition and name, so a data root that moved keeps its committed
    parts. Called under the file's lock, so no live run owns them."""
    keep = {_where(p) for p in published}
    if model_version is not None:
        keep |= {_where(p) for p in committed}
    for stale in parts_in_partitions(folder, sha256):
        ours = (is_any_part_of(stale.name, sha256) if model_version is not None
                else is_part_of(stale.name, sha256, None))
        if ours and _where(stale) not in keep:
            stale.unlink(missing_ok=True)


def _where(part: Location | str) -> tuple[str, str]:
    """A part's partition folder and name: what identifies it across a moved root."""
    text = str(part).rstrip("/")
    folder, _, name = text.rpartition("/")
    return folder.rpartition("/")[2], name


def part_record(parts: list[Location]) -> str | None:
    """The ledger's ``scored_part``/``quarantine_part``: a path, or a JSON list for shards."""
    if not parts:
        return None
    return str(parts[0]) if len(parts) == 1 else json.dumps([str(p) for p in parts])


def discard(results: list[StagedShard], kept_too: bool = False) -> None:
    """Remove the temporary parts of these results; those kept as checkpoints
    (``StagedShard.kept``) stay for the next run unless ``kept_too``."""
    for result in results:
        if kept_too or not result.kept:
            result.discard()


@dataclass
class Committer:
    """The exactly-once protocol for one run: claim, then commit (or quarantine)."""

    layout: DataLayout
    ledger: RunState  # the ledger and the locks (SQLite and flock, or PostgreSQL)
    model_version: str
    day: str  # the run's day: its archive folder
    logger: object  # logging.Logger-like: the flow's run logger
    # A scored file's monitoring row and where it goes (flows.drift), from the file's
    # uploaded name, hash and shard results: written with its parts, before its commit, so every
    # committed file has one (written after it, a kill in between would lose it for good).
    monitor: Callable[[str, str, list[StagedShard]], tuple[Location, pa.Table]] | None = None
    # Around each commit's publish, sweep and ledger record (milliseconds): a stop waits
    # for it (the flow's flows.stopping.critical), so a stop never leaves published
    # parts the ledger does not list (the next run would put them right, but the
    # stopped run's line would count fewer rows than scored/ holds).
    critical: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    # Where inputs come from and what becomes of them after the commit (tasks.state.inputs):
    # the inbox, archived after; or archive/ itself, left there (a backfill).
    source: InputSource = field(default_factory=FromInbox)

    def __post_init__(self) -> None:
        if isinstance(self.ledger, Ledger):  # a bare SQLite ledger: its state folder's locks
            self.ledger = SQLiteState.of_ledger(self.ledger, self.layout)
        self.checkpoints = Checkpointer(self.ledger, self.model_version, self.layout.scored,
                                        self.layout.rejected_rows)

    def take(self, path: Location) -> Hashed | FileOutcome:
        """Claim an input for this run, take its claim lock, hash it (the source's
        ``take``: ``tasks.state.claim.take`` for the inbox); or the outcome saying why not."""
        return self.source.take(path, self.layout, self.ledger, self.logger)

    def claim(self, hashed: Hashed, died: int | None = None,
              max_deaths: int | None = None) -> Claim | FileOutcome:
        """Lock the content, then archive it (already scored), quarantine it (``died``,
        the runs that died with this leftover claim in flight, reached ``max_deaths``)
        or return the claim, both locks held. ``died`` is None for a file this run
        claimed from the inbox itself. The claim lock ``hashed`` holds is released
        with the claim.

        ``hashed.known`` is the local file's identity when it was hashed: a file whose
        bytes changed since is not archived or scored under that hash."""
        path, sha256, known = hashed.path, hashed.sha256, hashed.known
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(hashed.held)  # released with the claim
            lock.enter_context(self.ledger.content_lock(sha256))
            if not path.exists():
                raise FileNotFoundError(path)
            done = self.source.done(self.ledger, sha256, self.model_version)
            if done:
                with lock:
                    return self._already_scored(path, hashed.name, sha256, known,
                                                done.model_version)
            if died is not None and max_deaths is not None and died >= max_deaths:
                with lock:
                    return self._quarantine(path, sha256, (
                        f"{died} runs died while reading it (max_claim_deaths is "
                        f"{max_deaths}); move it back to incoming/ to try again"))
            if died is not None:
                note_begun(path, died + 1)  # read by the next run if this one dies too
            return Claim(path, sha256, lock, hashed.started, known, hashed.name,
                         path.stat().st_size)
        except (LockHeldError, FileNotFoundError) as exc:
            lock.close()
            return self.busy(hashed.name, exc)
        except BaseException:
            lock.close()
            raise

    def reject(self, claim: Claim, reason: str) -> FileOutcome:
        """Quarantine a claimed file whole, under its lock (it cannot be read, or reading
        it raised what ``tasks.errors.poison_reason`` names); releases the claim."""
        with claim.lock:
            return self._quarantine(claim.path, claim.sha256, reason)

    def finish_archive_marks(self) -> int:
        """Mark archived the contents whose input a killed run moved to ``archive/`` but
        never marked (it died between the move and the mark), so the ledger agrees with
        ``archive/``. One whose input is still in the inbox is left to ``claim``, which
        archives and marks it. Returns how many were marked."""
        unarchived = self.ledger.unarchived()
        if not unarchived:  # the usual case: no listing of the claims
            return 0
        incoming = self.layout.incoming
        waiting = {p.name for p in claimed_files(incoming)}
        marked = []
        for entry in unarchived:
            if entry.source_file in waiting or (incoming / entry.source_file).exists():
                continue
            kept = kept_name(entry.source_sha256, readable_name(entry.source_file))
            if any((self.layout.archive_folder(day) / kept).exists()
                   for day in _archive_days(entry.finished_at)):
                marked.append(entry.source_sha256)
        self.ledger.record_archived_many(marked)
        return len(marked)

    def _quarantine(self, path: Location, sha256: str, reason: str) -> FileOutcome:
        with self.critical():  # the move, its reason file and its ledger record
            outcome = self.source.quarantine(path, self.layout, reason, sha256, self.ledger)
        self.logger.warning("%s %s: %s", outcome.status, readable_name(outcome.file), reason)
        return outcome

    def busy(self, name: str, exc: Exception) -> FileOutcome:
        """A file (by its uploaded name) another run holds (``LockHeldError``) or moved
        meanwhile."""
        if isinstance(exc, LockHeldError):
            self.logger.info("%s: another run is scoring this content; leaving it to that run",
                             name)
            return FileOutcome(name, FileStatus.BUSY)
        self.logger.info("%s: moved by another run while this one waited; nothing to do",
                         name)
        return FileOutcome(name, FileStatus.BUSY, detail=HANDLED_ELSEWHERE)

    def _already_scored(self, path: Location, name: str, sha256: str, known: Identity | None,
                        by_version: str) -> FileOutcome:
        if self._changed(path, known):
            return changed_outcome(name)
        self._move_to_archive(path, sha256)
        self.ledger.record_archived_many([sha256])
        return FileOutcome(name, FileStatus.ALREADY_SCORED,
                           detail=f"content {content_key(sha256)} was scored by {by_version}")

    def commit(self, claims: list[Claim],
               results: list[list[StagedShard]]) -> list[FileOutcome]:
        """Publish each file's parts, commit them, archive them, or quarantine; outcomes in
        order. Releases every claim.

        The commits of all the files are one ledger transaction, and so are their archive
        marks: each is an fsync, which would otherwise be most of the time of a one-row
        file. A file is still committed only once all its parts are published, and
        archived only once committed.
        """
        try:
            outcomes: list[FileOutcome] = []
            commits: list[tuple[Claim, FileOutcome, list[StagedShard], ScoredFile]] = []
            committed = self.ledger.committed_parts([claim.sha256 for claim in claims])
            with self.critical():
                for claim, shard_results in zip(claims, results):
                    outcome, entry = self._publish(claim, shard_results,
                                                   committed[claim.sha256])
                    outcomes.append(outcome)
                    if entry is not None:
                        commits.append((claim, outcome, shard_results, entry))
                failpoint("score:parts-published")
                self.ledger.record_scored_many([entry for *_, entry in commits])
            failpoint("score:ledger-committed")
            for claim, outcome, shard_results, _ in commits:
                self._move_to_archive(claim.path, claim.sha256)
                outcome.shards = len(shard_results)
                outcome.workers = ", ".join(sorted({r.worker for r in shard_results}))
                outcome.hosts = ", ".join(sorted({r.host for r in shard_results}))
                outcome.devices = ", ".join(sorted({r.device for r in shard_results}))
                outcome.seconds = time.perf_counter() - claim.started
            failpoint("score:inputs-archived")
            self.ledger.record_archived_many([claim.sha256 for claim, *_ in commits])
            return outcomes
        finally:
            for claim in claims:
                claim.release()

    def _publish(self, claim: Claim, results: list[StagedShard],
                 committed: list[str]) -> tuple[FileOutcome, ScoredFile | None]:
        """One file's parts published and its ledger entry, or why it is not committed.
        ``committed``: the parts the ledger lists for this content (kept by the sweep)."""
        path, sha256 = claim.path, claim.sha256
        unreadable = next((r.unreadable for r in results if r.unreadable), None)
        if unreadable is not None:
            self._drop(sha256, results)
            return self._quarantine(path, sha256, unreadable), None
        if self._changed(path, claim.identity):
            self._drop(sha256, results)
            note_begun(path, 0)  # no run died on it: the next run starts its count anew
            return changed_outcome(claim.name), None
        if self.monitor is not None:
            self._write_monitoring(sha256, *self.monitor(claim.name, sha256, results))
        scored = [self._publish_part(*r.scored_part) for r in results if r.scored_part]
        rejected = [self._publish_part(*r.rejected_part) for r in results if r.rejected_part]
        replace_stale_parts(scored, self.layout.scored, sha256, self.model_version, committed)
        replace_stale_parts(rejected, self.layout.rejected_rows, sha256, None, committed)
        outcome = FileOutcome(claim.name, FileStatus.SCORED)
        for result in results:
            outcome.add(result)
            if result.resumed:
                outcome.shards_resumed += 1
                outcome.rows_resumed += result.rows_read
                outcome.scored_resumed += result.rows_scored
        outcome.encoding = next((r.encoding for r in results if r.encoding), "")
        return outcome, ScoredFile(
            sha256, self.model_version, claim.name, outcome.rows_read, outcome.rows_scored,
            outcome.rows_quarantined, part_record(scored), part_record(rejected),
            encoding=outcome.encoding or None, rows_id_generated=outcome.rows_id_generated)

    def _write_monitoring(self, sha256: str, final: Location, table: pa.Table) -> None:
        """Write the file's monitoring row, then remove this content's rows that no
        commit backs, left by a run killed between writing its row and its commit: this
        model's in another day's folder, another model's that never committed it, and
        temporaries (this run holds the content's lock: their writers are dead)."""
        written = _where(write_parquet_atomic(final, table))
        for found in parts_in_partitions(self.layout.monitoring, sha256):
            version = part_version(found.name, sha256)
            if version is None or _where(found) == written:
                continue
            if (is_temporary(found.name) or version == self.model_version
                    or self.ledger.scored(sha256, version) is None):
                found.unlink(missing_ok=True)

    def _drop(self, sha256: str, results: list[StagedShard]) -> None:
        """Nothing of this content is kept: its checkpoints forgotten, every part removed."""
        self.checkpoints.forget(sha256)
        discard(results, kept_too=True)

    def _publish_part(self, temp: Location, final: Location) -> Location:
        try:
            return publish(temp, final)
        except FileNotFoundError as exc:
            raise PartVanishedError(
                f"score stopped: the temporary part {temp} was removed while this run wrote "
                "it: another run (with a different state folder?) swept it. Runs on one data "
                "root must share one REVIEWFLOW_STATE_DIR; run again once the other run "
                "ended") from exc

    def quarantine(self, path: Location, reason: str) -> FileOutcome:
        """Quarantine a file that is no review file at all (no hash, no ledger entry)."""
        with self.critical():
            outcome = quarantine_file(path, self.layout, reason, None, self.ledger)
        self.logger.warning("quarantined %s: %s", outcome.file, reason)
        return outcome

    def _move_to_archive(self, path: Location, sha256: str) -> None:
        self.source.archive(self.layout, self.day, path, sha256)

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

"""The run state a scoring or retraining run needs, and where it lives.

``RunState`` is what tasks/state/commit.py, the scoring flow and the retraining flow ask of
the state: the ledger (which content was scored by which model, which input was
archived, which file was quarantined; the checkpoints of files not yet committed) and
the locks (one per content hash while a run works on it; one for retraining). Two
implementations, tested by the same contract tests (tests/test_state_contract.py):

- ``SQLiteState``: today's ``Ledger`` (``state/ledger.sqlite``) and ``flock`` lock files
  under ``state/locks/``; zero set-up, one machine (or one shared POSIX folder).
- ``tasks.state.postgres.PostgresState``: the same records and session-level advisory locks
  in one PostgreSQL database, for workers on several hosts (``REVIEWFLOW_STATE_URL``).

Both locks are released when their holder dies, even by SIGKILL: the kernel drops a
``flock`` with its process, PostgreSQL drops a session's advisory locks with its
backend. A lock held elsewhere raises ``LockHeldError`` at once (never waits), as
``exclusive_lock`` does.

``open_state`` is the one way a command opens the run state of a data root: it checks
(and, for the root's first user, writes) the root's state marker (``tasks.state.marker``),
so every command on a root uses the same state or is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

from tasks.errors import StateUnavailableError
from tasks.state.ledger import Ledger, ScoredFile, ShardRecord
from tasks.state.marker import StateName, claim_root, folder_state_id
from tasks.state.url import redacted
from tasks.storage.local import LockHeldError, exclusive_lock

__all__ = ["LockHeldError", "RunState", "SQLiteState", "ScoredFile", "ShardRecord",
           "StateUnavailableError", "TimedState", "open_state", "redacted"]

@runtime_checkable
class RunState(Protocol):
    """The ledger and the locks of one data root's runs."""

    def where(self) -> str:
        """Where the state lives, fit for logs (no password)."""

    def identity(self) -> StateName:
        """This state's id and where it is, as the data root's marker names it
        (``tasks.state.marker``)."""

    # -- the ledger --------------------------------------------------------------------
    def scored(self, sha256: str, model_version: str) -> ScoredFile | None: ...

    def committed_not_archived(self, sha256: str) -> ScoredFile | None: ...

    def unarchived(self) -> list[ScoredFile]:
        """Committed scorings whose input is not marked archived: in flight in a live run,
        or left by a run that died between its commit and its archive mark."""

    def committed_parts(self, shas: list[str]) -> dict[str, list[str]]: ...

    def record_scored_many(self, entries: list[ScoredFile]) -> None:
        """Commit several files' scorings in one transaction; a second record of one
        (content, model) replaces the first. The same transaction removes these
        contents' checkpoints (``shard_records``)."""

    def record_archived_many(self, shas: list[str]) -> None: ...

    def record_quarantined_file(self, sha256: str, source_file: str, reason: str,
                                path: str) -> None: ...

    def totals(self) -> dict[str, int]: ...

    def register_columns(self, data_root: str, columns: list[tuple[str, str, str]]
                         ) -> dict[str, str]:
        """Register pass-through columns, (name, type_name, arrow_type), of ``data_root``'s
        ``scored/``: the first to register a name fixes its type, for every host (insert,
        a conflict doing nothing, then read back). Returns each name's ``arrow_type``."""

    # -- checkpoints: finished shards of files not yet committed (tasks.state.checkpoints)
    def record_shard(self, record: ShardRecord) -> None:
        """Keep one checkpoint; a second record of one (content, model, plan, shard)
        replaces the first."""

    def shard_records(self, sha256: str | None = None) -> list[ShardRecord]:
        """The checkpoints of one content (any model, any plan), in shard order; of every
        content with None."""

    def forget_shards(self, records: list[ShardRecord]) -> None:
        """Remove these checkpoints' records, in one transaction."""

    # -- the locks ---------------------------------------------------------------------
    def content_lock(self, sha256: str) -> contextlib.AbstractContextManager[None]:
        """Held while a run works on this content; ``LockHeldError`` if another holder
        (another process, or another claim in this one) has it. Named by the content
        key (``tasks.layout.content_key``: the first 16 hex digits), so a sweep that knows
        only a part's name (``tasks.state.leftovers``) takes the same lock."""

    def claim_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Held while a run claims the inbox object ``key`` (``tasks.state.object_claims``):
        one claimer per object at a time; ``LockHeldError`` if held."""

    def retrain_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while a retraining changes the registry; ``LockHeldError`` if held."""

    def pointer_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held for the moment a registry on object storage changes its champion pointer
        or history (``tasks.training.registry``); ``LockHeldError`` if held."""

    def close(self) -> None: ...


class SQLiteState:
    """``Ledger`` plus ``flock`` files: the state when no state URL is set."""

    def __init__(self, ledger: Path, locks: Path, retrain_lock: Path,
                 pointer_lock: Path | None = None):
        self.ledger_path = ledger
        self._ledger: Ledger | None = None
        self.locks = locks
        self.retrain_lock_file = retrain_lock
        self.pointer_lock_file = pointer_lock or locks / ".champion.lock"  # POINTER_LOCK_FILE

    @property
    def ledger(self) -> Ledger:
        """Opened (created) at first use: a retraining takes only the locks."""
        if self._ledger is None:
            self._ledger = Ledger(self.ledger_path)
        return self._ledger

    @ledger.setter
    def ledger(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @classmethod
    def for_layout(cls, layout) -> SQLiteState:
        """The state folder of a ``DataLayout`` and its registry's locks: beside the
        registry (``models/``) when it is local, where every older run looks for them;
        in the local state folder when the registry is on object storage, which has no
        lock files."""
        from tasks.layout import POINTER_LOCK_FILE, RETRAIN_LOCK_FILE
        locks = layout.lock_file("0" * 64).parent
        registry = layout.models if layout.models.supports_locks else locks
        return cls(layout.ledger, locks, registry / RETRAIN_LOCK_FILE,
                   registry / POINTER_LOCK_FILE)

    @classmethod
    def of_ledger(cls, ledger: Ledger, layout) -> SQLiteState:
        """An opened ``Ledger`` with ``layout``'s lock files (callers that made their own)."""
        state = cls.for_layout(layout)
        state.ledger = ledger
        return state

    def _lock_file(self, sha256: str) -> Path:
        from tasks.layout import content_key

        # The name DataLayout.lock_file gives: runs of older versions see these locks.
        return self.locks / f"{content_key(sha256)}.lock"

    def where(self) -> str:
        return str(self.ledger_path)

    def identity(self) -> StateName:
        folder = self.ledger_path.parent
        return StateName(folder_state_id(folder), str(folder))

    def scored(self, sha256: str, model_version: str) -> ScoredFile | None:
        return self.ledger.scored(sha256, model_version)

    def committed_not_archived(self, sha256: str) -> ScoredFile | None:
        return self.ledger.committed_not_archived(sha256)

    def unarchived(self) -> list[ScoredFile]:
        return self.ledger.unarchived()

    def committed_parts(self, shas: list[str]) -> dict[str, list[str]]:
        return self.ledger.committed_parts(shas)

    def record_scored_many(self, entries: list[ScoredFile]) -> None:
        self.ledger.record_scored_many(entries)

    def record_archived_many(self, shas: list[str]) -> None:
        self.ledger.record_archived_many(shas)

    def record_quarantined_file(self, sha256: str, source_file: str, reason: str,
                                path: str) -> None:
        self.ledger.record_quarantined_file(sha256, source_file, reason, path)

    def totals(self) -> dict[str, int]:
        return self.ledger.totals()

    def register_columns(self, data_root: str, columns: list[tuple[str, str, str]]
                         ) -> dict[str, str]:
        return self.ledger.register_columns(data_root, columns)

    def record_shard(self, record: ShardRecord) -> None:
        self.ledger.record_shard(record)

    def shard_records(self, sha256: str | None = None) -> list[ShardRecord]:
        return self.ledger.shard_records(sha256)

    def forget_shards(self, records: list[ShardRecord]) -> None:
        self.ledger.forget_shards(records)

    def content_lock(self, sha256: str) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(self._lock_file(sha256))

    def claim_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return exclusive_lock(self.locks / f"claim-{digest[:16]}.lock")

    def retrain_lock(self) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(self.retrain_lock_file)

    def pointer_lock(self) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(self.pointer_lock_file)

    def close(self) -> None:
        pass  # every ledger call opens and closes its own connection


def open_state(url: str | None, layout) -> RunState:
    """The run state of ``layout``'s root: PostgreSQL at the state URL ``url``, else the
    SQLite ledger and lock files of ``layout``'s state folder; refused
    (``StateMismatchError``) when the root's marker names another state."""
    if url is None or url == "":
        state: RunState = SQLiteState.for_layout(layout)
    else:
        from tasks.state.postgres import PostgresState

        state = PostgresState(url)  # StateURLError first, for a URL libpq cannot read
    try:
        claim_root(layout, state.identity())
    except BaseException:
        state.close()
        raise
    return state


class TimedState:
    """A ``RunState`` that adds up the wall time spent in it: every ledger call, and the
    taking and the release of a lock (not the time it is held). The run summary reports
    it, so a user sees what the shared state costs a run."""

    def __init__(self, state: RunState):
        self.state = state
        self.seconds = 0.0
        self._adding = threading.Lock()  # the driver's threads may time calls at once

    def __getattr__(self, name: str):
        found = getattr(self.state, name)
        if not callable(found):
            return found

        def timed(*args, **kwargs):
            with self._timing():
                result = found(*args, **kwargs)
            if isinstance(result, contextlib.AbstractContextManager):
                return self._timed_lock(result)
            return result
        return timed

    @contextlib.contextmanager
    def _timing(self):
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._adding:
                self.seconds += time.perf_counter() - started

    @contextlib.contextmanager
    def _timed_lock(self, lock: contextlib.AbstractContextManager):
        with self._timing():
            lock.__enter__()
        try:
            yield
        except BaseException as exc:
            with self._timing():
                if not lock.__exit__(type(exc), exc, exc.__traceback__):
                    raise
        else:
            with self._timing():
                lock.__exit__(None, None, None)

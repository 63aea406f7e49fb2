"""A file's claim: this run's hold on an inbox file, then on its content.

Two steps, both on the driver (``tasks.state.commit`` describes the whole protocol):

1. ``take``: claim the inbox file for this run (``tasks.state.inbox.claim_for_run``: a
   rename, or a conditional copy and delete on object storage), take its claim lock
   (``RunState.claim_lock``) *before* hashing it, so another run that lists the claim
   skips it at once instead of reading (downloading) the whole file, then hash it. The
   result (``Hashed``) holds the claim lock.
2. ``Committer.claim``: lock the content by its hash and ask the ledger; the result
   (``Claim``) holds both locks until the file is committed or released.

Between the two, the queue holds back a file whose content it already has in flight
under another name (the same bytes twice in the inbox) until that one is committed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from tasks.outcomes import FileOutcome, FileStatus
from tasks.state.inbox import Identity, claim_for_run, claim_key
from tasks.state.object_claims import ObjectChangedError, ObjectVersion
from tasks.storage.local import Location, LockHeldError, file_sha256, readable_name

HANDLED_ELSEWHERE = "handled by another run"


@dataclass
class Hashed:
    """An inbox file this run claimed and hashed, its claim lock held (``held``)."""

    path: Location
    sha256: str
    known: Identity | ObjectVersion | None  # its identity when hashed; None: no claims
    held: contextlib.ExitStack
    started: float  # when this file's work began (time.perf_counter)
    name: str  # the name it was uploaded under: what its rows, records and lines say

    def release(self) -> None:
        self.held.close()


@dataclass
class Claim:
    """A file this run holds by its content hash (its lock), not yet committed."""

    path: Location
    sha256: str
    lock: contextlib.ExitStack
    started: float  # when this file's work began (time.perf_counter)
    identity: Identity | ObjectVersion | None  # when hashed; None: a store without claims
    name: str  # the name it was uploaded under (``Hashed.name``)
    size: int = 0  # bytes

    def release(self) -> None:
        self.lock.close()


def take(path: Location, claim_lock: Callable[[str], contextlib.AbstractContextManager],
         logger) -> Hashed | FileOutcome:
    """Step 1: claim, lock and hash one inbox file; or why not (claimed or moved by
    another run: busy; an object rewritten while it was read: changed)."""
    started = time.perf_counter()
    held = contextlib.ExitStack()  # this run's hold on the claim, released with it
    try:
        path, known = claim_for_run(path, claim_lock)
        # Held while this run has the file: another run that lists the claim skips
        # it at once instead of reading (downloading) the whole file to hash it.
        held.enter_context(claim_lock(claim_key(path)))
        sha256 = file_sha256(path)
    except (FileNotFoundError, LockHeldError):  # claimed by another run, or being
        held.close()
        return FileOutcome(readable_name(path.name), FileStatus.BUSY, detail=HANDLED_ELSEWHERE)
    except ObjectChangedError as exc:
        held.close()
        logger.warning("%s", exc)
        return changed_outcome(path.name)
    except BaseException:
        held.close()
        raise
    return Hashed(path, sha256, known, held, started, path.name)


def changed_outcome(name: str) -> FileOutcome:
    """A file (by its uploaded name) whose bytes changed while this run read it."""
    return FileOutcome(name, FileStatus.CHANGED, detail="modified while read; left for the next run")

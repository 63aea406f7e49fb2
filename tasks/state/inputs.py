"""Where a run's input files come from, and what becomes of them once committed.

The commit protocol (``tasks.state.commit``) is the same for every input; what differs
is the source, passed to the ``Committer`` as one of these:

- ``FromInbox`` (``score``): a file is claimed out of ``incoming/`` (a rename), moved
  to ``archive/<day>/`` after its commit, and moved to ``quarantine/files/`` whole if it
  cannot be read. Content any model committed in a run that died before archiving it
  counts as done: a promotion since must not score it twice.
- ``FromArchive`` (``rescore``: a backfill with the current champion): a file of
  ``archive/`` is read where it is and stays there. Its name says the hash it was
  archived under (``<sha16>-<name>``): bytes that no longer match are refused. A file
  that cannot be read (or is refused) is not moved either: its reason is written to
  ``quarantine/files/<day>/<sha16>-<name>.reason.json`` and recorded in the ledger,
  and the backfill goes on. Done means scored by this model, nothing else.

The source names each file once (``Hashed.name``, carried by its ``Claim``): the name
it was uploaded under, which its rows, records, outcomes and lines say. The archive's
``<sha16>-`` is taken off only here, never from an inbox file's name.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from tasks.layout import DataLayout, content_key, day_of, kept_name, reason_file
from tasks.outcomes import FileOutcome, FileStatus
from tasks.state.backend import RunState
from tasks.state.claim import HANDLED_ELSEWHERE, Hashed, changed_outcome, take
from tasks.state.inbox import claim_key, identity, release_claim_folder
from tasks.state.ledger import ScoredFile
from tasks.state.object_claims import ObjectChangedError
from tasks.state.quarantine import check_moves, quarantine_file
from tasks.storage.local import (
    Location,
    LockHeldError,
    file_sha256,
    move_file_keeping,
    readable_name,
    write_json_atomic,
)

# An archived input's name: the content key it was archived under, a dash, its name.
ARCHIVED_NAME = re.compile(r"(?P<key>[0-9a-f]{16})-(?P<name>.+)")


def archived_key(name: str) -> str | None:
    """The content key an archived input's name records (``kept_name``), or None."""
    found = ARCHIVED_NAME.fullmatch(name)
    return found["key"] if found else None


def original_name(name: str) -> str:
    """An archived input's name as it was uploaded (``kept_name`` undone)."""
    found = ARCHIVED_NAME.fullmatch(name)
    return found["name"] if found else name


class InputSource(Protocol):
    """What the commit asks of the place its inputs come from."""

    def take(self, path: Location, layout: DataLayout, ledger: RunState,
             logger) -> Hashed | FileOutcome: ...

    def done(self, ledger: RunState, sha256: str, model_version: str) -> ScoredFile | None: ...

    def archive(self, layout: DataLayout, day: str, path: Location, sha256: str) -> None: ...

    def quarantine(self, path: Location, layout: DataLayout, reason: str, sha256: str | None,
                   ledger: RunState) -> FileOutcome: ...


@dataclass(frozen=True)
class FromInbox:
    """``score``: inputs claimed out of ``incoming/``, archived after their commit."""

    def take(self, path: Location, layout: DataLayout, ledger: RunState,
             logger) -> Hashed | FileOutcome:
        return take(path, ledger.claim_lock, logger)

    def done(self, ledger: RunState, sha256: str, model_version: str) -> ScoredFile | None:
        # Committed before by this model, or by any model in a run that died before
        # archiving it (a promotion since then must not score it a second time).
        return ledger.scored(sha256, model_version) or ledger.committed_not_archived(sha256)

    def archive(self, layout: DataLayout, day: str, path: Location, sha256: str) -> None:
        """Beside, never over, an earlier copy of the same name."""
        folder = layout.archive_folder(day)
        check_moves(layout, path, folder)
        move_file_keeping(path, folder, kept_name(sha256, readable_name(path.name)))
        release_claim_folder(path)

    def quarantine(self, path: Location, layout: DataLayout, reason: str, sha256: str | None,
                   ledger: RunState) -> FileOutcome:
        return quarantine_file(path, layout, reason, sha256, ledger)


@dataclass(frozen=True)
class FromArchive:
    """``rescore``: archived inputs read where they are, and left there."""

    def take(self, path: Location, layout: DataLayout, ledger: RunState,
             logger) -> Hashed | FileOutcome:
        """Lock the archived file (another backfill skips it at once), then hash it;
        bytes that differ from the hash its name records are refused."""
        started = time.perf_counter()
        held = contextlib.ExitStack()
        try:
            held.enter_context(ledger.claim_lock(claim_key(path)))
            known = identity(path)
            sha256 = file_sha256(path)
        except (FileNotFoundError, LockHeldError):
            held.close()
            return FileOutcome(readable_name(original_name(path.name)), FileStatus.BUSY,
                               detail=HANDLED_ELSEWHERE)
        except ObjectChangedError as exc:
            held.close()
            logger.warning("%s", exc)
            return changed_outcome(original_name(path.name))
        except BaseException:
            held.close()
            raise
        recorded = archived_key(path.name)
        if recorded != content_key(sha256):
            with held:
                reason = (f"its bytes (content {content_key(sha256)}) differ from those it "
                          f"was archived with (content {recorded}): it was changed in "
                          "archive/; restore it, or put it in incoming/ to score it as a "
                          "new file")
                logger.warning("refused %s: %s", readable_name(original_name(path.name)),
                               reason)
                return self.quarantine(path, layout, reason, sha256, ledger)
        return Hashed(path, sha256, known, held, started, original_name(path.name))

    def done(self, ledger: RunState, sha256: str, model_version: str) -> ScoredFile | None:
        return ledger.scored(sha256, model_version)

    def archive(self, layout: DataLayout, day: str, path: Location, sha256: str) -> None:
        """It is in ``archive/`` already: no second copy."""

    def quarantine(self, path: Location, layout: DataLayout, reason: str, sha256: str | None,
                   ledger: RunState) -> FileOutcome:
        """The reason, written and recorded; the archived file stays where it is."""
        shown = readable_name(original_name(path.name))
        folder = layout.quarantined_files(day_of(datetime.now(UTC)))
        named = folder / (kept_name(sha256, shown) if sha256 else shown)
        write_json_atomic(reason_file(named),
                          {"file": shown, "sha256": sha256, "reason": reason,
                           "left_in": str(path), "quarantined_at": datetime.now(UTC).isoformat()})
        if sha256:
            ledger.record_quarantined_file(sha256, shown, reason, str(path))
        return FileOutcome(shown, FileStatus.FAILED, detail=reason)

"""A whole file to ``quarantine/files/<day>/``, beside the reason why: for a scoring run
(``tasks.state.commit``) and for training's read of ``labeled/`` and ``unlabeled/``
(``tasks.training.labeled``) alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.failpoints import failpoint
from tasks.layout import DataLayout, check_inside, day_of, kept_name, reason_file
from tasks.outcomes import FileOutcome, FileStatus
from tasks.state.backend import RunState
from tasks.state.inbox import release_claim_folder
from tasks.storage.local import Location, move_file_keeping, readable_name, write_json_atomic


def quarantine_file(path: Location, layout: DataLayout, reason: str, sha256: str | None,
                    ledger: RunState) -> FileOutcome:
    """Move a whole file to ``quarantine/files/<day>/`` beside a JSON reason file.

    Never replaces an earlier quarantined file or its reason: names that clean to one,
    or one name twice in a day, get ``~2``, ``~3``, … (``move_file_keeping``). The
    file is named by ``readable_name`` everywhere (a name that is not UTF-8 is not
    written to JSON, SQLite or logs as such).
    """
    target_dir = layout.quarantined_files(day_of(datetime.now(UTC)))
    shown = readable_name(path.name)
    name = kept_name(sha256, shown) if sha256 else shown
    check_moves(layout, path, target_dir)
    target = move_file_keeping(path, target_dir, name)
    failpoint("quarantine:moved")
    release_claim_folder(path)
    write_json_atomic(reason_file(target),
                      {"file": shown, "sha256": sha256, "reason": reason,
                       "quarantined_at": datetime.now(UTC).isoformat()})
    if sha256:
        ledger.record_quarantined_file(sha256, shown, reason, str(target))
    return FileOutcome(shown, FileStatus.QUARANTINED if sha256 else FileStatus.UNSUPPORTED, detail=reason)


def check_moves(layout: DataLayout, source: Location, target_dir: Location) -> None:
    """Refuse (``LinkedFolderError``) a move whose source folder or target folder leads
    out of the data root through a link: checked right before each move, since the
    inbox is writable by uploaders while a run works."""
    check_inside(layout.root, source.parent)  # nothing to check in a bucket (no links)
    check_inside(layout.root, target_dir)

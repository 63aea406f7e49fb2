"""What is in the inbox, and claiming a file of it for one run."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tasks.layout import CLAIMS_FOLDER
from tasks.readers import detect_format


@dataclass
class Inbox:
    ready: list[Path] = field(default_factory=list)
    settling: list[Path] = field(default_factory=list)    # modified too recently: next run
    unsupported: list[Path] = field(default_factory=list)  # not a review file or not regular

    def note(self, settle_seconds: float, where: str = "") -> str:
        """What the inbox held, as the line an operator reads when a run scored nothing:
        "0 files ready[ in WHERE]; 2 left for the next run (modified in the last 60 s)"."""
        note = f"{len(self.ready)} files ready" + (f" in {where}" if where else "")
        if self.settling:
            note += (f"; {len(self.settling)} left for the next run (modified in the last "
                     f"{settle_seconds:.0f} s)")
        return note


def list_inbox(incoming: Path, settle_seconds: float, now: float | None = None) -> Inbox:
    """Sort the inbox's entries by what the run does with them.

    Names starting with a dot are uploads in progress (write ``.name.tmp``, then rename)
    and are not looked at. A file modified less than ``settle_seconds`` ago may still be
    being written and waits for the next run. Symbolic links and files of
    unknown type are reported as unsupported; sub-folders are left alone; the caller quarantines them.

    ``incoming`` may be an ``ObjectPath``: objects are listed with their last-modified
    time (an upload is visible only once complete), and key prefixes count as sub-folders.
    """
    now = time.time() if now is None else now
    inbox = Inbox()
    if not incoming.exists():
        return inbox
    # Files claimed by a run that died (or that found them changed) come first: they
    # have waited longest. One still claimed by a live run is skipped by its lock.
    # (Object storage has no claims: see claim_for_run.)
    leftovers = (sorted((incoming / CLAIMS_FOLDER).glob("*/*")) if isinstance(incoming, Path)
                 else [])
    for entry in [*leftovers, *sorted(incoming.iterdir())]:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                continue
            if entry.is_symlink():
                inbox.unsupported.append(entry)
            elif not entry.is_file() or detect_format(entry) is None:
                entry.stat()  # raises if the entry is gone (see below) rather than odd
                inbox.unsupported.append(entry)
            elif now - entry.stat().st_mtime < settle_seconds:
                inbox.settling.append(entry)
            else:
                inbox.ready.append(entry)
        except FileNotFoundError:
            # Listed, then claimed, archived or quarantined by another run scoring the same
            # inbox (they run at once: README, "What happens when"). That run has it.
            continue
    return inbox


@dataclass(frozen=True)
class Identity:
    """What changes when a file's bytes change in place: an append, a rewrite."""

    inode: int
    size: int
    mtime_ns: int


def identity(path: Path) -> Identity:
    stat = os.stat(path, follow_symlinks=False)
    return Identity(stat.st_ino, stat.st_size, stat.st_mtime_ns)


def claim(path: Path) -> Path:
    """Take a ready inbox file for this run: rename it to ``.claimed/<token>/<name>``
    inside the inbox and return the new path (the file name is kept).

    From then on the run reads, hashes and archives the claimed path, so an upload
    renamed over the inbox name meanwhile is a new file for the next run, never
    archived unscored under the old content's hash. A file already claimed (a leftover
    of a run that died) is returned as it is. FileNotFoundError: another run claimed it.
    """
    if path.parent.parent.name == CLAIMS_FOLDER:
        return path
    folder = path.parent / CLAIMS_FOLDER / uuid.uuid4().hex[:12]
    for _ in range(100):  # another run may remove an empty .claimed/ in between
        try:
            folder.mkdir(parents=True)
            break
        except FileNotFoundError:
            continue
    try:
        os.rename(path, folder / path.name)
    except FileNotFoundError:
        folder.rmdir()
        raise
    return folder / path.name


def claim_for_run(path: Path) -> tuple[Path, Identity | None]:
    """Claim a local inbox file for this run (``claim``) and note its identity before it
    is hashed; object storage has no rename to claim with (README, "Exactly once without
    rename": uploaders never overwrite an object there), so an object is its own claim."""
    if not isinstance(path, Path):
        return path, None
    claimed = claim(path)
    return claimed, identity(claimed)


def release_claim_folder(path: Path) -> None:
    """Remove the empty ``.claimed/<token>/`` folder a claimed file has left."""
    if isinstance(path, Path) and path.parent.parent.name == CLAIMS_FOLDER:
        for folder in (path.parent, path.parent.parent):  # .claimed/ too, once empty
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (another claim), or gone already

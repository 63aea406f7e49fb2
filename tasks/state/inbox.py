"""What is in the inbox, and claiming a file of it for one run."""

from __future__ import annotations

import contextlib
import errno
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tasks.layout import CLAIM_ATTEMPTS_FILE, CLAIMS_FOLDER, check_inside
from tasks.reading import detect_format
from tasks.state.object_claims import claim_object, leftover_object_claims
from tasks.storage.local import Location, readable_name
from tasks.storage.location import Identity, ObjectVersion
from tasks.storage.objects import Entry, EntryKind, as_location, local_entry, scan


@dataclass
class Inbox:
    ready: list[Path] = field(default_factory=list)
    settling: list[Path] = field(default_factory=list)    # modified too recently: next run
    unsupported: list[Path] = field(default_factory=list)  # not a review file or not regular

    def note(self, settle_seconds: float, where: str = "") -> str:
        """What the inbox held, as the line an operator reads when a run scored nothing:
        "0 files ready[ in WHERE][, 1 not a review file]; 2 left for the next run
        (modified in the last 60 s)". Files not review files are quarantined by the run."""
        note = f"{len(self.ready)} files ready" + (f" in {where}" if where else "")
        if odd := len(self.unsupported):
            note += f", {odd} not {'a review file' if odd == 1 else 'review files'}"
        if self.settling:
            note += (f"; {len(self.settling)} left for the next run (modified in the last "
                     f"{settle_seconds:.0f} s)")
        return note


def list_inbox(incoming: Location, settle_seconds: float, now: float | None = None) -> Inbox:
    """Sort the inbox's entries by what the run does with them.

    Names starting with a dot are uploads in progress (write ``.name.tmp``, then rename)
    and are not looked at. A file modified less than ``settle_seconds`` ago may still be
    being written and waits for the next run. Symbolic links and files of
    unknown type are reported as unsupported; sub-folders are left alone; the caller quarantines them.

    Each entry is sorted by what the listing said of it (``scan``: type, size, time), with
    no request or ``stat`` of its own. ``incoming`` may be an ``ObjectPath``: objects are
    listed with their last-modified time (an upload is visible only once complete), and
    key prefixes count as sub-folders; the listing costs one request per 1,000 objects.
    """
    now = time.time() if now is None else now
    inbox = Inbox()
    # Files claimed by a run that died (or that found them changed) come first: they
    # have waited longest. One still claimed by a live run is skipped by its lock.
    # An entry listed, then claimed, archived or quarantined by another run scoring the
    # same inbox is that run's (they run at once: docs/what-happens-when.md).
    for entry in [*claimed_entries(incoming), *sorted(scan(incoming), key=lambda e: e.name)]:
        path = entry.path
        if entry.name.startswith(".") and path.parent.name != CLAIMS_FOLDER:
            continue
        if entry.kind is EntryKind.FOLDER:
            continue
        if entry.kind is not EntryKind.FILE or detect_format(path) is None:
            inbox.unsupported.append(path)
        elif now - entry.mtime < settle_seconds:
            inbox.settling.append(path)
        else:
            inbox.ready.append(path)
    return inbox


def claimed_files(incoming: Location) -> list[Location]:
    """The files in ``incoming/.claimed/<token>/``: left by runs that died, or held by
    live runs (whose content lock tells them apart)."""
    return [entry.path for entry in claimed_entries(incoming)]


def claimed_entries(incoming: Location) -> list[Entry]:
    """``claimed_files`` with what their listing said of each (``Entry``)."""
    # why: the claim protocols differ (a rename into token folders, walked without
    # following links, or conditional copies listed at once): tasks.state, not storage.
    if isinstance(incoming, Path):
        return leftover_claims(incoming)
    return leftover_object_claims(incoming) if incoming.supports_claims else []


def leftover_claims(incoming: Path) -> list[Entry]:
    """What runs that died left in ``incoming/.claimed/``, listed without following a
    link: a token folder that is a link, or a link inside a token folder, is returned
    as itself (an unsupported entry, quarantined as the link), never its target's
    files. ``.claimed`` itself being a link is refused (``LinkedFolderError``)."""
    claims = incoming / CLAIMS_FOLDER
    check_inside(incoming, claims)
    found: list[Entry] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for token in sorted(os.scandir(claims), key=lambda e: e.name):
            if (entry := local_entry(token)) is None:
                continue
            if entry.kind is not EntryKind.FOLDER:
                found.append(entry)  # a link or a stray file: never entered
                continue
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                found += sorted((e for child in os.scandir(token.path)
                                 if not child.name.startswith(".")
                                 and (e := local_entry(child)) is not None),
                                key=lambda e: e.name)
    return found


def identity(path: Location) -> Identity | ObjectVersion:
    """A local file's inode, size and mtime; an object's ETag (``Location.identity``)."""
    return as_location(path).identity()


def is_claimed(path: Location) -> bool:
    """True for a file in ``incoming/.claimed/<token>/``: a claim this run or a run that
    died took."""
    return path.parent.parent.name == CLAIMS_FOLDER


def claim(path: Path) -> Path:
    """Take a ready inbox file for this run: rename it to ``.claimed/<token>/<name>``
    inside the inbox and return the new path.

    From then on the run reads, hashes and archives the claimed path, so an upload
    renamed over the inbox name meanwhile is a new file for the next run, never
    archived unscored under the old content's hash. A file already claimed (a leftover
    of a run that died) is returned as it is. FileNotFoundError: another run claimed it.

    The claimed name is ``readable_name``'s: a name that is not UTF-8 or holds control
    characters is cleaned here, so every later step (pyarrow, the ledger, the parts'
    ``source_file``, reason files, logs) sees text. Every folder on the way is opened
    without following links (``O_NOFOLLOW``): a ``.claimed`` or token folder made a
    link by someone who can write to the inbox raises ``LinkedFolderError``, and
    nothing moves out of the root through it.
    """
    if is_claimed(path):
        cleaned = readable_name(path.name)
        if cleaned == path.name:
            return path
        os.rename(path, path.with_name(cleaned))  # a leftover of a version that kept it
        return path.with_name(cleaned)
    cleaned = readable_name(path.name)
    incoming = _open_folder(path.parent)
    try:
        for _ in range(100):  # another run may remove an empty .claimed/ in between
            with contextlib.suppress(FileExistsError):
                os.mkdir(CLAIMS_FOLDER, dir_fd=incoming)
            try:
                claims = _open_folder(CLAIMS_FOLDER, dir_fd=incoming, shown=path.parent)
                break
            except FileNotFoundError:
                continue
        try:
            token = uuid.uuid4().hex[:12]
            os.mkdir(token, dir_fd=claims)
            folder = _open_folder(token, dir_fd=claims, shown=path.parent / CLAIMS_FOLDER)
            try:
                os.rename(path.name, cleaned, src_dir_fd=incoming, dst_dir_fd=folder)
            except FileNotFoundError:
                os.rmdir(token, dir_fd=claims)
                raise
            finally:
                os.close(folder)
        finally:
            os.close(claims)
    finally:
        os.close(incoming)
    return path.parent / CLAIMS_FOLDER / token / cleaned


def _open_folder(name: str | Path, dir_fd: int | None = None, shown: Path | None = None) -> int:
    """A descriptor of a real folder; ``LinkedFolderError`` if it is a symbolic link."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        where = (shown / name) if shown is not None else Path(name)
        check_inside(where.parent, where)  # raises, naming the link
        raise


def claim_key(path: Location) -> str:
    """What names a claimed file for ``RunState.claim_lock``: its path, or its object's
    bucket and key."""
    return as_location(path).claim_key()


def claim_for_run(path: Location, claim_lock: Callable[[str], contextlib.AbstractContextManager]
                  ) -> tuple[Location, Identity | ObjectVersion | None]:
    """Claim an inbox file for this run and note its identity before it is hashed: a
    local file by a rename (``claim``), an S3 object by a conditional copy and delete
    under ``claim_lock`` (``tasks.state.object_claims``). Other object stores have
    neither, so their object is its own claim (docs/scaling-out.md, "Exactly once
    without rename": uploaders must never overwrite an object there)."""
    path = as_location(path)
    if not path.supports_claims:
        return path, None
    # why: two claim protocols of tasks.state (a rename here, a conditional copy under
    # ``claim_lock`` in tasks.state.object_claims), not two ways of storing bytes.
    if isinstance(path, Path):
        claimed = claim(path)
        return claimed, identity(claimed)
    return claim_object(path, claim_lock)


def runs_died(path: Location) -> int:
    """How many runs began work on this leftover claim and never finished it: the count
    in its token folder (``note_begun``), or 1 (the run that claimed it) without one."""
    try:
        return int((path.parent / CLAIM_ATTEMPTS_FILE).read_text().strip())
    except (OSError, ValueError):
        return 1


def note_begun(path: Location, runs: int) -> None:
    """Record, beside a claimed file, that ``runs`` runs have begun work on it: if this
    one dies too, the next run reads the count (``runs_died``). Written in place, with
    no temporary a kill could leave in the claim's folder: a count cut short by a kill
    or lost with a power cut reads as 1 and costs a retry or two, never a file."""
    if is_claimed(path):
        (path.parent / CLAIM_ATTEMPTS_FILE).write_text(f"{runs}\n")  # on S3 one PUT


def release_claim_folder(path: Location) -> None:
    """Remove the empty ``.claimed/<token>/`` folder a claimed file has left (on object
    storage, only its attempts count: a prefix is no object), and any temporary of the
    count (``.attempts.<hex>.tmp``) a writer killed before its rename left there."""
    if not is_claimed(path):
        return
    path = as_location(path)
    (path.parent / CLAIM_ATTEMPTS_FILE).unlink(missing_ok=True)
    path.parent.remove_dead_temporaries()  # of the count, by a writer killed before its rename
    for folder in (path.parent, path.parent.parent):  # .claimed/ too, once empty
        if not folder.remove_empty_folder():
            return  # not empty (another claim), gone already, or a prefix (no folder)

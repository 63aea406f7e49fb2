"""Where the registry's files live, and how a version, the pointer lock and a history
event are written there. ``tasks.training.registry`` decides what changes; one of these
two says how, on its kind of storage:

- ``LocalFiles``: a folder. A version is staged in ``.staging/<version>/`` and renamed
  into ``versions/`` whole; history is one fsynced line appended to ``history.jsonl``;
  the pointer lock is a ``flock`` on ``.champion.lock``.
- ``ObjectFiles``: a prefix on object storage, where there is no rename, no append and
  no lock file. A version is written on local disk, uploaded under
  ``.staging/<version>/``, then copied server-side into ``versions/<version>/`` with
  ``model.keras`` last: a version exists (``Registry.exists``) once its model is there,
  and by then its record is too, so a reader on another host sees all of a version or
  none of it. History is one object per event under ``history/`` (two promotions at once
  each write their own; nothing is read back and rewritten). The pointer lock is the
  run state's (``RunState.pointer_lock``: a PostgreSQL advisory lock with a state URL).

``champion.json`` is replaced the same way on both: a rename locally, one PUT (atomic:
a reader sees the old object or the new one) on object storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from tasks.errors import RegistryError
from tasks.failpoints import failpoint
from tasks.layout import (
    HISTORY_EVENTS_FOLDER,
    HISTORY_FILE,
    MODEL_FILE,
    POINTER_LOCK_FILE,
    STAGING_FOLDER,
    VERSIONS_FOLDER,
)
from tasks.storage.local import LockHeldError, exclusive_lock, fsync_folder
from tasks.storage.location import Location
from tasks.storage.objects import ObjectPath, as_location, read_all, remove_tree

# What new_version() makes, and any plain name an operator may give a version folder.
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_SHARD_SUFFIX = re.compile(r"-s\d{4}$")


def checked_version(version: str) -> str:
    """``version`` if it names a folder inside versions/, else RegistryError: a version
    comes from the command line or champion.json, and must never be a path."""
    if not VERSION_NAME.fullmatch(version) or ".." in version:
        raise RegistryError(f"{version!r} is not a version name (letters, digits, '_', '.',"
                            f" '-'; no paths); see `reviewflow models list`")
    if _SHARD_SUFFIX.search(version):
        # Part names put "-s0003" after the version for shard 3: version "V-s0003" would
        # name the same part as shard 3 of version "V" (tasks.state.inbox.part_name).
        raise RegistryError(f"{version!r} is not a version name: a name may not end in '-s' "
                            f"and four digits, which scored part names use for shards")
    return version



class LocalFiles:
    """A registry in a local (or shared POSIX) folder."""

    def __init__(self, root: Path):
        self.root = root

    @property
    def staging(self) -> Path:
        return self.root / STAGING_FOLDER

    def pointer_lock(self) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(self.root / POINTER_LOCK_FILE)

    def check_writable(self) -> None:
        pass

    def version_names(self) -> list[str]:
        versions = self.root / VERSIONS_FOLDER
        return [p.name for p in versions.iterdir() if p.is_dir()] if versions.exists() else []

    def publish(self, version: str) -> Path:
        versions = self.root / VERSIONS_FOLDER
        versions.mkdir(parents=True, exist_ok=True)
        os.replace(self.staging / version, versions / version)
        fsync_folder(versions)
        return versions / version

    def clean_staging(self) -> list[str]:
        if not self.staging.exists():
            return []
        removed = sorted(p.name for p in self.staging.iterdir())
        shutil.rmtree(self.staging, ignore_errors=True)
        return removed

    def append_event(self, line: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / HISTORY_FILE, "a", encoding="utf-8") as stream:
            stream.write(line + "\n")
            stream.flush()
            os.fsync(stream.fileno())

    def event_lines(self) -> list[str]:
        history = self.root / HISTORY_FILE
        return history.read_text(encoding="utf-8").splitlines() if history.exists() else []


class ObjectFiles:
    """A registry under an object-storage prefix; its locks come from ``state``."""

    def __init__(self, root: ObjectPath, state=None):
        self.root = root
        self.state = state

    @property
    def staging(self) -> Path:
        """Local: Keras and matplotlib write files, which are uploaded at ``publish``.
        One folder per registry URL, so leftovers of a run killed on this host are found."""
        digest = hashlib.sha256(self.root.url.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "reviewflow-staging" / digest

    def check_writable(self) -> None:
        if self.state is None:
            raise RegistryError(
                f"the registry at {self.root} is on object storage, which has no locks: "
                "changing it needs the run state's (REVIEWFLOW_STATE_URL for workers on "
                "several hosts, else the local state folder); pass it as Registry(root, state)")

    def pointer_lock(self) -> contextlib.AbstractContextManager[None]:
        self.check_writable()
        return self.state.pointer_lock()

    def version_names(self) -> list[str]:
        # Only versions whose model is there: one being copied in is not a version yet.
        return sorted({found.parent.name for found in
                       (self.root / VERSIONS_FOLDER).glob(f"*/{MODEL_FILE}")})

    def publish(self, version: str) -> ObjectPath:
        local = self.staging / version
        remote = self.root / STAGING_FOLDER / version
        final = self.root / VERSIONS_FOLDER / version
        files = sorted((p for p in local.iterdir() if p.is_file()),
                       key=lambda p: (p.name == MODEL_FILE, p.name))  # the model last
        fs = self.root.fs
        for file in files:
            fs.put_file(str(file), (remote / file.name).url)
        failpoint("registry:uploaded")
        for file in files:
            if file.name == MODEL_FILE:
                failpoint("registry:record-copied")
            fs.cp_file((remote / file.name).url, (final / file.name).url)
        failpoint("registry:model-copied")
        _remove_prefix(remote)
        shutil.rmtree(local, ignore_errors=True)
        return final

    def clean_staging(self) -> list[str]:
        """Remove what runs killed mid-publish left: their local folders, their uploads
        under ``.staging/`` and a copy into ``versions/`` that stopped before its model
        (never a version whose model is there: that one was published whole)."""
        removed = set()
        if self.staging.exists():
            removed |= {p.name for p in self.staging.iterdir()}
            shutil.rmtree(self.staging, ignore_errors=True)
        uploads = self.root / STAGING_FOLDER
        names = {p.name for p in uploads.iterdir()} if uploads.exists() else set()
        for name in names:
            final = self.root / VERSIONS_FOLDER / name
            if not (final / MODEL_FILE).exists():
                _remove_prefix(final)
            _remove_prefix(uploads / name)
        return sorted(removed | names)

    def append_event(self, line: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        (self.root / HISTORY_EVENTS_FOLDER / f"{stamp}-{secrets.token_hex(4)}.json"
         ).write_text(line)  # one PUT per event: none can overwrite another

    def event_lines(self) -> list[str]:
        """``history.jsonl`` (a registry uploaded from a local root) first, then the
        event objects in the order of their names (their UTC time)."""
        legacy = self.root / HISTORY_FILE
        lines = legacy.read_text(encoding="utf-8").splitlines() if legacy.exists() else []
        events = self.root / HISTORY_EVENTS_FOLDER
        return lines + [data.decode("utf-8") for data in read_all(list(events.glob("*.json")))]


# How long a change waits for another to finish: they take milliseconds, so a lock held
# this long belongs to a process that is stuck (stopped, or paused in a debugger).
POINTER_LOCK_WAIT_SECONDS = 60


@contextlib.contextmanager
def waiting_for(take_lock) -> Iterator[None]:
    """Hold ``take_lock()`` (the pointer lock), waiting up to ``POINTER_LOCK_WAIT_SECONDS``."""
    deadline = None
    with contextlib.ExitStack() as held:
        while True:
            try:
                held.enter_context(take_lock())
                break
            except LockHeldError as exc:
                if deadline is None:
                    failpoint("registry:pointer-busy")
                    deadline = time.monotonic() + POINTER_LOCK_WAIT_SECONDS
                elif time.monotonic() >= deadline:
                    raise RegistryError(
                        f"the champion pointer is being changed by another command and "
                        f"has been for {POINTER_LOCK_WAIT_SECONDS} s ({exc}); nothing was "
                        f"changed. If that process is stuck, end it, then run this again"
                    ) from exc
                time.sleep(0.05)
        yield


def registry_files(root: Location, state=None) -> LocalFiles | ObjectFiles:
    """A local registry locks its own folder; one in a bucket takes ``state``'s locks."""
    root = as_location(root)
    return LocalFiles(root) if root.supports_locks else ObjectFiles(root, state)


def _remove_prefix(prefix: ObjectPath) -> None:
    remove_tree(prefix)


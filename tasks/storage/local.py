"""Local files with crash-safe semantics: ``LocalPath``, the storage interface on a disk.

``LocalPath`` is a ``pathlib.PosixPath`` (so every ``Path`` operation keeps working, and
``/``, ``parent`` and ``with_name`` give ``LocalPath`` again) that implements
``tasks.storage.location.Location``: hashing, atomic writes, moves, staged Parquet,
scans, change detection. ``ObjectPath`` (``tasks.storage.objects``) implements the same
interface for a bucket.

A file reviewflow publishes (a Parquet part, a pointer, a reason file) is written
under a temporary dot-name in its final folder, flushed to disk and renamed into
place, so readers see either the whole file or nothing. Temporary names start with a
dot and end in ``.tmp``: pyarrow, pandas and DuckDB globs of ``*.parquet`` never see them.

A temporary written and renamed in one call (``atomic_path``, ``write_bytes_atomic``, a
copy across file systems) is written while its writer holds a shared ``flock`` on the
folder: ``remove_dead_temporaries`` takes that folder's lock exclusively, so every
temporary it finds then belongs to a writer that died (a SIGKILL between the write and
the rename) and nothing else will ever remove it. A part staged for a later commit
(``StagedParquet``) outlives any one call; its content's lock says whether its run is
alive (tasks.state.leftovers).

The module's functions (``write_bytes_atomic``, ``publish``, ``move_file_keeping``, …)
take either implementation, or a plain ``Path`` (a local one), and call its method.
Locks are always local: ``exclusive_lock`` takes a local path only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat as stat_mode
from collections.abc import Callable, Iterator
from pathlib import Path, PosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.failpoints import failpoint
from tasks.storage.location import (
    MAX_NAME_BYTES,
    TEMPORARY_NAME,
    Entry,
    EntryKind,
    Identity,
    Location,
    ParquetSink,
    candidates,
    is_temporary,
    names_exhausted,
    readable_name,
    safe_name,
)
from tasks.storage.locks import LockHeldError, exclusive_lock

__all__ = ["MAX_NAME_BYTES", "TEMPORARY_NAME", "Location", "LockHeldError", "exclusive_lock",
           "is_temporary", "readable_name", "safe_name"]


def fsync_folder(folder: Path) -> None:
    """Make what was renamed into or out of ``folder`` durable (an fsync of the folder
    itself); a file system that cannot fsync a folder is left as it is."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _writing_in(folder: Path) -> Iterator[None]:
    """Hold a shared lock on ``folder`` while a temporary of this writer lives in it:
    ``remove_dead_temporaries`` sweeps the folder only when it can take the lock
    exclusively. A file system without locks on folders takes none (nothing is swept)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def local_entry(child: os.DirEntry) -> Entry | None:
    """The ``Entry`` of a local ``os.scandir`` child (its ``lstat``), or None if it is gone."""
    try:
        info = child.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    mode = info.st_mode
    kind = (EntryKind.LINK if stat_mode.S_ISLNK(mode) else EntryKind.FOLDER
            if stat_mode.S_ISDIR(mode) else EntryKind.FILE if stat_mode.S_ISREG(mode)
            else EntryKind.OTHER)
    return Entry(LocalPath(child.path), kind, info.st_size, info.st_mtime)


class _DurableSink(ParquetSink):
    """A Parquet file written natively by pyarrow, fsynced when closed."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")

    def close(self) -> None:
        self.writer.close()
        with open(self.path, "rb+") as written:
            os.fsync(written.fileno())

    def discard(self) -> None:
        self.writer.close()


class LocalPath(PosixPath, Location):
    """A file or folder on a local (or mounted) file system."""

    __slots__ = ()
    supports_locks = True
    supports_links = True

    @property
    def supports_claims(self) -> bool:
        return True  # a rename into incoming/.claimed/ (tasks.state.inbox.claim)

    def claim_key(self) -> str:
        return str(self)

    def open_binary(self):
        return open(self, "rb")  # noqa: SIM115 - closed by the caller

    def arrow_path(self) -> str | None:
        """pyarrow takes paths as UTF-8 only: a name that is not (a Latin-1
        ``café.parquet`` in labeled/) is opened by Python."""
        try:
            str(self).encode("utf-8")
        except UnicodeEncodeError:
            return None
        return str(self)

    def identity(self) -> Identity:
        """The file's inode, size and mtime (of a link itself, never its target)."""
        stat = os.stat(self, follow_symlinks=False)
        return Identity(stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def local_file(self, *name: str) -> LocalPath:
        return self

    def scan(self) -> list[Entry]:
        """One ``os.scandir`` and an ``lstat`` per child (links not followed); a child
        gone between the listing and its ``lstat`` is left out."""
        try:
            with os.scandir(self) as children:
                return [entry for child in children
                        if (entry := local_entry(child)) is not None]
        except FileNotFoundError:
            return []

    def subfolders(self) -> list[LocalPath]:
        """From the listing's file types alone, with no ``stat`` per entry."""
        try:
            with os.scandir(self) as children:
                return [LocalPath(child.path) for child in children
                        if child.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def files_named(self, match: Callable[[str], bool]) -> list[LocalPath]:
        try:
            with os.scandir(self) as children:
                return [LocalPath(child.path) for child in children
                        if match(child.name) and child.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def write_bytes_atomic(self, data: bytes) -> LocalPath:
        """A temporary renamed onto this path (``atomic_path``)."""
        with atomic_path(self) as temp:
            temp.write_bytes(data)
        return self

    def create_new(self, data: bytes) -> bool:
        """A whole temporary taken under this name with a hard link, which never
        replaces another's file."""
        self.parent.mkdir(parents=True, exist_ok=True)
        temp = self.temp_beside()
        with _writing_in(self.parent):
            temp.write_bytes(data)
            try:
                os.link(temp, self)
                return True
            except FileExistsError:
                return False
            finally:
                temp.unlink()

    def parquet_sink(self, schema: pa.Schema) -> ParquetSink:
        return _DurableSink(self, schema)

    def publish(self, final: Path) -> LocalPath:
        """A rename on one file system, made durable."""
        os.replace(self, final)
        fsync_folder(final.parent)
        return LocalPath(final)

    def move_keeping(self, target_dir: Path, name: str) -> LocalPath:
        """The name is taken with a hard link, which fails rather than replaces, so two
        runs cannot pick the same name. Across file systems (an inbox on its own mount)
        see ``_move_across``."""
        target_dir = LocalPath(target_dir)
        target_dir.mkdir(parents=True, exist_ok=True)
        cleaned = safe_name(name)
        if os.lstat(self).st_dev != os.stat(target_dir).st_dev:
            return _move_across(self, target_dir, cleaned)
        for target in candidates(target_dir, cleaned):
            try:
                os.link(self, target, follow_symlinks=False)  # a link is moved, never its target
            except FileExistsError:
                if os.path.samestat(os.lstat(self), os.lstat(target)):
                    os.unlink(self)  # linked by a move killed before its unlink: finish it
                    fsync_folder(target_dir)
                    return target
                continue
            except PermissionError:  # a file system without hard links: check, then rename
                if target.exists():
                    continue
                os.replace(self, target)
                fsync_folder(target_dir)
                return target
            os.unlink(self)
            fsync_folder(target_dir)
            return target
        raise names_exhausted(target_dir, cleaned)

    def remove_dead_temporaries(self) -> list[LocalPath]:
        """Taken with the folder's lock held exclusively (never waiting): no live writer
        is between its write and its rename there, so each temporary found is a dead
        writer's. A folder a live writer is writing in is left for a later run; a
        missing folder, or one that cannot be locked, is left alone. Never follows a
        link."""
        try:
            fd = os.open(self, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:  # missing, not a folder, a link
            return []
        removed: list[LocalPath] = []
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return []
            with os.scandir(fd) as children:
                names = [child.name for child in children
                         if is_temporary(child.name) and not child.is_dir(follow_symlinks=False)]
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
                    removed.append(self / name)
            if removed:
                fsync_folder(self)
            return removed
        finally:
            os.close(fd)

    def remove_empty_folder(self) -> bool:
        try:
            self.rmdir()
        except OSError:
            return False  # not empty, gone already, or not a folder
        return True

    def remove_tree(self) -> None:
        shutil.rmtree(self, ignore_errors=True)

    def check_reachable(self) -> None:
        from tasks.errors import DataRootMissingError

        if not self.is_dir():
            raise DataRootMissingError(
                f"no data root at {self}; check --data-dir / REVIEWFLOW_DATA_DIR, or create "
                f"one with `reviewflow init {self}`")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[LocalPath]:
    """Yield a temporary path beside ``final``; on success rename it onto ``final``.
    The folder's shared lock is held meanwhile (``remove_dead_temporaries``)."""
    final = LocalPath(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.temp_beside()
    with _writing_in(final.parent):
        try:
            yield temp
            with open(temp, "rb+") as written:
                os.fsync(written.fileno())
            failpoint("storage:written", final.name)
            os.replace(temp, final)
            fsync_folder(final.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _move_across(source: LocalPath, target_dir: LocalPath, cleaned: str) -> LocalPath:
    """``move_keeping`` onto another file system, where no rename or link reaches:
    copy to a temporary beside the target, fsync, take the name with a hard link (never
    replacing), then remove the source. A kill at any point leaves the file whole in one
    place or both, never in neither; a later move of the same file that finds its
    complete copy already there (same bytes, a name of this series) only removes the
    source, so a move killed after its copy does not leave two copies."""
    if os.path.islink(source):  # a link is moved as a link, never its target
        copy = lambda temp: os.symlink(os.readlink(source), temp)  # noqa: E731
    else:
        copy = lambda temp: _copy_durably(source, temp)  # noqa: E731
    for target in candidates(target_dir, cleaned):
        if os.path.lexists(target):
            if not os.path.islink(source) and _same_bytes(source, target):
                break
            continue
        temp = target.temp_beside()
        with _writing_in(target_dir):  # the copy's temporary: see remove_dead_temporaries
            try:
                copy(temp)
                failpoint("storage:written", target.name)
                try:
                    os.link(temp, target, follow_symlinks=False)
                except FileExistsError:
                    continue
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        fsync_folder(target_dir)
        break
    else:
        raise names_exhausted(target_dir, cleaned)
    failpoint("storage:copied-across")
    os.unlink(source)
    fsync_folder(source.parent)
    return target


def _copy_durably(source: Path, temp: Path) -> None:
    with open(source, "rb") as reading, open(temp, "xb") as writing:
        shutil.copyfileobj(reading, writing, 1 << 20)
        writing.flush()
        os.fsync(writing.fileno())
    shutil.copystat(source, temp)


def _same_bytes(source: LocalPath, target: LocalPath) -> bool:
    try:
        if os.path.islink(target) or os.path.getsize(source) != os.path.getsize(target):
            return False
        return source.sha256() == target.sha256()
    except OSError:
        return False


def located(path: Location | os.PathLike | str) -> Location:
    """``path`` as a ``Location``: either implementation as it is, a plain ``Path`` as a
    ``LocalPath`` (``as_location`` makes the ``ObjectPath`` of a URL)."""
    return path if isinstance(path, Location) else LocalPath(path)


class StagedParquet:
    """A Parquet file written batch by batch and published only by ``commit``.

    Nothing is created until the first batch (or ``commit`` of an empty part, which
    writes nothing and returns None). ``finish`` closes the temporary file without
    publishing it, for a caller that publishes several parts together (``publish``).
    On object storage the temporary object is streamed (multipart) and becomes
    visible, under its dot-name, only when complete.
    """

    def __init__(self, final: Location, schema: pa.Schema):
        self.final, self.schema = located(final), schema
        self.rows = 0
        self._temp: Location | None = None
        self._sink: ParquetSink | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._sink is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._temp = self.final.temp_beside()
            self._sink = self._temp.parquet_sink(self.schema)
        self._sink.writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def finish(self) -> Location | None:
        """Close the temporary file, durable, and return it (None if nothing was written)."""
        if self._sink is None:
            return None
        self._sink.close()
        self._sink = None
        failpoint("storage:staged", self.final.name)
        return self._temp

    def commit(self) -> Location | None:
        temp = self.finish()
        return None if temp is None else temp.publish(self.final)

    def abort(self) -> None:
        if self._sink is not None:
            with contextlib.suppress(Exception):
                self._sink.discard()
            self._sink = None
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._temp.unlink()


# The operations as functions, for callers holding a location of either kind or a Path.
def open_binary(path: Location):
    """A binary read stream of a local file or an object."""
    return located(path).open_binary()


def file_sha256(path: Location, chunk: int = 1 << 20) -> str:
    return located(path).sha256(chunk)


def write_bytes_atomic(final: Location, data: bytes) -> Location:
    """Whole or not at all: one PUT on object storage, locally ``atomic_path``."""
    return located(final).write_bytes_atomic(data)


def write_json_atomic(final: Location, payload: dict) -> Location:
    return located(final).write_json_atomic(payload)


def write_parquet_atomic(final: Location, table: pa.Table) -> Location:
    return located(final).write_parquet_atomic(table)


def publish(temp: Location, final: Location) -> Location:
    """Move ``temp`` onto ``final``: a durable rename, or a copy and a delete."""
    return located(temp).publish(final)


def move_file_keeping(source: Location, target_dir: Location, name: str) -> Location:
    """Move ``source`` into ``target_dir`` as ``name``, or ``name~2``, … when that is taken
    (``Location.move_keeping``): for quarantine and the archive, where two inputs can
    clean to one name (``notes?.txt``, ``notes*.txt``) or arrive under one name."""
    return located(source).move_keeping(located(target_dir), name)


def remove_dead_temporaries(folder: Location) -> list[Location]:
    """The temporaries of dead one-shot writers in ``folder``, removed."""
    return located(folder).remove_dead_temporaries()

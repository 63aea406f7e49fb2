"""File operations with crash-safe semantics: hashing, atomic writes, moves, locks.

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

The same functions take an ``ObjectPath`` (``s3://...``, see ``tasks.storage.objects``).
There a "rename" is a server-side copy and a delete, and each object PUT or copy is
atomic, so a part still appears whole or not at all; what a crash between copy and
delete leaves behind is handled by deterministic names (see docs/scaling-out.md).
Locks are always local: ``exclusive_lock`` takes a local path only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.failpoints import failpoint
from tasks.storage import objects as objectstore
from tasks.storage.objects import ObjectPath, is_remote

Location = Path | ObjectPath


def open_binary(path: Location):
    """A binary read stream of a local file or an object."""
    return path.open("rb") if is_remote(path) else open(path, "rb")  # noqa: SIM115


def file_sha256(path: Location, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open_binary(path) as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# Room under the usual 255-byte name limit for what is added beside a stored file:
# ".reason.json" and a temporary's ".<name>.<8 hex>.tmp".
MAX_NAME_BYTES = 200


def safe_name(name: str) -> str:
    """A file name that cannot leave its folder or hide: no separators, no leading dots,
    at most ``MAX_NAME_BYTES`` bytes in UTF-8 (the end of the stem is cut, the extension
    kept), so a name that was legal in the inbox still fits with a prefix added."""
    cleaned = re.sub(r"[^\w.\- ]", "_", name.replace("..", "_")).strip(" .") or "unnamed"
    if len(cleaned.encode()) <= MAX_NAME_BYTES:
        return cleaned
    stem, dot, extension = cleaned.rpartition(".")
    if not dot or len(extension.encode()) > 16:
        stem, extension = cleaned, ""
    room = MAX_NAME_BYTES - len(extension.encode()) - (1 if extension else 0)
    stem = stem.encode()[:room].decode(errors="ignore").rstrip(" .")
    return f"{stem}.{extension}" if extension else stem


# Tried in order on the bytes of a file name that is not UTF-8 (an old uploader's
# Latin-1 ``café.csv``); latin-1 decodes any byte, so it always ends the search.
NAME_ENCODINGS = ("utf-8", "cp1252", "latin-1")


def readable_name(name: str) -> str:
    """``name`` as text every consumer can write (pyarrow, SQLite, JSON, logs): a name
    that is not UTF-8 (Python holds its bytes as surrogate escapes) is decoded as
    cp1252 or latin-1, and control characters (a newline, a tab, C1 codes) become
    ``_``. A valid name without control characters is returned unchanged."""
    raw = os.fsencode(name)
    for encoding in NAME_ENCODINGS:
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    return "".join("_" if unicodedata.category(c) in ("Cc", "Cs") else c for c in text)


def fsync_folder(folder: Path) -> None:
    """Make what was renamed into or out of ``folder`` durable (an fsync of the folder
    itself); a file system that cannot fsync a folder is left as it is."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_beside(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")


# What ``_temp_beside`` names: ``.<name>.<8 hex>.tmp``.
TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def is_temporary(name: str) -> bool:
    """True for a temporary's name (``_temp_beside``)."""
    return TEMPORARY_NAME.fullmatch(name) is not None


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


def remove_dead_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries of one-shot writes in ``folder`` whose writers died.

    Taken with the folder's lock held exclusively (never waiting): no live writer is
    between its write and its rename there, so each temporary found is a dead
    writer's. A folder a live writer is writing in is left for a later run; a missing
    folder, or one that cannot be locked, is left alone. Never follows a link."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:  # missing, not a folder, a link
        return []
    removed: list[Path] = []
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
                removed.append(folder / name)
        if removed:
            fsync_folder(folder)
        return removed
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success rename it onto ``final``.
    The folder's shared lock is held meanwhile (``remove_dead_temporaries``)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_beside(final)
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


def write_bytes_atomic(final: Location, data: bytes) -> Location:
    """Write a small file whole or not at all: on object storage one PUT under its
    final name (atomic there, so no temporary is left by a kill), locally a temporary
    renamed onto ``final`` (``atomic_path``)."""
    if is_remote(final):
        final.write_bytes(data)
        failpoint("storage:written", final.name)
        return final
    with atomic_path(final) as temp:
        temp.write_bytes(data)
    return final


def write_json_atomic(final: Location, payload: dict) -> Location:
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    return write_bytes_atomic(final, text.encode("utf-8"))


def write_parquet_atomic(final: Location, table: pa.Table) -> Location:
    """A small table (a monitoring row) as one Parquet file, with ``write_bytes_atomic``."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return write_bytes_atomic(final, sink.getvalue().to_pybytes())


def publish(temp: Location, final: Location) -> Location:
    """Move ``temp`` onto ``final``: a rename on one file system (made durable), a copy
    then a delete on object storage (see ``StagedParquet.finish``)."""
    if is_remote(temp) or is_remote(final):
        objectstore.replace(temp, final)
    else:
        os.replace(temp, final)
        fsync_folder(final.parent)
    return final


class StagedParquet:
    """A Parquet file written batch by batch and published only by ``commit``.

    Nothing is created until the first batch (or ``commit`` of an empty part, which
    writes nothing and returns None). ``finish`` closes the temporary file without
    publishing it, for a caller that publishes several parts together (``publish``).
    On object storage the temporary object is streamed (multipart) and becomes
    visible, under its dot-name, only when complete.
    """

    def __init__(self, final: Location, schema: pa.Schema):
        self.final, self.schema = final, schema
        self.rows = 0
        self._temp: Location | None = None
        self._stream = None  # the object being uploaded (object storage only)
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._temp = _temp_beside(self.final)
            if is_remote(self._temp):
                self._stream = self._temp.open("wb")
                self._writer = pq.ParquetWriter(self._stream, self.schema, compression="zstd")
            else:
                self._writer = pq.ParquetWriter(self._temp, self.schema, compression="zstd")
        self._writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def finish(self) -> Location | None:
        """Close the temporary file, durable, and return it (None if nothing was written)."""
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        if self._stream is not None:
            self._stream.close()  # completes the upload: the object now exists whole
            self._stream = None
        else:
            with open(self._temp, "rb+") as written:
                os.fsync(written.fileno())
        failpoint("storage:staged", self.final.name)
        return self._temp

    def commit(self) -> Location | None:
        temp = self.finish()
        return None if temp is None else publish(temp, self.final)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.discard()  # abandons a multipart upload instead of completing it
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._temp.unlink()


def move_file_keeping(source: Location, target_dir: Location, name: str) -> Location:
    """Move ``source`` into ``target_dir`` as ``name``, or ``name`` with ``~2``, ``~3``, …
    before its extension when that is taken: never replaces a file already there.

    For quarantine and the archive, where two inputs can clean to one name
    (``notes?.txt``, ``notes*.txt``) or arrive under one name on one day. On a local disk the name is
    taken with a hard link, which fails rather than replaces, so two runs cannot pick
    the same name; on object storage a name is checked, then written (no such primitive).
    Across file systems (an inbox on its own mount) see ``_move_across``.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    cleaned = safe_name(name)
    if not is_remote(source) and not is_remote(target_dir) and _other_device(source, target_dir):
        return _move_across(source, target_dir, cleaned)
    for target in _candidates(target_dir, cleaned):
        if is_remote(source) or is_remote(target):
            if not target.exists():
                return publish(source, target)
            if _same_object(source, target):  # a killed move's copy: finish that move
                source.unlink(missing_ok=True)
                return target
            continue
        try:
            os.link(source, target, follow_symlinks=False)  # a link is moved, never its target
        except FileExistsError:
            if os.path.samestat(os.lstat(source), os.lstat(target)):
                os.unlink(source)  # linked by a move killed before its unlink: finish it
                fsync_folder(target_dir)
                return target
            continue
        except PermissionError:  # a file system without hard links: check, then rename
            if target.exists():
                continue
            os.replace(source, target)
            fsync_folder(target_dir)
            return target
        os.unlink(source)
        fsync_folder(target_dir)
        return target
    raise FileExistsError(f"{target_dir} holds 10,000 files named like {cleaned}")


def _same_object(source, target) -> bool:
    """True when ``target`` is a whole copy of ``source`` (same size and ETag): what a
    move killed between its copy and its delete leaves, so the file is archived once."""
    if not (is_remote(source) and is_remote(target)):
        return False
    try:
        etag = target.etag()
        return (etag is not None and source.etag() == etag
                and source.stat().st_size == target.stat().st_size)
    except FileNotFoundError:
        return False


def _candidates(target_dir: Location, cleaned: str) -> Iterator[Location]:
    stem, dot, extension = cleaned.partition(".")
    for attempt in range(1, 10_000):
        yield target_dir / (cleaned if attempt == 1 else f"{stem}~{attempt}{dot}{extension}")


def _other_device(source: Path, target_dir: Path) -> bool:
    return os.lstat(source).st_dev != os.stat(target_dir).st_dev


def _move_across(source: Path, target_dir: Path, cleaned: str) -> Path:
    """``move_file_keeping`` onto another file system, where no rename or link reaches:
    copy to a temporary beside the target, fsync, take the name with a hard link (never
    replacing), then remove the source. A kill at any point leaves the file whole in one
    place or both, never in neither; a later move of the same file that finds its
    complete copy already there (same bytes, a name of this series) only removes the
    source, so a move killed after its copy does not leave two copies."""
    if os.path.islink(source):  # a link is moved as a link, never its target
        copy = lambda temp: os.symlink(os.readlink(source), temp)  # noqa: E731
    else:
        copy = lambda temp: _copy_durably(source, temp)  # noqa: E731
    for target in _candidates(target_dir, cleaned):
        if os.path.lexists(target):
            if not os.path.islink(source) and _same_bytes(source, target):
                break
            continue
        temp = _temp_beside(target)
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
        raise FileExistsError(f"{target_dir} holds 10,000 files named like {cleaned}")
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


def _same_bytes(source: Path, target: Path) -> bool:
    try:
        if os.path.islink(target) or os.path.getsize(source) != os.path.getsize(target):
            return False
        return file_sha256(source) == file_sha256(target)
    except OSError:
        return False


class LockHeldError(Exception):
    """Another process holds the lock."""


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, wait: bool = False) -> Iterator[None]:
    """An advisory lock released when the holder exits, even when killed with SIGKILL."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise LockHeldError(f"{lock_file} is held by {holder}") from exc
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

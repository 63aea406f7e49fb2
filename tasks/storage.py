"""File operations with crash-safe semantics: hashing, atomic writes, moves, locks.

A file reviewflow publishes (a Parquet part, a pointer, a reason file) is written
under a temporary dot-name in its final folder, flushed to disk and renamed into
place, so readers see either the whole file or nothing. Temporary names start with a
dot and end in ``.tmp``: pyarrow, pandas and DuckDB globs of ``*.parquet`` never see them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
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




def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, or ValueError if it would lie outside ``root``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write {path}: it is outside the data root {root}")
    return resolved


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_beside(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success rename it onto ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_beside(final)
    try:
        yield temp
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temp, final)
        _fsync_dir(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def write_json_atomic(final: Path, payload: dict) -> Path:
    with atomic_path(final) as temp:
        temp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n",
                        encoding="utf-8")
    return final


class StagedParquet:
    """A Parquet file written batch by batch and published only by ``commit``.

    Nothing is created until the first batch (or ``commit`` of an empty part, which
    writes nothing and returns None).
    """

    def __init__(self, final: Path, schema: pa.Schema):
        self.final, self.schema = final, schema
        self.rows = 0
        self._temp: Path | None = None
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._temp = _temp_beside(self.final)
            self._writer = pq.ParquetWriter(self._temp, self.schema, compression="zstd")
        self._writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def commit(self) -> Path | None:
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        with open(self._temp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(self._temp, self.final)
        _fsync_dir(self.final.parent)
        return self.final

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._temp.unlink()


def move_file(source: Path, target_dir: Path, name: str) -> Path:
    """Move ``source`` into ``target_dir`` as ``name`` (a rename on one filesystem)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / safe_name(name)
    os.replace(source, target)
    _fsync_dir(target_dir)
    return target


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

"""The storage interface: what reviewflow does with a file or folder, wherever it lives.

``Location`` is the abstract class both implementations derive from: ``LocalPath``
(``tasks.storage.local``, a ``pathlib.PosixPath``) and ``ObjectPath``
(``tasks.storage.objects``, a key behind an fsspec URL). Each implements every operation
below as a method; where the two stores differ in what they can do at all, a capability
(``supports_locks``, ``supports_links``, ``supports_claims``) says so, and callers ask it
instead of asking which class they hold. ``tasks.storage.objects.as_location`` makes one
from a string or path, deciding once.

What both share (temporary names, ``safe_name``, the names ``move_keeping`` tries, the
staged Parquet part, the JSON and Parquet encodings of an atomic write) lives here.
"""

from __future__ import annotations

import abc
import json
import os
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa
import pyarrow.parquet as pq


class EntryKind(StrEnum):
    FILE = "file"
    FOLDER = "folder"  # a local folder, or a key prefix with objects under it
    LINK = "link"      # local only: object stores have no links
    OTHER = "other"    # local only: a FIFO, a socket, a device


@dataclass(frozen=True)
class Entry:
    """A child of a folder as its listing described it: its type, size and modification
    time need no further request."""

    path: Location
    kind: EntryKind
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Identity:
    """What changes when a local file's bytes change in place: an append, a rewrite."""

    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ObjectVersion:
    """What changes when an object is overwritten: its ETag (``Identity`` for objects)."""

    etag: str | None


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


# What ``Location.temp_beside`` names: ``.<name>.<8 hex>.tmp``.
TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def is_temporary(name: str) -> bool:
    """True for a temporary's name (``Location.temp_beside``)."""
    return TEMPORARY_NAME.fullmatch(name) is not None


def candidates(target_dir: Location, cleaned: str) -> Iterator[Location]:
    """The names ``move_keeping`` tries: ``name``, then ``name`` with ``~2``, ``~3``, …
    before its extension."""
    stem, dot, extension = cleaned.partition(".")
    for attempt in range(1, 10_000):
        yield target_dir / (cleaned if attempt == 1 else f"{stem}~{attempt}{dot}{extension}")


def names_exhausted(target_dir: Location, cleaned: str) -> FileExistsError:
    return FileExistsError(f"{target_dir} holds 10,000 files named like {cleaned}")


class ParquetSink(abc.ABC):
    """A Parquet file being written to a temporary (``Location.parquet_sink``)."""

    writer: pq.ParquetWriter

    @abc.abstractmethod
    def close(self) -> None:
        """Complete the file, durable: it exists whole under its temporary name."""

    @abc.abstractmethod
    def discard(self) -> None:
        """Abandon the file; what was written is not completed (the caller removes it)."""


class Location(abc.ABC):
    """A file or folder of the data contract, on a local disk or in an object store."""

    __slots__ = ()

    # ---------------------------------------------------------------- capabilities
    # Lock files (``flock``) and SQLite can live here: a file system, not a bucket.
    supports_locks: bool = False
    # A folder here can be a symbolic link (so a run must check it leads nowhere else).
    supports_links: bool = False

    @property
    @abc.abstractmethod
    def supports_claims(self) -> bool:
        """Whether a run can take a file here for itself before hashing it (a rename
        locally, a conditional copy and delete on S3 and its peers)."""

    @abc.abstractmethod
    def claim_key(self) -> str:
        """What names this file for ``RunState.claim_lock``: its path, or bucket and key."""

    # ---------------------------------------------------------------- reading
    @abc.abstractmethod
    def open_binary(self):
        """A binary read stream."""

    def sha256(self, chunk: int = 1 << 20) -> str:
        import hashlib

        digest = hashlib.sha256()
        with self.open_binary() as stream:
            while block := stream.read(chunk):
                digest.update(block)
        return digest.hexdigest()

    @abc.abstractmethod
    def arrow_path(self) -> str | None:
        """A path pyarrow opens itself (native reads, no Python in between), or None:
        read through ``open_binary`` then."""

    @abc.abstractmethod
    def identity(self) -> Identity | ObjectVersion:
        """What changes when the file changes in place (change detection of a claim)."""

    @abc.abstractmethod
    def local_file(self, *name: str) -> Location:
        """A local file with this file's bytes, for readers that take only those (Keras):
        itself, or a copy of an object that never changes, made once under ``name``."""

    # ---------------------------------------------------------------- listing
    @abc.abstractmethod
    def scan(self) -> list[Entry]:
        """The children with their type, size and time, in no order; a missing folder is
        empty."""

    @abc.abstractmethod
    def subfolders(self) -> list[Location]:
        """The folders right under this one (links not followed); none if it is missing."""

    @abc.abstractmethod
    def files_named(self, match: Callable[[str], bool]) -> list[Location]:
        """The regular files right under this one whose names ``match`` (names matched
        first, so a big folder costs its listing and nothing more)."""

    def files_starting_with(self, prefixes: tuple[str, ...]) -> list[Location]:
        """The regular files right under this one whose names start with one of
        ``prefixes``. Where the store filters a listing by prefix (S3, Google Cloud
        Storage) only those names are listed, so a folder of many other files costs no
        more than an empty one; elsewhere the folder is listed whole."""
        return self.files_named(lambda name: name.startswith(prefixes))

    # ---------------------------------------------------------------- writing
    @abc.abstractmethod
    def write_bytes_atomic(self, data: bytes) -> Location:
        """Write a small file whole or not at all; a kill leaves no half file."""

    def write_json_atomic(self, payload: dict) -> Location:
        text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
        return self.write_bytes_atomic(text.encode("utf-8"))

    def write_parquet_atomic(self, table: pa.Table) -> Location:
        """A small table (a monitoring row) as one Parquet file (``write_bytes_atomic``)."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return self.write_bytes_atomic(sink.getvalue().to_pybytes())

    @abc.abstractmethod
    def create_new(self, data: bytes) -> bool:
        """Write this file whole only if nothing is here yet; False if something was."""

    def temp_beside(self) -> Location:
        """A temporary's name beside this file: ``.<name>.<8 hex>.tmp``."""
        return self.with_name(f".{self.name}.{uuid.uuid4().hex[:8]}.tmp")

    @abc.abstractmethod
    def parquet_sink(self, schema: pa.Schema) -> ParquetSink:
        """A Parquet file written batch by batch at this (temporary) name."""

    @abc.abstractmethod
    def publish(self, final: Location) -> Location:
        """Move this (temporary) file onto ``final``: a durable rename locally, a copy
        then a delete on object storage."""

    @abc.abstractmethod
    def move_keeping(self, target_dir: Location, name: str) -> Location:
        """Move this file into ``target_dir`` as ``name``, or ``name`` with ``~2``, ``~3``, …
        when that is taken: never replaces a file already there."""

    # ---------------------------------------------------------------- removing
    @abc.abstractmethod
    def remove_dead_temporaries(self) -> list[Location]:
        """Remove the temporaries of one-shot writes in this folder whose writers died."""

    @abc.abstractmethod
    def remove_empty_folder(self) -> bool:
        """Remove this folder if it is empty; False if it is not (or cannot be)."""

    @abc.abstractmethod
    def remove_tree(self) -> None:
        """Remove everything under this folder."""

    # ---------------------------------------------------------------- the store
    @abc.abstractmethod
    def check_reachable(self) -> None:
        """Raise a one-line error if this data root cannot be used: a local folder that is
        missing, a store that cannot be reached or a bucket that does not exist."""

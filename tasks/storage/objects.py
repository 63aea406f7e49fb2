"""Folders of the data contract on object storage: ``s3://bucket/prefix`` and other fsspec URLs.

``ObjectPath`` is the small part of ``pathlib.Path``'s interface that reviewflow uses
(``/``, ``name``, ``suffixes``, ``exists``, ``iterdir``, ``glob``, ``stat``, ``open``,
``read_text``, ``unlink``, ...), implemented with fsspec. Code written against that
interface works on a local ``Path`` and on an ``ObjectPath`` alike; where the two must
differ (renames, fsync, locks), ``tasks.storage.local`` branches on ``is_remote``.
``scan`` lists a folder of either kind with each child's type, size and time, from the
listing itself (``Entry``).

A key is taken literally: ``[``, ``]``, ``*`` and ``?`` are ordinary characters in an
object's name (``good[1].csv``), while fsspec's ``copy``, ``rm``, ``cat``, ``get``,
``put`` and ``glob`` read them as a pattern. Only the single-object calls (``info``,
``cp_file``, ``rm_file``, ``cat_file``, ``cat_ranges``, ``pipe_file``, ``get_file``,
``put_file``, ``open``) and listings (``ls``, ``find``) take a key here; a pattern
(``glob``) is matched against listed names, never sent to fsspec.

An ``ObjectPath`` holds only its URL and the fsspec storage options, so it pickles to
Dask workers, which open their own connection (fsspec caches one per set of options).

Object stores have no rename: ``replace`` is a server-side copy and a delete. What
reviewflow relies on instead is that an object PUT (or copy) is atomic: a reader sees
the whole object or none of it. See docs/scaling-out.md for how the exactly-once
guarantee is kept on that basis.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat as stat_mode
import tempfile
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

from tasks.settings import is_url, local_path

# Protocols whose "folders" are only key prefixes: nothing to create, nothing to fsync.
OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"}


def as_location(value: str | os.PathLike, storage_options: dict[str, Any] | None = None
                ) -> Path | ObjectPath:
    """A local ``Path`` (``~`` expanded, ``file://`` stripped) or an ``ObjectPath`` for a URL."""
    if is_url(value):
        return ObjectPath(str(value), storage_options)
    return local_path(value)


def is_remote(path: Path | ObjectPath) -> bool:
    return isinstance(path, ObjectPath)


class EntryKind(StrEnum):
    FILE = "file"
    FOLDER = "folder"  # a local folder, or a key prefix with objects under it
    LINK = "link"      # local only: object stores have no links
    OTHER = "other"    # local only: a FIFO, a socket, a device


@dataclass(frozen=True)
class Entry:
    """A child of a folder as its listing described it: its type, size and modification
    time need no further request."""

    path: Path | ObjectPath
    kind: EntryKind
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name


def scan(folder: Path | ObjectPath) -> list[Entry]:
    """The children of ``folder`` with their type, size and time, in no order: one
    ``os.scandir`` (and an ``lstat`` per child, links not followed) locally, the
    listing's own answers on object storage (``ObjectPath.scan``). A missing folder is
    empty; a child gone between the listing and its ``lstat`` is left out."""
    if isinstance(folder, ObjectPath):
        return folder.scan()
    try:
        with os.scandir(folder) as children:
            return [entry for child in children if (entry := local_entry(child)) is not None]
    except FileNotFoundError:
        return []


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
    return Entry(Path(child.path), kind, info.st_size, info.st_mtime)


class ObjectPath:
    """A file or folder behind an fsspec URL, with the pathlib methods reviewflow uses."""

    __slots__ = ("url", "storage_options")

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        protocol, sep, rest = str(url).partition("://")
        if not sep or not rest.strip("/"):
            raise ValueError(f"{url!r} is not a URL with a bucket or host (s3://bucket/prefix)")
        self.url = f"{protocol}://{rest.strip('/')}"
        self.storage_options = dict(storage_options or {})

    # ------------------------------------------------------------------ identity
    def __getstate__(self):
        return self.url, self.storage_options

    def __setstate__(self, state) -> None:
        self.url, self.storage_options = state

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: ObjectPath) -> bool:
        return self.url < other.url

    @property
    def protocol(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def fs(self):
        """The fsspec file system (one cached instance per protocol and options).

        Without a listings cache: Dask workers and other runs write to the same prefixes,
        so a listing remembered by this process would hide their objects (s3fs would
        then answer FileNotFoundError for a part a worker has just written).
        """
        import fsspec

        options = dict(self.storage_options)
        if self.protocol in OBJECT_STORES:
            options.setdefault("use_listings_cache", False)
        return fsspec.filesystem(self.protocol, **options)

    # ------------------------------------------------------------------ names
    def __truediv__(self, name: str) -> ObjectPath:
        return ObjectPath(f"{self.url}/{str(name).strip('/')}", self.storage_options)

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def suffixes(self) -> list[str]:
        return PurePosixPath(self.name).suffixes

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> ObjectPath:
        head, _, _ = self.url.rpartition("/")
        if head.endswith(":/"):  # the bucket itself
            return self
        return ObjectPath(head, self.storage_options)

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        prefix = other.url.rstrip("/") + "/"
        if not self.url.startswith(prefix):
            raise ValueError(f"{self.url} is not under {other.url}")
        return PurePosixPath(self.url[len(prefix):])

    def resolve(self) -> ObjectPath:
        return self

    def expanduser(self) -> ObjectPath:
        return self

    # ------------------------------------------------------------------ queries
    def _fresh(self):
        """The file system with this path's listing cache dropped: another process
        (a Dask worker, another run) may have written here since it was listed."""
        fs = self.fs
        with contextlib.suppress(Exception):
            fs.invalidate_cache(self.url)
            fs.invalidate_cache(self.parent.url)
        return fs

    def exists(self) -> bool:
        return self._fresh().exists(self.url)

    def is_file(self) -> bool:
        return self._fresh().isfile(self.url)

    def is_dir(self) -> bool:
        return self._fresh().isdir(self.url)

    def is_symlink(self) -> bool:
        return False  # object stores have no links

    def stat(self) -> SimpleNamespace:
        """``st_size`` and ``st_mtime`` (seconds since the epoch) of an object."""
        info = self._fresh().info(self.url)
        return SimpleNamespace(st_size=int(info.get("size") or 0), st_mtime=_mtime(info))

    def etag(self) -> str | None:
        """The object's ETag (its version's fingerprint), or None where the store has none."""
        return self.version()[0]

    def version(self) -> tuple[str | None, int]:
        """The object's ETag and size, from one request."""
        info = self._fresh().info(self.url)
        value = info.get("ETag") or info.get("etag") or info.get("md5")
        return (str(value).strip('"') if value else None), int(info.get("size") or 0)

    def iterdir(self):
        for entry in sorted(self.scan(), key=lambda e: e.name):
            yield entry.path

    def scan(self) -> list[Entry]:
        """The objects and sub-prefixes right under this prefix, with what the listing
        says of each (size, last-modified time): one request per 1,000 children on S3
        (``ls`` with details, paginated by s3fs), none per child."""
        try:
            listed = self._fresh().ls(self.url, detail=True)
        except FileNotFoundError:
            return []
        return [entry for info in listed if (entry := self._entry(info))]

    def scan_tree(self) -> list[Entry]:
        """Every object below this prefix, at any depth, with what the listing says of
        it: one request per 1,000 objects on S3 (``find``: a listing without delimiter)."""
        found = self._fresh().find(self.url, detail=True)
        return [entry for info in found.values()
                if (entry := self._entry(info))]

    def _entry(self, info: dict) -> Entry | None:
        """The ``Entry`` of one listed child; None for this path itself (some stores list
        the folder in it) or anything not below it."""
        key = str(info["name"]).split("://", 1)[-1].rstrip("/")
        if not key.startswith(self.url.split("://", 1)[1] + "/"):
            return None
        kind = EntryKind.FOLDER if info.get("type") == "directory" else EntryKind.FILE
        return Entry(ObjectPath(f"{self.protocol}://{key}", self.storage_options), kind,
                     int(info.get("size") or 0), _mtime(info))

    def glob(self, pattern: str):
        """What lies below this prefix and matches ``pattern`` one ``/``-separated level
        at a time (``*``, ``?`` and ``[...]`` within a level, as ``fnmatch``): each level
        is a listing of the folders the one before matched. This path's own key is never
        a pattern, whatever it holds (a root under ``team[1]/``)."""
        levels = pattern.split("/")
        if "**" in levels:
            raise ValueError(f"{pattern!r}: ObjectPath.glob matches one level at a time; "
                             "use rglob for any depth")
        matched = [self]
        for depth, level in enumerate(levels):
            last = depth == len(levels) - 1
            matched = [entry.path for folder in matched for entry in folder.scan()
                       if fnmatchcase(entry.name, level)
                       and (last or entry.kind is EntryKind.FOLDER)]
        yield from sorted(matched)

    def rglob(self, pattern: str):
        """Every object below this prefix whose name matches ``pattern``."""
        base = self.url.split("://", 1)[1] + "/"
        for entry in sorted(self.scan_tree(), key=lambda e: e.path.url):
            key = entry.path.url.split("://", 1)[1]
            if PurePosixPath(key[len(base):]).match(pattern):
                yield entry.path

    # ------------------------------------------------------------------ content
    def open(self, mode: str = "rb", **kwargs):
        return self.fs.open(self.url, mode, **kwargs)

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.url)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        self.fs.pipe_file(self.url, data)  # one PUT: the object appears whole
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        if self.protocol not in OBJECT_STORES:  # sftp, hdfs, ...: real folders
            self.fs.makedirs(self.url, exist_ok=True)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.url)
        except FileNotFoundError:
            if not missing_ok:
                raise


def replace(source: ObjectPath, target: ObjectPath) -> None:
    """Copy ``source`` onto ``target`` server-side, then delete ``source``.

    Not atomic as a pair (there is no rename), but each step is: ``target`` appears
    whole, and a crash between the steps leaves a copy that the caller's commit protocol
    tolerates (deterministic names are overwritten, temporaries are swept).
    """
    fs = source.fs
    with contextlib.suppress(Exception):
        fs.invalidate_cache(source.parent.url)
    fs.cp_file(source.url, target.url)  # one object: ``copy`` would expand a glob
    fs.rm_file(source.url)
    with contextlib.suppress(Exception):
        fs.invalidate_cache(target.parent.url)
        fs.invalidate_cache(source.parent.url)


def read_all(paths: list[ObjectPath]) -> list[bytes]:
    """The bytes of each object, in order, fetched concurrently; each key taken
    literally (fsspec's ``cat`` of a list expands the keys as globs)."""
    if not paths:
        return []
    return paths[0].fs.cat_ranges([p.url for p in paths], None, None, on_error="raise")


def remove_tree(prefix: ObjectPath) -> None:
    """Delete every object under ``prefix``, each by its own key (fsspec's recursive
    ``rm`` expands a key holding ``[``, ``*`` or ``?`` as a glob)."""
    fs = prefix.fs
    for entry in prefix.scan_tree():
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(entry.path.url)


def download(source: ObjectPath, target: Path) -> Path:
    """Copy an object to a local file, whole: written beside ``target`` and renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    source.fs.get_file(source.url, str(temp))
    os.replace(temp, target)
    return target


def local_copy(source: ObjectPath, *name: str) -> Path:
    """A local file of an object that never changes once written (a published model
    version), downloaded once and reused: ``<temp>/reviewflow-models/<url hash>/<name...>``.
    Keras and other readers that need a real file read that."""
    digest = hashlib.sha256(source.url.encode()).hexdigest()[:16]
    local = Path(tempfile.gettempdir()) / "reviewflow-models" / digest / Path(*name)
    if not local.exists():
        download(source, local)
    return local


def check_reachable(root: ObjectPath) -> None:
    """A request to ``root``'s store (two when nothing is under ``root`` yet);
    ``StorageUnavailableError`` in one line if the store cannot be reached (no
    connection, a timeout) or the bucket does not exist, so a command says that at once
    instead of a traceback from deep inside a run, or "no champion model"."""
    from tasks.errors import StorageUnavailableError

    bucket = ObjectPath(f"{root.protocol}://{root.url.split('://', 1)[1].split('/')[0]}",
                        root.storage_options)
    try:
        found = root.protocol not in OBJECT_STORES or root.exists() or bucket.exists()
    except Exception as exc:
        if not _unreachable(exc):
            raise
        raise StorageUnavailableError(
            f"cannot reach the object store of {root}: {exc}. Check the endpoint "
            "(REVIEWFLOW_STORAGE_OPTIONS endpoint_url, or AWS_ENDPOINT_URL), the network "
            "and the credentials, then run again") from None
    if not found:
        raise StorageUnavailableError(
            f"the bucket {bucket} of the data root {root} does not exist, or these "
            "credentials cannot see it: create it, or correct --data-dir / "
            "REVIEWFLOW_DATA_DIR and the credentials, then run again")


def _unreachable(exc: BaseException) -> bool:
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import NoCredentialsError
    except ImportError:  # a store without botocore: its own errors stay as they are
        return isinstance(exc, (ConnectionError, TimeoutError))
    return isinstance(exc, (BotoConnectionError, NoCredentialsError, ConnectionError,
                            TimeoutError))


def _mtime(info: dict) -> float:
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return 0.0

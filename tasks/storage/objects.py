"""Folders of the data contract on object storage: ``s3://bucket/prefix`` and other fsspec URLs.

``ObjectPath`` implements the storage interface (``tasks.storage.location.Location``) for
a bucket, and the small part of ``pathlib.Path``'s interface that reviewflow uses (``/``,
``name``, ``suffixes``, ``exists``, ``iterdir``, ``glob``, ``stat``, ``open``,
``read_text``, ``unlink``, ...), with fsspec; ``LocalPath`` (``tasks.storage.local``) is
the other implementation. ``as_location`` makes one of the two from a string or path:
the one place that decides. ``scan`` lists a folder of either kind with each child's
type, size and time, from the listing itself (``Entry``).

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
import tempfile
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

from tasks.failpoints import failpoint
from tasks.settings import is_url, local_path
from tasks.storage.local import LocalPath, local_entry
from tasks.storage.location import (
    Entry,
    EntryKind,
    Identity,
    Location,
    ObjectVersion,
    ParquetSink,
    candidates,
    names_exhausted,
    safe_name,
)
from tasks.storage.object_io import ObjectSink, check_store, download, listed_with_prefix, mtime_of

__all__ = ["Entry", "EntryKind", "Identity", "ObjectVersion", "download", "local_entry"]

# Protocols whose "folders" are only key prefixes: nothing to create, nothing to fsync.
OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"}


def as_location(value: str | os.PathLike, storage_options: dict[str, Any] | None = None
                ) -> Location:
    """A ``LocalPath`` (``~`` expanded, ``file://`` stripped) or an ``ObjectPath`` for a
    URL; a ``Location`` already made is returned as it is. The one place that decides."""
    if isinstance(value, Location):
        return value
    if is_url(value):
        return ObjectPath(str(value), storage_options)
    return LocalPath(local_path(value))


def is_remote(path: Location) -> bool:
    """Whether ``path`` is in an object store: for the few callers that must choose
    between two protocols of their own (each says why); others ask a capability."""
    return isinstance(path, ObjectPath)


def scan(folder: Location) -> list[Entry]:
    """The children of ``folder`` with their type, size and time (``Location.scan``)."""
    return as_location(folder).scan()


class ObjectPath(Location):
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
        return type(other) is type(self) and other.url == self.url

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
        return SimpleNamespace(st_size=int(info.get("size") or 0), st_mtime=mtime_of(info))

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
                     int(info.get("size") or 0), mtime_of(info))

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


    # ------------------------------------------------------------------ the interface
    @property
    def supports_claims(self) -> bool:
        """True where the store has conditional copies and deletes (S3 and its peers)."""
        try:
            import s3fs
        except ImportError:
            return False
        return isinstance(self.fs, s3fs.S3FileSystem)

    def claim_key(self) -> str:
        return self.url.split("://", 1)[1]

    def open_binary(self):
        return self.open("rb")

    def arrow_path(self) -> None:
        return None  # ranged reads through ``open_binary``

    def identity(self) -> ObjectVersion:
        return ObjectVersion(self.etag())

    def local_file(self, *name: str) -> LocalPath:
        """A local file of an object that never changes once written (a published model
        version), downloaded once and reused: ``<temp>/reviewflow-models/<url hash>/<name...>``."""
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        local = LocalPath(tempfile.gettempdir(), "reviewflow-models", digest, *name)
        if not local.exists():
            download(self, local)
        return local

    def subfolders(self) -> list[ObjectPath]:
        return [entry.path for entry in self.scan() if entry.kind is EntryKind.FOLDER]

    def files_named(self, match) -> list[ObjectPath]:
        return [entry.path for entry in self.scan()
                if entry.kind is EntryKind.FILE and match(entry.name)]

    def files_starting_with(self, prefixes: tuple[str, ...]) -> list[ObjectPath]:
        listed = listed_with_prefix(self._fresh(), self.url, prefixes)  # filtered by the store
        if listed is None:  # no prefix filter in this store: the folder whole
            return super().files_starting_with(prefixes)
        return [entry.path for info in listed if (entry := self._entry(info))
                and entry.kind is EntryKind.FILE and entry.path.parent == self  # right under
                and entry.name.startswith(prefixes)]

    def write_bytes_atomic(self, data: bytes) -> ObjectPath:
        """One PUT under its final name: atomic there, so no temporary is left by a kill."""
        self.write_bytes(data)
        failpoint("storage:written", self.name)
        return self

    def create_new(self, data: bytes) -> bool:
        """A conditional PUT; a store without one is looked at first, then written."""
        try:
            self.fs.pipe_file(self.url, data, mode="create")
            return True
        except FileExistsError:
            return False
        except (TypeError, NotImplementedError):  # a store with no conditional write
            if self.exists():
                return False
            self.write_bytes(data)
            return True

    def parquet_sink(self, schema) -> ParquetSink:
        return ObjectSink(self.open("wb"), schema)

    def publish(self, final: ObjectPath) -> ObjectPath:
        """Copy this object onto ``final`` server-side, then delete it.

        Not atomic as a pair (there is no rename), but each step is: ``final`` appears
        whole, and a crash between the steps leaves a copy that the caller's commit
        protocol tolerates (deterministic names are overwritten, temporaries are swept).
        """
        fs = self.fs
        with contextlib.suppress(Exception):
            fs.invalidate_cache(self.parent.url)
        fs.cp_file(self.url, final.url)  # one object: ``copy`` would expand a glob
        fs.rm_file(self.url)
        with contextlib.suppress(Exception):
            fs.invalidate_cache(final.parent.url)
            fs.invalidate_cache(self.parent.url)
        return final

    def move_keeping(self, target_dir: ObjectPath, name: str) -> ObjectPath:
        """A name is checked, then written (no primitive fails rather than replaces)."""
        cleaned = safe_name(name)
        for target in candidates(target_dir, cleaned):
            if not target.exists():
                return self.publish(target)
            if self._same_object(target):  # a killed move's copy: finish that move
                self.unlink(missing_ok=True)
                return target
        raise names_exhausted(target_dir, cleaned)

    def _same_object(self, target: ObjectPath) -> bool:
        """True when ``target`` is a whole copy of this object (same size and ETag): what
        a move killed between its copy and its delete leaves, so the file is archived
        once."""
        try:
            etag = target.etag()
            return (etag is not None and self.etag() == etag
                    and self.stat().st_size == target.stat().st_size)
        except FileNotFoundError:
            return False

    def remove_dead_temporaries(self) -> list[ObjectPath]:
        return []  # a one-shot write is one PUT: it leaves no temporary

    def remove_empty_folder(self) -> bool:
        return False  # a prefix is no object: nothing is left to remove

    def remove_tree(self) -> None:
        """Every object under this prefix, each by its own key (fsspec's recursive ``rm``
        expands a key holding ``[``, ``*`` or ``?`` as a glob)."""
        fs = self.fs
        for entry in self.scan_tree():
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(entry.path.url)

    def check_reachable(self) -> None:
        """A request to the store (two when nothing is under this root yet): see
        ``tasks.storage.object_io.check_store``."""
        bucket = ObjectPath(f"{self.protocol}://{self.url.split('://', 1)[1].split('/')[0]}",
                            self.storage_options)
        check_store(self, bucket, lambda: (self.protocol not in OBJECT_STORES
                                           or self.exists() or bucket.exists()))


def replace(source: ObjectPath, target: ObjectPath) -> None:
    """Copy ``source`` onto ``target`` server-side, then delete it (``ObjectPath.publish``)."""
    source.publish(target)


def read_all(paths: list[ObjectPath]) -> list[bytes]:
    """The bytes of each object, in order, fetched concurrently; each key taken
    literally (fsspec's ``cat`` of a list expands the keys as globs)."""
    if not paths:
        return []
    return paths[0].fs.cat_ranges([p.url for p in paths], None, None, on_error="raise")


def remove_tree(prefix: Location) -> None:
    prefix.remove_tree()


def local_copy(source: Location, *name: str) -> Path:
    """A local file of ``source``: itself, or a copy of an object (``Location.local_file``)."""
    return source.local_file(*name)


def check_reachable(root: Location) -> None:
    root.check_reachable()



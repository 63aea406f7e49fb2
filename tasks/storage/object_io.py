"""What ``ObjectPath`` (``tasks.storage.objects``) does with an fsspec file system that needs
no ``ObjectPath`` of its own: a streamed Parquet object, the download of an object, a
listing's times, a listing filtered by name prefix, and the one-line errors of a store
that cannot be reached."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

from tasks.storage.location import ParquetSink


class ObjectSink(ParquetSink):
    """A Parquet object streamed (multipart): it exists, whole, once closed."""

    def __init__(self, stream, schema):
        self.stream = stream
        self.writer = pq.ParquetWriter(stream, schema, compression="zstd")

    def close(self) -> None:
        self.writer.close()
        self.stream.close()  # completes the upload: the object now exists whole

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(Exception):
            self.stream.discard()  # abandons a multipart upload instead of completing it
        with contextlib.suppress(Exception):
            self.stream.close()


def download(source, target: Path) -> Path:
    """Copy an object to a local file, whole: written beside ``target`` and renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    source.fs.get_file(source.url, str(temp))
    os.replace(temp, target)
    return target


def check_store(root, bucket, found: Callable[[], bool]) -> None:
    """``StorageUnavailableError`` in one line if ``found`` (a request to the store of
    ``root``) cannot reach the store (no connection, a timeout) or says the bucket does
    not exist, so a command says that at once instead of a traceback from deep inside a
    run, or "no champion model"."""
    from tasks.errors import StorageUnavailableError

    try:
        there = found()
    except Exception as exc:
        if not _unreachable(exc):
            raise
        raise StorageUnavailableError(
            f"cannot reach the object store of {root}: {exc}. Check the endpoint "
            "(REVIEWFLOW_STORAGE_OPTIONS endpoint_url, or AWS_ENDPOINT_URL), the network "
            "and the credentials, then run again") from None
    if not there:
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


def mtime_of(info: dict) -> float:
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


def listed_with_prefix(fs, url: str, prefixes: tuple[str, ...]) -> list[dict] | None:
    """What the store lists right under ``url`` whose names start with one of
    ``prefixes``: one request per prefix that the store filters (``find`` one level deep
    with ``prefix``, as s3fs and gcsfs take it), so a folder's other files are never
    listed. Where the commit of each file looks for its own parts among every other
    file's of the day, a full listing each time would make a run's listing work grow
    with the square of its files. None for a file system whose ``find`` takes no prefix."""
    found: dict[str, dict] = {}
    for prefix in prefixes:
        try:
            found.update(fs.find(url, maxdepth=1, prefix=prefix, detail=True))
        except FileNotFoundError:
            continue
        except TypeError:
            return None
    return list(found.values())

"""The formats reviewflow reads: ``FORMATS``, the one table from file name endings to readers.

A file is a review file when its name ends in one of a format's extensions (in any
case), or, for a text format, in one of them followed by ``.gz``. Everything that names
or checks the supported types reads this table: ``detect_format``, ``is_review_file``,
``describe_supported`` (the list users are shown), the reason an unsupported file is
unreadable, and the shard planner (``Format.row_count``).

To read a new format: write its module, a function of a ``ReadRequest`` that yields
batches of ``NORMALIZED_SCHEMA`` (``tasks.reading.request``, ``tasks.reading.schema``),
and add its row to ``FORMATS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from tasks.reading.delimited import read_delimited
from tasks.reading.jsonl import read_json
from tasks.reading.parquet import parquet_row_count, read_parquet
from tasks.reading.request import ReadRequest


@dataclass(frozen=True)
class Format:
    """One format reviewflow reads.

    ``kind``: its name in read errors and reports. ``extensions``: the name endings that
    declare it, in lower case; the first is the one users are told. ``read``: yields the
    file's batches. ``text``: the file is text, so its encoding is judged from its first
    bytes before ``read`` runs (``ReadRequest.sample``), and it may be gzipped.
    ``row_count``: the file's rows from its metadata alone, for a format that records
    them, so the shard planner reads nothing to learn a file needs no shards; None:
    only reading the file counts them.
    """

    kind: str
    extensions: tuple[str, ...]
    read: Callable[[ReadRequest], Iterator[pa.Table]]
    text: bool = True
    row_count: Callable[[Path], int] | None = None


FORMATS: tuple[Format, ...] = (
    Format("csv", (".csv",), read_delimited),
    Format("tsv", (".tsv",), read_delimited),
    Format("jsonl", (".jsonl", ".ndjson"), read_json),
    Format("json", (".json",), read_json),
    Format("parquet", (".parquet", ".pq"), read_parquet, text=False,
           row_count=parquet_row_count),
)
# The wrapper a text format may come in: ``reviews.csv.gz`` is a gzipped CSV file.
GZIP_EXTENSION = ".gz"

_BY_EXTENSION = {extension: spec for spec in FORMATS for extension in spec.extensions}


@dataclass(frozen=True)
class FileFormat:
    """What a file's name declares: its format (a row of ``FORMATS``), and whether it is
    gzipped."""

    format: Format
    gzipped: bool

    @property
    def kind(self) -> str:
        return self.format.kind


def detect_format(path: Path) -> FileFormat | None:
    """The format a file's name declares, or None if reviewflow does not read it."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == GZIP_EXTENSION
    if gzipped:
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in _BY_EXTENSION:
        return None
    spec = _BY_EXTENSION[suffixes[-1]]
    if gzipped and not spec.text:
        return None  # Parquet compresses internally; a gzipped Parquet file is not supported
    return FileFormat(spec, gzipped)


def is_review_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and detect_format(path) is not None


def supported_extensions() -> list[str]:
    """The extension users are told for each format, in the table's order."""
    return [spec.extensions[0] for spec in FORMATS]


def describe_supported() -> str:
    """The supported file types as users are shown them, in parentheses: each format's
    first extension, then ``.gz``."""
    return f"({', '.join([*supported_extensions(), GZIP_EXTENSION])})"


def unsupported_reason() -> str:
    """Why a file whose name declares no format is unreadable, and what to do."""
    return (f"unsupported file type; use {', '.join(supported_extensions())} "
            f"(text formats may end in {GZIP_EXTENSION})")

"""What ``iter_review_batches`` hands a format's reader: one ``ReadRequest`` per file read.

Every reader in the format table (``tasks.reading.formats.FORMATS``) is a function of a
``ReadRequest`` that yields batches of ``NORMALIZED_SCHEMA`` (``tasks.reading.schema``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.reading.columns import ColumnMapping, GeneratedIds
from tasks.reading.schema import ReadReport


@dataclass(frozen=True)
class ReadRequest:
    """One read of one file.

    ``kind``: the format's name in the table (csv, tsv, jsonl, json, parquet), named in
    read errors and ``ReadReport.layout``. ``gzipped``: the file is wrapped in gzip and
    may decompress to at most ``max_decompressed_bytes``. ``limit_chars``: the longest
    record read whole (``tasks.reading.streams.record_chars``). ``ids``: where generated
    ids come from, for a file without an id column. ``report``: filled in while reading.
    ``rows``: the shard being read, ``(start, stop)`` by 0-based row index; a reader may
    use it to skip what lies outside (Parquet reads only the row groups that hold it),
    and the caller cuts the shard's exact rows from what it yields.

    For text formats (``Format.text``), the file's start is read before the reader
    runs: ``encoding`` is the one it is read in, ``sample`` its first
    ``SAMPLE_BYTES`` decoded, ``complete`` whether that sample is the whole file.
    """

    path: Path
    kind: str
    gzipped: bool
    columns: ColumnMapping
    batch_rows: int
    max_decompressed_bytes: int
    limit_chars: int
    ids: GeneratedIds
    report: ReadReport
    rows: tuple[int, int | None] | None = None
    encoding: str = ""
    sample: str = ""
    complete: bool = True

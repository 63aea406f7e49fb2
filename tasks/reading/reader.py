"""``iter_review_batches``: read one review file, of any format in the table, as batches.

The file's name picks its format (``tasks.reading.formats``). For a text format the
file's first bytes are read first: they decide its encoding (``tasks.reading.encodings``),
and the format's reader gets them decoded. Files are streamed, so a file larger than
memory is read batch by batch. ``path`` may also be an ``ObjectPath`` (``s3://...``).

``rows=(start, stop)`` reads one shard of a file: the rows with 0-based index in
``[start, stop)`` (``stop`` None: to the end), numbered as in the whole file. Parquet
shards read only their row groups; text shards parse and skip the rows before theirs.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tasks.reading.columns import ColumnMapping, GeneratedIds
from tasks.reading.encodings import (
    MAX_UNDECODABLE_RECORDS,
    decode_sample,
    few_undecodable,
    resolve_encoding,
    undecodable_file_reason,
)
from tasks.reading.formats import detect_format, unsupported_reason
from tasks.reading.request import ReadRequest
from tasks.reading.schema import ReadReport, UnreadableFileError
from tasks.reading.streams import read_head, record_chars


def iter_review_batches(path: Path, columns: ColumnMapping, batch_rows: int,
                        max_decompressed_bytes: int,
                        rows: tuple[int, int | None] | None = None, *,
                        encodings: Sequence[str] = (), detect_encoding: bool = True,
                        sha256: str | None = None,
                        report: ReadReport | None = None,
                        with_group: bool = False,
                        max_text_chars: int | None = None,
                        passthrough: bool = False) -> Iterator[pa.Table]:
    """Yield normalized batches of the reviews in ``path`` (of its rows ``rows`` only).

    ``encodings`` are tried, in order, on a text file that is not UTF-8 or UTF-16;
    ``detect_encoding`` lets charset-normalizer name one when none fits. ``sha256`` is
    the file's content hash, the seed of generated ids (computed here if needed and
    not given). ``report``, if given, is filled in with what was found (``ReadReport``).
    ``with_group`` adds the ``group`` and ``slice`` columns (``GROUPED_SCHEMA``); scoring
    leaves them out,
    so what it writes does not depend on the file's other columns. ``passthrough``
    appends the file's other columns that ``columns.passthrough`` names, after the
    normalized ones (``tasks.reading.passthrough``). ``max_text_chars``
    (None: no limit is set, and records of up to ``RECORD_MIN_CHARS`` are read whole)
    bounds what one record may hold: a line, CSV
    record or JSON element too long to carry a text of that length is skipped while
    read, in bounded memory, and yielded as a rejected row (``record_chars``).

    Raises ``UnreadableFileError`` if the file's format, encoding, compression or
    columns make it unreadable, if not one row of it could be parsed, or if more of its
    records hold bytes its encoding cannot decode than a few damaged records would
    (``tasks.reading.encodings.few_undecodable``; a few are rejected rows). Batches
    already yielded stay valid, so callers that need all-or-nothing handling must
    stage their output until the generator ends.
    """
    fmt = detect_format(path)
    if fmt is None:
        raise UnreadableFileError(path, unsupported_reason())
    if path.stat().st_size == 0:
        raise UnreadableFileError(path, "the file is empty")
    report = report if report is not None else ReadReport()
    if not with_group:
        columns = columns.model_copy(update={"group": [], "slice": []})
    if not passthrough:
        columns = columns.model_copy(update={"passthrough": []})
    ids = GeneratedIds(path, sha256)
    limit_chars = record_chars(max_text_chars)
    rows_seen = rows_parsed = 0
    first_error: str | None = None
    encoding = ""
    try:
        sample, complete = "", True
        if fmt.format.text:
            head, complete = read_head(path, fmt.gzipped, max_decompressed_bytes)
            encoding = resolve_encoding(path, head, encodings, detect_encoding)
            report.encoding = encoding
            sample = decode_sample(head, encoding, complete)
        request = ReadRequest(path=path, kind=fmt.kind, gzipped=fmt.gzipped, columns=columns,
                              batch_rows=batch_rows,
                              max_decompressed_bytes=max_decompressed_bytes,
                              limit_chars=limit_chars, ids=ids, report=report, rows=rows,
                              encoding=encoding, sample=sample, complete=complete)
        batches = fmt.format.read(request)
        if rows is not None:
            batches = _within(batches, *rows)
        for batch in batches:
            rows_seen += batch.num_rows
            if rows is None and report.undecodable > MAX_UNDECODABLE_RECORDS:
                break  # enough to tell: not a few damaged records
            errors = batch.column("read_error")
            rows_parsed += errors.null_count
            if first_error is None and errors.null_count < batch.num_rows:
                first_error = pc.drop_null(errors)[0].as_py()
            yield batch
    except UnreadableFileError:
        raise
    except UnicodeError as exc:
        where = f" after row {rows_seen}" if rows_seen else ""
        raise UnreadableFileError(path, f"is not valid {encoding or 'text'}{where} ({exc}); if "
                                        "the file uses another encoding, name it in the "
                                        "encodings setting (REVIEWFLOW_ENCODINGS=cp949, "
                                        "cp1252, ...)") from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError,
            EOFError, gzip.BadGzipFile) as exc:
        where = f" after row {rows_seen}" if rows_seen else ""
        raise UnreadableFileError(path, f"cannot be read as {fmt.kind}{where}: {exc}") from exc
    # A shard leaves this to the planner, which read the whole file (rows None).
    if rows is None and not few_undecodable(report.undecodable, rows_seen):
        raise UnreadableFileError(path, undecodable_file_reason(
            encoding, report.undecodable, rows_seen, report.first_undecodable))
    if rows_seen == 0:
        raise UnreadableFileError(path, "the file has no data rows")
    if rows_parsed == 0 and rows is None:
        # Every row is a read error: this is no review file of its format at all.
        raise UnreadableFileError(path, f"not one of its {rows_seen} rows could be parsed "
                                        f"as {fmt.kind}; the first: {first_error}")


def _within(batches: Iterator[pa.Table], start: int, stop: int | None) -> Iterator[pa.Table]:
    """The rows of ``batches`` whose 0-based index (``source_row`` - 1) is in [start, stop)."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        first = batch.column("source_row")[0].as_py() - 1
        low = max(start - first, 0)
        high = batch.num_rows if stop is None else min(stop - first, batch.num_rows)
        if high > low:
            yield batch.slice(low, high - low)
        if stop is not None and first + batch.num_rows >= stop:
            return  # past the shard: stop reading (the format's reader then closes the file)

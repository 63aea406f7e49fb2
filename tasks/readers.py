"""Read review files of any supported format as normalized Arrow record batches.

Every reader yields ``pyarrow.Table`` batches of at most ``batch_rows`` rows with the
columns of ``NORMALIZED_SCHEMA``: whatever the file called its columns, and whatever
types it stored them as, downstream code sees ``review_id`` and ``text`` as strings,
``label`` as int8 (1 positive, 0 negative, -1 not understood, null absent), the
1-based ``source_row`` of each row in its file, and ``read_error`` for rows the reader
could parse only partly (a JSON line that is not an object, a text that is not a
string). Files are streamed, so a file larger than memory is read batch by batch.

A file that cannot be read at all raises ``UnreadableFileError`` with a reason that
names the file; the caller quarantines it whole.

``path`` may also be an ``ObjectPath`` (``s3://...``): text formats are streamed from
the object, Parquet is read with ranged requests (only the row groups needed).
``rows=(start, stop)`` reads one shard of a file: the rows with 0-based index in
``[start, stop)`` (``stop`` None: to the end), numbered as in the whole file. Parquet
shards read only their row groups; text shards parse and skip the rows before theirs.
"""

from __future__ import annotations

import codecs
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tasks.settings import ColumnMapping

NORMALIZED_SCHEMA = pa.schema([
    ("source_row", pa.int64()),
    ("review_id", pa.string()),
    ("text", pa.string()),
    ("label", pa.int8()),
    ("label_raw", pa.string()),
    ("read_error", pa.string()),
])

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class UnreadableFileError(Exception):
    """The whole file cannot be read; ``reason`` says why and what to do."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class FileFormat:
    kind: str  # csv | tsv | jsonl | parquet
    gzipped: bool


def detect_format(path: Path) -> FileFormat | None:
    """The format a file's name declares, or None if reviewflow does not read it."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if gzipped:
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in _FORMATS:
        return None
    kind = _FORMATS[suffixes[-1]]
    if kind == "parquet" and gzipped:
        return None  # Parquet compresses internally; a gzipped Parquet file is not supported
    return FileFormat(kind, gzipped)


def is_review_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and detect_format(path) is not None


def iter_review_batches(path: Path, columns: ColumnMapping, batch_rows: int,
                        max_decompressed_bytes: int,
                        rows: tuple[int, int | None] | None = None) -> Iterator[pa.Table]:
    """Yield normalized batches of the reviews in ``path`` (of its rows ``rows`` only).

    Raises ``UnreadableFileError`` if the file's format, encoding, compression or
    columns make it unreadable. Batches already yielded stay valid, so callers that
    need all-or-nothing handling must stage their output until the generator ends.
    """
    fmt = detect_format(path)
    if fmt is None:
        raise UnreadableFileError(path, "unsupported file type; use .csv, .tsv, .jsonl, "
                                        ".parquet (text formats may end in .gz)")
    if path.stat().st_size == 0:
        raise UnreadableFileError(path, "the file is empty")
    rows_seen = 0
    try:
        if fmt.kind == "parquet":
            batches = _parquet_batches(path, columns, batch_rows, rows)
        elif fmt.kind == "jsonl":
            batches = _jsonl_batches(path, fmt.gzipped, columns, batch_rows, max_decompressed_bytes)
        else:
            batches = _delimited_batches(path, fmt, columns, batch_rows, max_decompressed_bytes)
        if rows is not None:
            batches = _within(batches, *rows)
        for batch in batches:
            rows_seen += batch.num_rows
            yield batch
    except UnreadableFileError:
        raise
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError,
            UnicodeError, EOFError, gzip.BadGzipFile) as exc:
        where = f" after row {rows_seen}" if rows_seen else ""
        raise UnreadableFileError(path, f"cannot be read as {fmt.kind}{where}: {exc}") from exc
    if rows_seen == 0:
        raise UnreadableFileError(path, "the file has no data rows")


def parquet_row_count(path) -> int:
    """Rows in a Parquet file, from its footer (no data is read)."""
    if isinstance(path, Path):
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


# --------------------------------------------------------------------------- helpers

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
            return  # past the shard: stop reading (the generator below closes the file)


class _LimitedReader(io.RawIOBase):
    """Reads a decompressing stream and fails once more than ``limit`` bytes came out."""

    def __init__(self, raw, limit: int, path: Path):
        self._raw, self._limit, self._path, self._total = raw, limit, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        self._total += len(data)
        if self._total > self._limit:
            raise UnreadableFileError(
                self._path, f"decompresses to more than {self._limit:,} bytes (the "
                            "max_decompressed_bytes setting); split the file or raise the limit")
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ClosingGzip(gzip.GzipFile):
    """A GzipFile over an opened object that also closes the object."""

    def close(self) -> None:
        raw = self.fileobj
        try:
            super().close()
        finally:
            if raw is not None:
                raw.close()


def _open_bytes(path: Path, gzipped: bool, limit: int) -> io.BufferedReader:
    if not isinstance(path, Path):  # an ObjectPath: stream the object
        raw = path.open("rb")
        if gzipped:
            return io.BufferedReader(_LimitedReader(_ClosingGzip(fileobj=raw, mode="rb"), limit,
                                                    path), 1 << 20)
        return raw
    if gzipped:
        return io.BufferedReader(_LimitedReader(gzip.open(path, "rb"), limit, path), 1 << 20)
    return open(path, "rb")  # noqa: SIM115 - closed by the caller


def _sniff_encoding(path: Path, gzipped: bool, limit: int) -> str:
    with _open_bytes(path, gzipped, limit) as stream:
        head = stream.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8"  # pyarrow skips a UTF-8 byte-order mark itself


def _pick(names: list[str], wanted: list[str]) -> str | None:
    lowered = {name.strip().lower().lstrip("\ufeff"): name for name in names}
    for candidate in wanted:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


@dataclass(frozen=True)
class _Columns:
    review_id: str
    text: str
    label: str | None


def _resolve(path: Path, names: list[str], columns: ColumnMapping) -> _Columns:
    review_id = _pick(names, columns.review_id)
    text = _pick(names, columns.text)
    missing = [f"{role} (looked for {', '.join(options)})"
               for role, found, options in (("text", text, columns.text),
                                            ("review_id", review_id, columns.review_id))
               if found is None]
    if missing:
        raise UnreadableFileError(
            path, f"missing required column {'; '.join(missing)}; the file has columns "
                  f"{names}. Rename the column or add its name to the column mapping settings")
    return _Columns(review_id, text, _pick(names, columns.label))


def map_labels(raw: pa.Array, columns: ColumnMapping) -> pa.Array:
    """Map label values given as numbers or words to int8 1/0; -1 where not understood."""
    as_text = pc.utf8_lower(pc.utf8_trim_whitespace(raw.cast(pa.string())))
    # "1.0" and "0.0" as written by pandas for float columns
    as_text = pc.replace_substring_regex(as_text, r"^([01])\.0+$", r"\1")
    positive = pc.is_in(as_text, value_set=pa.array(columns.positive_labels))
    negative = pc.is_in(as_text, value_set=pa.array(columns.negative_labels))
    mapped = pc.if_else(positive, 1, pc.if_else(negative, 0, -1)).cast(pa.int8())
    blank = pc.or_kleene(pc.is_null(as_text), pc.equal(as_text, ""))
    return pc.if_else(blank, pa.scalar(None, pa.int8()), mapped)


def _normalize(table: pa.Table, cols: _Columns, first_row: int, columns: ColumnMapping,
               read_error: pa.Array | None = None) -> pa.Table:
    n = table.num_rows
    if cols.label is not None:
        label_raw = table.column(cols.label).combine_chunks().cast(pa.string())
        label = map_labels(label_raw, columns)
    else:
        label_raw = pa.nulls(n, pa.string())
        label = pa.nulls(n, pa.int8())
    return pa.Table.from_arrays([
        pa.array(range(first_row, first_row + n), pa.int64()),
        table.column(cols.review_id).combine_chunks().cast(pa.string()),
        table.column(cols.text).combine_chunks(),
        label,
        label_raw,
        read_error if read_error is not None else pa.nulls(n, pa.string()),
    ], schema=NORMALIZED_SCHEMA)


def _delimited_batches(path: Path, fmt: FileFormat, columns: ColumnMapping, batch_rows: int,
                       limit: int) -> Iterator[pa.Table]:
    encoding = _sniff_encoding(path, fmt.gzipped, limit)
    delimiter = "\t" if fmt.kind == "tsv" else ","
    # Tab-separated review files (NSMC's among them) do not quote fields: a double quote
    # inside a review is text, not a quoting character.
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=fmt.kind == "csv",
                               quote_char='"' if fmt.kind == "csv" else False)
    # Read the header first so every column can be read as a string: ids like "007"
    # keep their zeros and a label column of words and numbers does not fail inference.
    with _open_bytes(path, fmt.gzipped, limit) as stream:
        head = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(
            encoding=encoding, block_size=1 << 16), parse_options=parse)
        names = head.schema.names
    cols = _resolve(path, names, columns)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    # Rows of a block stay together; a block of 16 MiB keeps memory flat for any file size.
    read = pacsv.ReadOptions(encoding=encoding, block_size=16 << 20)
    with _open_bytes(path, fmt.gzipped, limit) as stream:
        reader = pacsv.open_csv(stream, read_options=read, parse_options=parse,
                                convert_options=convert)
        yield from _rebatch((pa.Table.from_batches([b]) for b in reader), cols, columns,
                            batch_rows)


def _parquet_batches(path: Path, columns: ColumnMapping, batch_rows: int,
                     rows: tuple[int, int | None] | None = None) -> Iterator[pa.Table]:
    if isinstance(path, Path):
        yield from _parquet_file_batches(path, path, columns, batch_rows, rows)
    else:
        with path.open("rb") as handle:  # ranged reads of the object
            yield from _parquet_file_batches(path, handle, columns, batch_rows, rows)


def _parquet_file_batches(path, source, columns: ColumnMapping, batch_rows: int,
                          rows: tuple[int, int | None] | None) -> Iterator[pa.Table]:
    # Without pre-buffering: the default reads ahead most of the file, so memory would
    # grow with file size instead of staying at one batch.
    parquet = pq.ParquetFile(source, pre_buffer=False)
    schema = parquet.schema_arrow
    cols = _resolve(path, schema.names, columns)
    text_type = schema.field(cols.text).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise UnreadableFileError(path, f"column {cols.text!r} holds {text_type}, not text; "
                                        "write the reviews as a string column")
    id_type = schema.field(cols.review_id).type
    if not (pa.types.is_string(id_type) or pa.types.is_large_string(id_type)
            or pa.types.is_integer(id_type)):
        raise UnreadableFileError(path, f"column {cols.review_id!r} holds {id_type}; "
                                        "review ids must be strings or integers")
    wanted = [c for c in (cols.review_id, cols.text, cols.label) if c is not None]
    groups, first_row = None, 1
    if rows is not None:  # a shard: only the row groups that hold its rows
        groups, offset = [], 0
        for index in range(parquet.metadata.num_row_groups):
            size = parquet.metadata.row_group(index).num_rows
            if offset + size > rows[0] and (rows[1] is None or offset < rows[1]):
                if not groups:
                    first_row = offset + 1
                groups.append(index)
            offset += size
        if not groups:
            return
    batches = (pa.Table.from_batches([b]) for b in
               parquet.iter_batches(batch_size=batch_rows, columns=wanted, row_groups=groups))
    yield from _rebatch(batches, cols, columns, batch_rows, first_row)


def _rebatch(tables: Iterator[pa.Table], cols: _Columns, columns: ColumnMapping,
             batch_rows: int, first_row: int = 1) -> Iterator[pa.Table]:
    """Re-cut incoming tables into batches of ``batch_rows`` and normalize them."""
    pending: list[pa.Table] = []
    pending_rows = 0
    next_row = first_row
    for table in tables:
        pending.append(table)
        pending_rows += table.num_rows
        while pending_rows >= batch_rows:
            merged = pa.concat_tables(pending)
            head, rest = merged.slice(0, batch_rows), merged.slice(batch_rows)
            yield _normalize(head, cols, next_row, columns)
            next_row += batch_rows
            pending, pending_rows = [rest], rest.num_rows
    if pending_rows:
        yield _normalize(pa.concat_tables(pending), cols, next_row, columns)


def _jsonl_batches(path: Path, gzipped: bool, columns: ColumnMapping, batch_rows: int,
                   limit: int) -> Iterator[pa.Table]:
    """JSON Lines, parsed line by line so one bad line quarantines one row, not the file."""
    encoding = _sniff_encoding(path, gzipped, limit)
    cols: _Columns | None = None
    ids: list[str | None] = []
    texts: list[str | None] = []
    labels: list[str | None] = []
    errors: list[str | None] = []
    row = 0
    first_row = 1
    with _open_bytes(path, gzipped, limit) as raw:
        lines = io.TextIOWrapper(raw, encoding="utf-8-sig" if encoding == "utf-8" else encoding,
                                 errors="strict", newline="\n")
        for line in lines:
            if not line.strip():
                continue  # blank lines separate nothing in JSON Lines
            row += 1
            record_id = text = label = error = None
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                record, error = None, f"line is not valid JSON ({exc})"
            if record is not None and not isinstance(record, dict):
                error = f"line is a JSON {type(record).__name__}, not an object"
            elif isinstance(record, dict):
                if cols is None:
                    cols = _resolve(path, list(record), columns)
                record_id = _scalar_text(record.get(cols.review_id))
                value = record.get(cols.text)
                if value is None or isinstance(value, str):
                    text = value
                else:
                    error = f"field {cols.text!r} is a JSON {type(value).__name__}, not a string"
                if cols.label is not None:
                    label = _scalar_text(record.get(cols.label))
            ids.append(record_id)
            texts.append(text)
            labels.append(label)
            errors.append(error)
            if len(ids) == batch_rows:
                yield _jsonl_table(first_row, ids, texts, labels, errors, columns)
                first_row += len(ids)
                ids, texts, labels, errors = [], [], [], []
    if cols is None and row:
        raise UnreadableFileError(path, "no line is a JSON object with review fields")
    if ids:
        yield _jsonl_table(first_row, ids, texts, labels, errors, columns)


def _scalar_text(value) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _jsonl_table(first_row, ids, texts, labels, errors, columns: ColumnMapping) -> pa.Table:
    table = pa.table({"review_id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string()),
                      "label": pa.array(labels, pa.string())})
    has_label = any(label is not None for label in labels)
    cols = _Columns("review_id", "text", "label" if has_label else None)
    return _normalize(table, cols, first_row, columns, pa.array(errors, pa.string()))

"""Reading review files of any supported format as normalized Arrow record batches.

The package owns everything between an input file and the batches validation and
scoring see: which files are review files, their encodings, gzip and the size limits,
finding the columns, parsing each format, and the schema every reader yields. Other
code imports from ``tasks.reading`` itself: ``iter_review_batches`` (the entry point),
``detect_format``, ``is_review_file``, ``describe_supported``, ``parquet_row_count``,
``NORMALIZED_SCHEMA``, ``GROUPED_SCHEMA``, ``ReadReport``, ``UnreadableFileError``, and
``ColumnMapping`` from ``tasks.reading.columns``.

- ``formats``: ``FORMATS``, the one table from file name endings to readers.
- ``reader``: ``iter_review_batches``, which reads a file through its format's reader
  (and cuts a shard's rows out of what it yields).
- ``schema``: what every reader yields (``NORMALIZED_SCHEMA``), reports and raises.
- ``request``: ``ReadRequest``, what a format's reader is given.

What the format readers share, each module's public names its interface:

- ``columns``: ``ColumnMapping`` and how a file's columns are found by name
  (``resolve_columns``, ``Columns``; ``find_columns``, ``pick`` for JSON's keys;
  ``GeneratedIds``).
- ``encodings``: which encoding a text file is read in, and the records holding bytes
  it cannot decode (a few are rejected rows; more make the file unreadable).
- ``streams``: opening files (``open_bytes``, ``open_text``), gzip, the decompressed-size
  and record-length limits (``bounded_lines``, ``LongLine``, ``too_long_reason``).
- ``normalize``: labels, Unicode, row numbers (``normalize_table``) and batch sizes
  (``rebatch``) of what readers parsed.
- ``passthrough``: the file's other columns a batch carries after the normalized ones
  (``iter_review_batches(..., passthrough=True)``): which, under what names
  (``extra_columns``, set in ``Columns.extra`` by ``resolve_columns``).

One module per format: ``delimited`` (CSV, TSV) with ``careful`` (its line-by-line path:
``careful_delimited``, ``csv_dialect``), ``jsonl`` (JSON Lines, JSON), ``parquet``.

To read a new format: write its module, a function of a ``ReadRequest`` that yields
``NORMALIZED_SCHEMA`` batches (built with the shared modules above; no module uses
another's ``_`` names), and add its row to ``tasks.reading.formats.FORMATS``.
"""

from tasks.reading.columns import ColumnMapping
from tasks.reading.delimited import tsv_is_quoted
from tasks.reading.encodings import (
    KOREAN_MAX_UNUSUAL,
    KOREAN_MIN_HANGUL,
    MAX_UNDECODABLE_RECORDS,
    MAX_UNDECODABLE_SHARE,
    MIN_DETECT_BYTES,
    resolve_encoding,
)
from tasks.reading.formats import (
    FORMATS,
    GZIP_EXTENSION,
    FileFormat,
    Format,
    describe_supported,
    detect_format,
    is_review_file,
    supported_extensions,
)
from tasks.reading.normalize import map_labels, normalize_text
from tasks.reading.parquet import parquet_row_count
from tasks.reading.reader import iter_review_batches
from tasks.reading.request import ReadRequest
from tasks.reading.schema import GROUPED_SCHEMA, NORMALIZED_SCHEMA, ReadReport, UnreadableFileError
from tasks.reading.streams import (
    MAX_RAW_CHARS,
    RECORD_ESCAPE_FACTOR,
    RECORD_MIN_CHARS,
    RECORD_SLACK_CHARS,
    SAMPLE_BYTES,
    record_chars,
)

__all__ = [
    "FORMATS",
    "GROUPED_SCHEMA",
    "GZIP_EXTENSION",
    "KOREAN_MAX_UNUSUAL",
    "KOREAN_MIN_HANGUL",
    "MAX_RAW_CHARS",
    "MAX_UNDECODABLE_RECORDS",
    "MAX_UNDECODABLE_SHARE",
    "MIN_DETECT_BYTES",
    "NORMALIZED_SCHEMA",
    "RECORD_ESCAPE_FACTOR",
    "RECORD_MIN_CHARS",
    "RECORD_SLACK_CHARS",
    "SAMPLE_BYTES",
    "ColumnMapping",
    "FileFormat",
    "Format",
    "ReadReport",
    "ReadRequest",
    "UnreadableFileError",
    "describe_supported",
    "detect_format",
    "is_review_file",
    "iter_review_batches",
    "map_labels",
    "normalize_text",
    "parquet_row_count",
    "record_chars",
    "resolve_encoding",
    "supported_extensions",
    "tsv_is_quoted",
]

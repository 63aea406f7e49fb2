"""What every reader produces, whatever the format: batches of ``NORMALIZED_SCHEMA``,
a ``ReadReport`` of what it found, or ``UnreadableFileError`` for a file it cannot read.

Each batch is a ``pyarrow.Table`` of at most ``batch_rows`` rows. Whatever the file
called its columns, and whatever types it stored them as, downstream code sees
``review_id`` and ``text`` as strings, ``label`` as int8 (1 positive, 0 negative, -1 not
understood, null absent), the 1-based ``source_row`` of each row in its file, and
``read_error`` for rows the reader could parse only partly or not at all (a CSV line
with too many fields, a JSON line that is not an object, a text that is not a string,
a record holding bytes that are not valid in the file's encoding).
Such a row keeps the raw line in ``text`` and says why, with its line number, in
``read_error``; validation quarantines it.

A file with no id column gets a stable generated id for each row,
``<first 16 hex of the file's SHA-256>-row<source_row>`` (same bytes, same ids), and
``ReadReport.ids_generated`` says so.

A file that cannot be read at all (wrong format, no header, undecodable, no row
parsed) raises ``UnreadableFileError`` with a reason that names the file; the caller
quarantines it whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

NORMALIZED_SCHEMA = pa.schema([
    ("source_row", pa.int64()),
    ("review_id", pa.string()),
    ("text", pa.string()),
    ("label", pa.int8()),
    ("label_raw", pa.string()),
    ("read_error", pa.string()),
])
# Batches read with ``with_group=True`` (labeled data for training) carry two more
# columns: what the review is about (a movie, a product), from the first
# ``ColumnMapping.group`` name the file has, and the value that puts it in a slice of the
# gate (a product category), from the first ``ColumnMapping.slice`` name; each null where
# the file has none.
GROUPED_SCHEMA = NORMALIZED_SCHEMA.append(pa.field("group", pa.string())).append(
    pa.field("slice", pa.string()))


class UnreadableFileError(Exception):
    """The whole file cannot be read; ``reason`` says why and what to do."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class ReadReport:
    """What a reader learned about one file while reading it; filled in as it reads.

    ``encoding``: the text encoding used ("" for Parquet). ``ids_generated``: the file
    has no id column, so every ``review_id`` was generated from the content hash and
    row number. ``layout``: how the file was parsed ("csv quoted", "tsv unquoted",
    "json array", ...). ``careful``: why the careful (line by line) path was taken, if
    it was. ``undecodable``: records rejected because they hold bytes the encoding
    cannot decode, the first of them named in ``first_undecodable``
    (``tasks.reading.encodings``).
    """

    encoding: str = ""
    ids_generated: bool = False
    layout: str = ""
    careful: str = ""
    undecodable: int = 0
    first_undecodable: str = ""

    def note_undecodable(self, reason: str) -> None:
        self.undecodable += 1
        self.first_undecodable = self.first_undecodable or reason

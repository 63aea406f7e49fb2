"""Split a large input file into shards, so one big file spreads over several workers.

A shard is a range of rows, ``[start, stop)`` by 0-based row index, read with
``iter_review_batches(..., rows=...)``. Each is validated and scored on its own, yet
the result must equal that of one pass over the whole file. Row-level expectations do
not care; uniqueness does (the first row with an id is kept, later ones are
quarantined, across the whole file). So the plan carries, for each shard, the values of
the unique-checked columns that it shares with earlier shards: seeded into the
validator's ``seen`` sets, they make the shard reject exactly the rows a single pass
would have rejected.

Planning reads the row count of a file whose format records it (Parquet, in its
footer: ``Format.row_count`` in ``tasks.reading.formats``); such a file with more rows
than ``shard_rows``, and any other file when sharding is on, are read once (in the
flow's process) for the row count and those values, remembering the ids of earlier
shards as 8-byte hashes. A file that cannot be read raises
``UnreadableFileError`` here, before any shard runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tasks.reading import detect_format, iter_review_batches
from tasks.reading.columns import ColumnMapping
from tasks.validation import UNIQUE, SeenValues


@dataclass(frozen=True)
class Shard:
    """One task's share of a file. ``index`` None: the whole file (named as unsharded)."""

    index: int | None = None
    rows: tuple[int, int | None] | None = None
    seen: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The file's pass-through columns with their registered types
    # (tasks.scoring.passthrough); None: the types its batches bring.
    extra: pa.Schema | None = None


def unique_columns(suite_config: dict) -> list[str]:
    """The columns the suite checks for uniqueness over a whole file."""
    return [c["kwargs"]["column"] for c in suite_config.get("expectations", [])
            if c.get("type") == UNIQUE]


def plan_shards(path, shard_rows: int | None, unique: list[str], columns: ColumnMapping,
                batch_rows: int, max_decompressed_bytes: int, **read_options) -> list[Shard]:
    """The shards of ``path``: ``[Shard()]`` (whole file) unless it has more than
    ``shard_rows`` rows. Raises ``UnreadableFileError`` for a file that cannot be read.

    ``read_options`` (encodings, detect_encoding, sha256) go to ``iter_review_batches``
    as the shards will pass them, so planning reads the file as its shards will."""
    if shard_rows is None:
        return [Shard()]
    fmt = detect_format(path)
    if fmt is not None and fmt.format.row_count is not None:  # counted from its metadata
        try:
            if fmt.format.row_count(path) <= shard_rows:
                return [Shard()]
        except (pa.ArrowException, OSError):
            return [Shard()]  # the shard's reader reports what is wrong with it
    # Ids of the shards before the current one, as hashes (tasks.validation.SeenValues):
    # a file large enough to shard may hold millions of ids.
    earlier = {column: SeenValues() for column in unique}
    current = {column: SeenValues() for column in unique}
    current_shard = 0
    shared: dict[int, dict[str, set[str]]] = {}
    total = 0
    for batch in iter_review_batches(path, columns, batch_rows, max_decompressed_bytes,
                                     **read_options):
        shard_of_row = (batch.column("source_row").to_numpy() - 1) // shard_rows
        for shard in np.unique(shard_of_row).tolist():
            if shard != current_shard:  # rows arrive in order: the earlier shards grow
                for column in unique:
                    earlier[column].update(current[column])
                    current[column] = SeenValues()
                current_shard = shard
            piece = batch.filter(pa.array(shard_of_row == shard))
            for column in unique:
                values = piece.column(column).combine_chunks()
                repeated = earlier[column].contains(values)
                if repeated.any():
                    shared.setdefault(shard, {}).setdefault(column, set()).update(
                        values.filter(pa.array(repeated)).to_pylist())
                current[column].first_seen(values)
        total += batch.num_rows
    if total <= shard_rows:
        return [Shard()]
    count = math.ceil(total / shard_rows)
    return [Shard(index=k,
                  rows=(k * shard_rows, None if k == count - 1 else (k + 1) * shard_rows),
                  seen={c: tuple(sorted(v)) for c, v in shared.get(k, {}).items()})
            for k in range(count)]

"""The input's other columns, carried through to the scored rows (docs/data-contract.md).

Besides the id, text and label columns, a reader keeps every other column of its input
(``ColumnMapping.passthrough``: all, none, or the names to keep) and appends them to
each batch after ``NORMALIZED_SCHEMA``'s columns, in the file's order, under their own
names (a name the file holds twice, in any case, is not carried: DuckDB's names ignore
case, and which one a query meant could not be told). A name the output already uses (``OUTPUT_NAMES``, compared case-insensitively
since DuckDB's names are) is kept as ``INPUT_PREFIX`` + name. Parquet columns keep
their types (dictionaries decoded); text formats' columns are strings. A JSON file's
columns are the keys of its first object with a text field, the object that decides
whether the file has ids; a key only later objects have is not carried.

Every batch of one file has the same pass-through columns, so the first batch tells
the scoring driver a file's columns (``tasks.scoring.passthrough``).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from tasks.settings import PASSTHROUGH_ALL, ColumnMapping

# Names a pass-through column may not take: the columns of scored/ (with its partition),
# of quarantine/rows/ and of the batches readers yield.
OUTPUT_NAMES = frozenset({
    "review_id", "score", "predicted_label", "label", "model_version", "source_file",
    "source_row", "source_sha256", "scored_at", "scored_date", "text", "label_raw",
    "read_error", "failed_expectations", "reason", "quarantined_at", "group", "slice",
})
INPUT_PREFIX = "input_"
# The Arrow type of each name ``ColumnMapping.types`` may declare (settings.COLUMN_TYPE_NAMES).
DECLARED_TYPES = {
    "string": pa.string(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(),
    "int64": pa.int64(), "float32": pa.float32(), "float64": pa.float64(), "bool": pa.bool_(),
    "date": pa.date32(), "timestamp": pa.timestamp("us"),
}


def _key(name: str) -> str:
    return name.strip().lower().lstrip("\ufeff")


def extra_columns(names: list[str], roles: list[str | None],
                  columns: ColumnMapping) -> tuple[tuple[str, str], ...]:
    """The pass-through columns among ``names`` (those not in ``roles``, the id, text
    and label columns found), each as (its name in the file, its name in the output)."""
    wanted = {_key(name) for name in columns.passthrough}
    if not wanted:
        return ()
    every = PASSTHROUGH_ALL in columns.passthrough
    used = {_key(name) for name in roles if name is not None}
    keys = [_key(name) for name in names]
    taken = set(OUTPUT_NAMES) | set(keys)
    picked: list[tuple[str, str]] = []
    for name, key in zip(names, keys):
        if key in used or not key or not (every or key in wanted):
            continue
        if keys.count(key) > 1:
            continue  # which of the two a reader means cannot be told: neither is carried
        output = name
        while _key(output) in OUTPUT_NAMES or (output != name and _key(output) in taken):
            output = INPUT_PREFIX + output
        taken.add(_key(output))
        picked.append((name, output))
    return tuple(picked)


def extra_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A pass-through column as one plain array: a dictionary (pandas ``category``) as
    its values, so batches of row groups with different dictionaries concatenate."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column


def json_value(value) -> str | None:
    """A JSON value as a pass-through string: scalars as written, objects and arrays as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def as_text(column: pa.Array) -> pa.Array:
    """``column`` as strings (quarantine keeps every value as text, even one that failed
    its type); a type Arrow cannot cast to string is written value by value."""
    if pa.types.is_string(column.type):
        return column
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else json_value(v) if isinstance(v, (dict, list))
                         else str(v) for v in column.to_pylist()], pa.string())

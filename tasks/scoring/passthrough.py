"""The input's other columns in scored/ and quarantine/rows/ (docs/data-contract.md).

Readers append a file's pass-through columns to each batch (``tasks.reading.passthrough``).
Here they get their types and go to the parts:

- Before a file's shards run, the driver reads its first batch for the names and
  types of its columns (``file_columns``): a Parquet column's type, a string for
  text formats, or the type ``ColumnMapping.types`` declares. It registers them in
  the run state (``RunState.register_columns``): the first file of a data root to
  bring a name fixes that name's type for every later part, on any host. The
  registered types travel with the shards (``Shard.extra``).
- Each batch is split into its normalized columns, which validation and the model
  see, and its pass-through columns, cast to the registered types (``split``). An
  empty string of a text format is null in a column of another type; a value that
  cannot be cast makes its row a read error (quarantined, saying the file, row,
  column and value); the run goes on.
- A scored part holds ``SCORED_SCHEMA``'s columns, then ``text`` when
  ``ColumnMapping.passthrough_text`` asks, then the pass-through columns with their
  registered types (``scored_part_schema``). A quarantine part holds every
  pass-through column as text, as read, so a corrected row can be resubmitted.

Every part of one name has one type, so ``scored/`` reads as one dataset: DuckDB
with ``union_by_name=true``, pyarrow and pandas with the schema ``scored_schema``
gives (``tasks.scoring.schema``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from tasks.reading import NORMALIZED_SCHEMA, iter_review_batches
from tasks.reading.passthrough import DECLARED_TYPES, as_text
from tasks.scoring.schema import SCORED_SCHEMA
from tasks.settings import ColumnMapping
from tasks.validation import QUARANTINE_SCHEMA

_NORMALIZED = NORMALIZED_SCHEMA.names
# Rows per batch ``file_columns`` reads: a file's columns show in its first parsed row,
# and a small batch keeps the driver from normalizing a whole read batch of texts.
FIRST_ROWS = 64


def encode_type(data_type: pa.DataType) -> str:
    """An Arrow type as text the run state keeps (any type, nested ones too)."""
    return base64.b64encode(pa.schema([pa.field("t", data_type)]).serialize()
                            .to_pybytes()).decode("ascii")


def decode_type(text: str) -> pa.DataType:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text))).field("t").type


def declared(schema: pa.Schema, columns: ColumnMapping) -> pa.Schema:
    """``schema`` (a file's pass-through columns as read) with ``columns.types`` applied."""
    return pa.schema([pa.field(f.name, DECLARED_TYPES[columns.types[f.name]]
                               if f.name in columns.types else f.type) for f in schema])


def file_columns(path, job, sha256: str) -> pa.Schema:
    """The pass-through columns of ``path`` and the types it brings them in (declared
    types applied), from its first rows up to one that parsed: every batch of a file
    has the same columns from there on (a JSON file's are decided by that row)."""
    if not job.columns.passthrough:
        return pa.schema([])
    batches = iter_review_batches(path, job.columns, FIRST_ROWS, job.max_decompressed_bytes,
                                  passthrough=True, **job.read_options(sha256))
    found = pa.schema([])
    try:
        for batch in batches:
            found = batch.drop_columns(_NORMALIZED).schema
            if batch.column("read_error").null_count:
                break
    finally:
        batches.close()
    return declared(found, job.columns)


def root_key(root) -> str:
    """A data root (a ``Location``) as the registry names it: a local folder by its
    absolute path, so runs started from other folders name it alike; a URL as written."""
    return str(root.resolve())


def register(state, data_root: str, wanted: pa.Schema) -> pa.Schema:
    """``wanted`` with each name's type as the data root's registry holds it (the first
    writer's): ``RunState.register_columns``."""
    if not len(wanted):
        return wanted
    kept = state.register_columns(data_root, [(f.name, str(f.type), encode_type(f.type))
                                              for f in wanted])
    return pa.schema([pa.field(f.name, decode_type(kept[f.name])) for f in wanted])


@dataclass
class Carried:
    """A batch's pass-through columns: cast to the part's types, and as read."""

    schema: pa.Schema
    typed: pa.Table
    original: pa.Table


def _cast(column: pa.Array, to: pa.DataType) -> tuple[pa.Array, list[int]]:
    """``column`` cast to ``to``, and the positions of the values that cannot be (null)."""
    if column.type == to:
        return column, []
    if pa.types.is_string(column.type) and not pa.types.is_string(to):
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
    try:
        return pc.cast(column, to), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    values, bad = [], []
    for index, value in enumerate(column):
        try:
            values.append(pc.cast(pa.array([value.as_py()], column.type), to)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            values.append(None)
            bad.append(index)
    return pa.array(values, to), bad


def split(batch: pa.Table, target: pa.Schema | None,
          columns: ColumnMapping) -> tuple[pa.Table, Carried]:
    """``batch``'s normalized columns, and its pass-through columns cast to ``target``
    (None: the types the file brings, ``declared``). A row holding a value that cannot
    be cast gets a ``read_error`` naming the column and the value."""
    original = batch.drop_columns(_NORMALIZED)
    normalized = batch.select(_NORMALIZED)
    target = target if target is not None else declared(original.schema, columns)
    arrays, errors = [], {}
    rows = normalized.column("source_row").to_pylist()
    for field in target:
        if field.name in original.column_names:
            typed, bad = _cast(original.column(field.name).combine_chunks(), field.type)
        else:
            typed, bad = pa.nulls(batch.num_rows, field.type), []
        arrays.append(typed)
        for index in bad:
            errors.setdefault(index, (
                f"row {rows[index]}: column {field.name!r} holds "
                f"{original.column(field.name)[index].as_py()!r}, not {field.type} (the type "
                "columns.types declares for it, or the one the data root's scored/ has for "
                "it); correct the value and resubmit the row"))
    if errors:
        read_error = normalized.column("read_error").to_pylist()
        for index, reason in errors.items():
            read_error[index] = read_error[index] or reason
        normalized = normalized.set_column(_NORMALIZED.index("read_error"), "read_error",
                                           pa.array(read_error, pa.string()))
    typed = pa.Table.from_arrays(arrays, schema=target)
    return normalized, Carried(target, typed, original)


def scored_part_schema(target: pa.Schema | None, columns: ColumnMapping) -> pa.Schema:
    """What a scored part holds: ``SCORED_SCHEMA``, the text if asked, the pass-through
    columns (``target``)."""
    schema = SCORED_SCHEMA
    if columns.passthrough_text:
        schema = schema.append(pa.field("text", pa.string()))
    for field in target or ():
        schema = schema.append(field)
    return schema


def rejected_part_schema(target: pa.Schema | None) -> pa.Schema:
    """What a quarantine part holds: ``QUARANTINE_SCHEMA``, the pass-through columns as text."""
    schema = QUARANTINE_SCHEMA
    for field in target or ():
        schema = schema.append(pa.field(field.name, pa.string()))
    return schema


def with_carried(output: pa.Table, valid: pa.Table, rejected: pa.Table, batch: pa.Table,
                 carried: Carried | None, columns: ColumnMapping) -> tuple[pa.Table, pa.Table]:
    """The scored ``output`` and the ``rejected`` rows (with their source) of ``batch``,
    each with the text (scored, if asked) and the pass-through columns of its rows."""
    if columns.passthrough_text:
        output = output.append_column("text", valid.column("text"))
    if carried is None or not carried.schema.names:
        return output, rejected
    failed = pc.is_in(batch.column("source_row"), value_set=rejected.column("source_row"))
    kept = carried.typed.filter(pc.invert(failed))
    for name in carried.schema.names:
        output = output.append_column(carried.schema.field(name), kept.column(name))
    if rejected.num_rows:
        shown = carried.original.filter(failed)
        for name in carried.schema.names:
            values = (as_text(shown.column(name).combine_chunks()) if name in shown.column_names
                      else pa.nulls(rejected.num_rows, pa.string()))
            rejected = rejected.append_column(name, values)
    else:
        for name in carried.schema.names:
            rejected = rejected.append_column(name, pa.nulls(0, pa.string()))
    return output, rejected

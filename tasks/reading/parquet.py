"""Parquet: columns found by name in the file's schema, read a batch at a time.

The text column must hold strings (plain, large, view, a dictionary as pandas writes
``category``, or bytes that are UTF-8), the id column strings or integers. A shard
reads only the row groups that hold its rows. ``path`` may be an ``ObjectPath``
(``s3://...``): the file is read with ranged requests. Parquet compresses internally,
so a gzipped Parquet file is not a review file.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.reading.columns import Columns, resolve_columns
from tasks.reading.normalize import rebatch
from tasks.reading.request import ReadRequest
from tasks.reading.schema import UnreadableFileError
from tasks.storage.objects import as_location


def parquet_row_count(path) -> int:
    """Rows in a Parquet file, from its footer (no data is read)."""
    if (native := as_location(path).arrow_path()) is not None:
        return pq.ParquetFile(native).metadata.num_rows
    with path.open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def read_parquet(request: ReadRequest) -> Iterator[pa.Table]:
    """The batches of a Parquet file (of the row groups that hold ``request.rows``)."""
    request.report.layout = "parquet"
    path = request.path
    # A path pyarrow opens itself; else ranged reads of the object, or a name it refuses.
    if (native := as_location(path).arrow_path()) is not None:
        yield from _parquet_file_batches(request, native)
    else:
        with path.open("rb") as handle:  # ranged reads of the object, or a name pyarrow refuses
            yield from _parquet_file_batches(request, handle)


def _parquet_file_batches(request: ReadRequest, source) -> Iterator[pa.Table]:
    path, columns, batch_rows, rows = (request.path, request.columns, request.batch_rows,
                                       request.rows)
    # Without pre-buffering: the default reads ahead most of the file, so memory would
    # grow with file size instead of staying at one batch.
    parquet = pq.ParquetFile(source, pre_buffer=False)
    schema = parquet.schema_arrow
    cols = resolve_columns(path, schema.names, columns, request.ids)
    request.report.ids_generated = cols.review_id is None
    text_type = schema.field(cols.text).type
    if not _is_text_type(_plain_type(text_type)):
        raise UnreadableFileError(path, f"column {cols.text!r} holds {text_type}, not text; "
                                        "write the reviews as a string column")
    if cols.review_id is not None:
        id_type = schema.field(cols.review_id).type
        if not (_is_text_type(_plain_type(id_type)) or pa.types.is_integer(_plain_type(id_type))):
            raise UnreadableFileError(path, f"column {cols.review_id!r} holds {id_type}; "
                                            "review ids must be strings or integers")
    wanted = list(dict.fromkeys([*(c for c in (cols.review_id, cols.text, cols.label,
                                               cols.group, cols.slice) if c is not None),
                                 *(name for name, _ in cols.extra)]))
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
    batches = (_plain_strings(path, pa.Table.from_batches([b]), cols) for b in
               parquet.iter_batches(batch_size=batch_rows, columns=wanted, row_groups=groups))
    yield from rebatch(batches, cols, columns, batch_rows, first_row)


def _plain_type(data_type: pa.DataType) -> pa.DataType:
    return data_type.value_type if pa.types.is_dictionary(data_type) else data_type


def _is_text_type(data_type: pa.DataType) -> bool:
    """Types a user sees as plain strings: pandas writes ``category`` as a dictionary,
    ``string[pyarrow]`` as large_string; newer writers use string_view; bytes count when
    they hold UTF-8."""
    return (pa.types.is_string(data_type) or pa.types.is_large_string(data_type)
            or pa.types.is_string_view(data_type) or pa.types.is_binary(data_type)
            or pa.types.is_large_binary(data_type) or pa.types.is_binary_view(data_type))


def _plain_strings(path, table: pa.Table, cols: Columns) -> pa.Table:
    """``table`` with its id and text columns as plain ``string`` (dictionaries decoded),
    so batches of row groups with different dictionaries or types concatenate."""
    for name in dict.fromkeys((cols.review_id, cols.text, cols.label, cols.group, cols.slice)):
        if name is None:
            continue
        column = table.column(name)
        data_type = column.type
        if pa.types.is_dictionary(data_type):
            column, data_type = column.cast(data_type.value_type), data_type.value_type
        if name in (cols.review_id, cols.text) and _is_text_type(data_type) or \
                pa.types.is_integer(data_type) and name == cols.review_id:
            try:
                column = column.cast(pa.string())
            except pa.ArrowInvalid as exc:
                raise UnreadableFileError(path, f"column {name!r} holds bytes that are not "
                                                f"UTF-8 text ({exc}); write it as a string "
                                                "column") from exc
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


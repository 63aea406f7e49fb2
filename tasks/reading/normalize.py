"""From the columns a reader parsed to batches of ``NORMALIZED_SCHEMA``: labels mapped to
1/0/-1, texts in one Unicode spelling, source rows numbered, generated ids filled in
(``normalize_table``), tables re-cut into batches of ``batch_rows`` (``rebatch``)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.reading.columns import ColumnMapping, Columns
from tasks.reading.passthrough import extra_array
from tasks.reading.schema import GROUPED_SCHEMA, NORMALIZED_SCHEMA

# Characters removed from texts before anything reads them: zero-width spaces and
# joiners, word joiner, and a byte-order mark inside a text. They are invisible to a
# reader but split the words a model sees.
_ZERO_WIDTH = "[\u200b\u200c\u200d\u2060\ufeff]"
# CJK compatibility ideographs: Hanja that KS X 1001 (cp949) encodes twice for their
# readings. NFC would merge them into the unified ones; they are kept as written.
_COMPAT_IDEOGRAPHS = re.compile("([\uf900-\ufaff\U0002f800-\U0002fa1f]+)")


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


def normalize_text(texts: pa.Array) -> pa.Array:
    """``texts`` without zero-width characters and in Unicode NFC.

    The same words typed on macOS (NFD: 한 as three jamo) or pasted with zero-width
    spaces read as the same characters, so training and scoring, which both read
    through here, see one spelling. NFC, not NFKC: NFKC would also rewrite
    compatibility characters (the jamo of ㅋㅋ, full-width letters) that models
    trained before learned as they were.
    """
    # Only a row with a character outside ASCII can change (the zero-width characters
    # and every spelling NFC rewrites are outside it), so the kernels below run on those
    # rows alone: most English reviews are ASCII throughout.
    changeable = pc.invert(pc.fill_null(pc.string_is_ascii(texts), True))
    if len(texts) == 0 or not pc.any(changeable).as_py():
        return texts  # nothing to normalize (pure ASCII, or all null)
    if pc.all(changeable).as_py():
        return _normalized(texts)
    before = texts.filter(changeable)
    after = _normalized(before)
    return texts if after.equals(before) else pc.replace_with_mask(texts, changeable, after)


def _normalized(texts: pa.Array) -> pa.Array:
    """``normalize_text`` of every row of ``texts``."""
    texts = pc.replace_substring_regex(texts, _ZERO_WIDTH, "")
    normal = pc.utf8_normalize(texts, "NFC")
    compat = pc.and_(pc.not_equal(normal, texts),
                     pc.match_substring_regex(texts, _COMPAT_IDEOGRAPHS.pattern))
    if not pc.any(compat).as_py():
        return normal
    fixed = normal.to_pylist()
    for row in np.flatnonzero(compat.to_numpy(zero_copy_only=False)).tolist():
        # rare: normalize around the compatibility ideographs, keeping them
        parts = _COMPAT_IDEOGRAPHS.split(texts[row].as_py())
        fixed[row] = "".join(part if index % 2 else unicodedata.normalize("NFC", part)
                             for index, part in enumerate(parts))
    return pa.array(fixed, pa.string())


def normalize_table(table: pa.Table, cols: Columns, first_row: int, columns: ColumnMapping,
                    read_error: pa.Array | None = None) -> pa.Table:
    """``table`` (the columns ``cols`` names) as a batch of ``NORMALIZED_SCHEMA`` (with
    ``group``: ``GROUPED_SCHEMA``), its rows numbered from ``first_row``; ``read_error``
    holds the reason of each row that could not be parsed (None: every row parsed)."""
    n = table.num_rows
    if cols.label is not None:
        label_raw = table.column(cols.label).combine_chunks().cast(pa.string())
        label = map_labels(label_raw, columns)
    else:
        label_raw = pa.nulls(n, pa.string())
        label = pa.nulls(n, pa.int8())
    source_row = pa.array(range(first_row, first_row + n), pa.int64())
    if cols.review_id is None:
        review_id = pc.binary_join_element_wise(cols.id_prefix, source_row.cast(pa.string()), "")
    else:
        review_id = table.column(cols.review_id).combine_chunks().cast(pa.string())
    arrays = [
        source_row,
        review_id,
        normalize_text(table.column(cols.text).combine_chunks().cast(pa.string())),
        label,
        label_raw,
        read_error if read_error is not None else pa.nulls(n, pa.string()),
    ]
    if cols.with_group:
        grouped = [table.column(name).combine_chunks().cast(pa.string()) if name is not None
                   else pa.nulls(n, pa.string()) for name in (cols.group, cols.slice)]
        normalized = pa.Table.from_arrays([*arrays, *grouped], schema=GROUPED_SCHEMA)
    else:
        normalized = pa.Table.from_arrays(arrays, schema=NORMALIZED_SCHEMA)
    for name, output in cols.extra:
        normalized = normalized.append_column(output, extra_array(table.column(name)))
    return normalized


def rebatch(tables: Iterator[pa.Table], cols: Columns, columns: ColumnMapping,
            batch_rows: int, first_row: int = 1,
            before_last: Callable[[pa.Table], None] | None = None) -> Iterator[pa.Table]:
    """Re-cut incoming tables into batches of ``batch_rows`` and normalize them.

    With ``before_last``, the file's last row is held back until every table is in and
    ``before_last(rows not yielded yet)`` has run: it may raise, and the last row is
    the one an unclosed quote would have swallowed the rest of the file into.
    """
    pending: list[pa.Table] = []
    pending_rows = 0
    next_row = first_row
    keep = 1 if before_last is not None else 0
    for table in tables:
        pending.append(table)
        pending_rows += table.num_rows
        while pending_rows - keep >= batch_rows:
            merged = pa.concat_tables(pending)
            head, rest = merged.slice(0, batch_rows), merged.slice(batch_rows)
            yield normalize_table(head, cols, next_row, columns)
            next_row += batch_rows
            pending, pending_rows = [rest], rest.num_rows
    if pending_rows:
        rest = pa.concat_tables(pending)
        if before_last is not None:
            before_last(rest)
        yield normalize_table(rest, cols, next_row, columns)


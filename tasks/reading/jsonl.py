"""JSON Lines (``.jsonl``, ``.ndjson``: one object a line) and JSON (``.json``).

A ``.json`` holding one array of objects is streamed element by element, never held
whole; a ``.json`` starting with ``{`` is read as JSON Lines. Each object's fields are
matched on their own: objects need not share keys, their order or the alias they use.
One bad line or element (not valid JSON, not an object, no text field, a text that is
not a string, bytes the file's encoding cannot decode, a string holding half of a
surrogate pair such as ``"\\ud83d"``) is one rejected row. Integer ids of any size and
decimal ids keep every digit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import orjson
import pyarrow as pa

from tasks.reading.columns import (
    ROLES,
    ColumnMapping,
    Columns,
    ColumnsError,
    GeneratedIds,
    carries_training_columns,
    find_columns,
    pick,
)
from tasks.reading.encodings import has_surrogate, has_undecodable, shown, undecodable_reason
from tasks.reading.normalize import normalize_table
from tasks.reading.passthrough import extra_columns, json_value
from tasks.reading.request import ReadRequest
from tasks.reading.streams import MAX_RAW_CHARS, LongLine, bounded_lines, open_text, too_long_reason


@dataclass
class _JsonItem:
    """One JSON Lines line or array element: its value, or why it has none."""

    value: object = None
    error: str | None = None
    raw: str | None = None  # the line, kept to re-read numbers exactly or to quarantine
    undecodable: bool = False  # rejected for bytes the encoding cannot decode


def read_json(request: ReadRequest) -> Iterator[pa.Table]:
    """JSON Lines (one object a line), or for ``.json`` starting with '[' one array of
    objects, streamed element by element. One bad line or element is one rejected row.

    Each object's fields are matched on their own (objects need not share keys, their
    order or the alias they use): an object without a text field is one rejected row.
    Whether the file has ids is decided by the first object with a text field; in a
    file with ids, an object without one fails validation (review_id not null).
    """
    columns, batch_rows, ids, report, limit_chars = (request.columns, request.batch_rows,
                                                     request.ids, request.report,
                                                     request.limit_chars)
    array = request.kind == "json" and request.sample.lstrip("\ufeff \t\r\n").startswith("[")
    report.layout = "json array" if array else "json lines"
    kind = "element" if array else "line"
    by_keys: dict[tuple, tuple | str] = {}  # an object's keys -> their roles, or why none
    has_ids: bool | None = None
    values: dict[str, list] = {key: [] for key in (*ROLES, "error")}
    extra: tuple[tuple[str, str], ...] = ()  # decided with has_ids: tasks.reading.passthrough
    carried: dict[str, list] = {}
    row = 0
    first_row = 1
    with open_text(request.path, request.gzipped, request.max_decompressed_bytes,
                   request.encoding, newline="\n") as text:
        items = (_json_array_items(text, limit_chars, request.encoding) if array
                 else _json_line_items(text, limit_chars, request.encoding))
        for item in items:
            row += 1
            record_id = body = label = group = sliced = None
            error = item.error
            record = item.value
            if item.undecodable:
                report.note_undecodable(error)
            if error is not None:
                body = shown(item.raw[:MAX_RAW_CHARS]) if item.raw else None
            elif not isinstance(record, dict):
                error = f"{kind} {row} is a JSON {type(record).__name__}, not an object"
            else:
                keys = tuple(record)
                roles = by_keys.get(keys)
                if roles is None:
                    if len(by_keys) > 1024:
                        by_keys.clear()  # objects with ever new keys: bound the memory
                    try:
                        roles = find_columns(list(keys), columns, "the object")
                    except ColumnsError as exc:
                        roles = str(exc)
                    by_keys[keys] = roles
                if isinstance(roles, str):
                    error = f"{kind} {row}: {roles}"
                    roles = (pick(list(keys), columns.review_id), None, None, None, None)
                elif has_ids is None:
                    has_ids = roles[0] is not None
                    report.ids_generated = not has_ids
                    extra = extra_columns(list(keys), list(roles), columns)
                    carried = {output: [None] * len(values["text"]) for _, output in extra}
                id_key, text_key, label_key, group_key, slice_key = roles
                if id_key is not None:
                    raw_id = record.get(id_key)
                    if isinstance(raw_id, float) and item.raw is not None:
                        # orjson turns integers past 64 bits into floats (1.2345678901234568e+29):
                        # the standard parser keeps every digit.
                        raw_id = json.loads(item.raw, parse_float=Decimal).get(id_key)
                    record_id = _scalar_text(raw_id)
                if text_key is not None:
                    value = record.get(text_key)
                    if value is None or isinstance(value, str):
                        body = value
                    else:
                        error = (f"field {text_key!r} is a JSON {type(value).__name__}, "
                                 "not a string")
                if label_key is not None:
                    label = _scalar_text(record.get(label_key))
                if group_key is not None:
                    group = _scalar_text(record.get(group_key))
                if slice_key is not None:
                    sliced = _scalar_text(record.get(slice_key))
                if array and "\\u" in (item.raw or "") and any(
                        has_surrogate(v) for v in (record_id, body, label, group, sliced) if v):
                    # Python's parser keeps "\ud83d" without its pair as a lone surrogate
                    # (orjson, which reads JSON Lines, rejects the line).
                    error = (f"{kind} {row}: a string holds half of a surrogate pair (an "
                             "escape such as \\ud83d without its partner), which is no "
                             "character; write the character whole")
                    record_id, body, label, group, sliced = (None, shown(item.raw or ""), None,
                                                             None, None)
            values["review_id"].append(record_id)
            values["group"].append(group)
            values["slice"].append(sliced)
            values["text"].append(body)
            values["label"].append(label)
            values["error"].append(error)
            for name, output in extra:
                carried[output].append(json_value(record.get(name))
                                       if isinstance(record, dict) else None)
            if len(values["text"]) == batch_rows:
                yield _json_table(values, carried, has_ids is False, ids, first_row, columns)
                first_row += batch_rows
                values = {key: [] for key in values}
                carried = {key: [] for key in carried}
    if values["text"]:
        yield _json_table(values, carried, has_ids is False, ids, first_row, columns)


def _json_line_items(text, limit_chars: int, encoding: str) -> Iterator[_JsonItem]:
    for number, line in enumerate(bounded_lines(text, limit_chars), start=1):
        if isinstance(line, LongLine):
            yield _JsonItem(error=too_long_reason(f"line {number}", line.chars, limit_chars),
                            raw=line.head)
            continue
        if not line.strip():
            continue  # blank lines separate nothing in JSON Lines
        if has_undecodable(line):
            yield _JsonItem(error=undecodable_reason(f"line {number}", line, encoding),
                            raw=line, undecodable=True)
            continue
        try:
            yield _JsonItem(orjson.loads(line), raw=line)
        except orjson.JSONDecodeError as exc:
            yield _JsonItem(error=f"line {number} is not valid JSON ({exc})", raw=line)


_SPACE = re.compile(r"[ \t\r\n\ufeff]*")


# Outside a string, the characters that open or close an element; inside, its end.
_JSON_STRUCTURE = re.compile(r'["{}\[\],]')
_STRING_END = re.compile(r'["\\]')


def _json_array_items(text, limit_chars: int, encoding: str = "utf-8",
                      chunk: int = 1 << 20) -> Iterator[_JsonItem]:
    """The elements of one JSON array, read ``chunk`` characters at a time.

    Memory holds the current chunk and the current element, never the whole array. An
    element that is not valid JSON ends the array: what follows cannot be told apart
    from it, so it is one rejected row holding the start of the rest. An element longer
    than ``limit_chars`` is one rejected row, scanned past chunk by chunk (strings and
    brackets tracked, nothing parsed or kept). An element holding bytes that did not
    decode in ``encoding`` is one rejected row naming its number and line.
    """
    # Python's parser: integers of any size stay exact, decimals keep their digits.
    decoder = json.JSONDecoder(parse_float=Decimal)
    buffer, pos, eof = "", 0, False
    lines_before = 0  # line breaks in what was read and dropped from the buffer
    # The buffer may hold undecodable bytes or \u escapes (a lone surrogate?): only then
    # is each element's text looked at (a check per chunk, not per element).
    suspect = False

    def line_at(where: int) -> int:
        return lines_before + buffer.count("\n", 0, where) + 1

    def fill() -> None:
        nonlocal buffer, pos, eof, lines_before, suspect
        lines_before += buffer.count("\n", 0, pos)
        buffer = buffer[pos:]
        pos = 0
        # doubling (a large element is O(size)), up to just past the element limit
        more = text.read(max(chunk, min(len(buffer), limit_chars + chunk - len(buffer))))
        eof = not more
        buffer += more
        suspect = has_undecodable(buffer) or "\\u" in buffer

    def skip_space() -> None:
        nonlocal pos
        while True:
            pos = _SPACE.match(buffer, pos).end()
            if pos < len(buffer) or eof:
                return
            fill()

    def skip_element() -> int | None:
        """Move ``pos`` past the element starting there; its length, or None if the
        file ends inside it."""
        nonlocal pos, buffer, lines_before
        depth, in_string, escaped, length = 0, False, False, 0
        while True:
            if pos >= len(buffer):
                length += len(buffer)
                lines_before += buffer.count("\n")
                buffer, pos = "", 0
                if eof:
                    return None
                fill()
                continue
            if escaped:
                pos, escaped = pos + 1, False
                continue
            match = (_STRING_END if in_string else _JSON_STRUCTURE).search(buffer, pos)
            if match is None:
                pos = len(buffer)
                continue
            found, pos = match.group(), match.end()
            if in_string:
                escaped, in_string = found == "\\", found != '"'
            elif found == '"':
                in_string = True
            elif found in "{[":
                depth += 1
            elif found in "}]" and depth:
                depth -= 1
            elif depth == 0 and found in ",]":
                pos -= 1
                return length + pos

    fill()
    skip_space()
    if buffer[pos:pos + 1] != "[":
        yield _JsonItem(error="the file does not start with a JSON array '['",
                        raw=buffer[pos:pos + 1000])
        return
    pos += 1
    number = 0
    while True:
        skip_space()
        if pos >= len(buffer):
            yield _JsonItem(error=f"the array ends after element {number} without its ']'",
                            raw="")
            return
        if buffer[pos] == "]":
            return
        if number:
            if buffer[pos] != ",":
                yield _JsonItem(error=f"expected ',' or ']' after element {number}, found "
                                      f"{buffer[pos]!r}; the rest of the array cannot be read",
                                raw=buffer[pos:pos + 1000])
                return
            pos += 1
            skip_space()
        number += 1
        too_long = False
        while True:
            try:
                value, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError as exc:
                if len(buffer) - pos > limit_chars:
                    too_long = True
                    break
                if eof:
                    yield _JsonItem(error=f"element {number} is not valid JSON ({exc.msg}); the "
                                          "rest of the array cannot be read",
                                    raw=buffer[pos:pos + 1000])
                    return
                fill()
                continue
            if end == len(buffer) and not eof:
                fill()  # a number may go on in the next chunk
                continue
            break
        if not too_long:
            item = _JsonItem(value)
            if suspect:
                item.raw = buffer[pos:end]
                if has_undecodable(item.raw):
                    where = f"element {number} (line {line_at(pos)})"
                    item = _JsonItem(error=undecodable_reason(where, item.raw, encoding),
                                     raw=item.raw, undecodable=True)
            pos = end
            yield item
            continue
        head = buffer[pos:pos + MAX_RAW_CHARS]
        length = skip_element()
        if length is None:
            yield _JsonItem(error=f"element {number} never ends; the array ends inside it",
                            raw=head)
            return
        yield _JsonItem(error=too_long_reason(f"element {number}", length, limit_chars), raw=head)


def _scalar_text(value) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _json_table(values: dict[str, list], carried: dict[str, list], generated: bool,
                ids: GeneratedIds, first_row: int, columns: ColumnMapping) -> pa.Table:
    table = pa.table({key: pa.array(values[key], pa.string()) for key in ROLES}
                     | {key: pa.array(carried[key], pa.string()) for key in carried})
    has_label = any(label is not None for label in values["label"])
    # Decided by the settings, not by the objects seen so far: every batch of the file
    # has the same columns, even one of bad lines only.
    normalized = Columns(None if generated else "review_id", "text",
                         "label" if has_label else None, ids.prefix() if generated else None,
                         "group" if columns.group else None,
                         carries_training_columns(columns), "slice" if columns.slice else None,
                         tuple((output, output) for output in carried))
    return normalize_table(table, normalized, first_row, columns,
                           pa.array(values["error"], pa.string()))

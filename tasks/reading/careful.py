"""The careful path for CSV and TSV: Python's ``csv`` module, line by line.

Taken when pyarrow's fast parse cannot be trusted (a malformed line, a quote still open
at the end of the file; ``tasks.reading.delimited``), from the first row the fast path
did not yield. Each bad record becomes one rejected row that keeps its raw lines and
names them in ``read_error``: a record with the wrong number of fields, a line the
strict parser rejects, a quote that never closes (only the line it opened on is
rejected; the lines after it are read again as rows), a line too long for any record
to hold a scorable text, a record holding bytes the file's encoding cannot decode
(shown as ``\\xff``, counted in ``ReadReport.undecodable``). ``ReadReport.careful`` says
why the path was taken.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from tasks.reading.columns import ROLES, ColumnMapping, Columns
from tasks.reading.encodings import has_undecodable, shown, undecodable_reason
from tasks.reading.normalize import normalize_table
from tasks.reading.request import ReadRequest
from tasks.reading.streams import MAX_RAW_CHARS, LongLine, bounded_lines, open_text, too_long_reason


def csv_dialect(delimiter: str, quoted: bool, strict: bool) -> dict:
    """``csv.reader``'s options for a file quoted the CSV way (``quoted``) or not (NSMC's
    TSV); both parsers of delimited text read with them."""
    if quoted:
        return {"delimiter": delimiter, "quotechar": '"', "doublequote": True, "strict": strict}
    return {"delimiter": delimiter, "quoting": csv.QUOTE_NONE}


class _Lines:
    """The lines of a text stream, handed to ``csv.reader`` one at a time.

    Remembers the lines the current record took (``taken``, from line number
    ``first``), and can push lines back to be read again: after a quote that never
    closes, the lines it swallowed are rows of their own.
    """

    def __init__(self, source):
        self._source = iter(source)
        self._back: deque[str] = deque()
        self.taken: list[str] = []
        self.next_number = 1
        self.first = 1

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._back.popleft() if self._back else next(self._source)
        self.next_number += 1
        if isinstance(line, LongLine):
            raise _TooLong(line)
        self.taken.append(line)
        return line

    def begin(self) -> None:
        self.taken = []
        self.first = self.next_number

    def push_back(self, lines: list[str]) -> None:
        self._back.extendleft(reversed(lines))
        self.next_number -= len(lines)


class _TooLong(Exception):
    def __init__(self, line: LongLine):
        super().__init__("a line too long to read")
        self.line = line


@dataclass
class _Record:
    fields: list[str] | None  # None: rejected
    raw: str
    error: str | None = None
    undecodable: bool = False  # rejected for bytes the encoding cannot decode


def _records(lines: _Lines, delimiter: str, quoted: bool, width: int,
             limit_chars: int = 0, encoding: str = "utf-8") -> Iterator[_Record]:
    """Records of a delimited text, each good or rejected with its line numbers.

    Blank lines are skipped (as pyarrow does). A record with the wrong number of fields,
    or a line Python's strict parser rejects, is rejected whole. A quote that never
    closes (the file ends, or the field outgrows csv's field size limit, inside it)
    rejects only the line it opened on; the lines after it are read again as records.
    A line longer than ``limit_chars`` rejects its record (quoted: up to the line where
    its quotes balance) without being held. A record holding bytes that did not decode
    in ``encoding`` is rejected whole, however many lines its quoted fields span.
    """
    reader = csv.reader(lines, **csv_dialect(delimiter, quoted, strict=True))
    while True:
        lines.begin()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except _TooLong as exc:
            yield _long_record(lines, exc.line, quoted, limit_chars)
            continue
        except csv.Error as exc:
            taken, first, message = lines.taken, lines.first, str(exc)
            if quoted and ("unexpected end of data" in message or "field limit" in message):
                lines.push_back(taken[1:])
                yield _Record(None, taken[0], f"line {first}: a quote opened in this line is "
                              "never closed, so the line is rejected and the lines after it "
                              "are read again as rows")
                continue
            fields = None
            if len(taken) == 1:
                # Like pyarrow, read 'a,"b"c' as 'bc' rather than lose the row.
                lenient = list(csv.reader(taken, **csv_dialect(delimiter, quoted, strict=False)))
                fields = lenient[0] if len(lenient) == 1 else None
            if fields is None:
                yield _Record(None, "".join(taken), f"{_lines_named(first, len(taken))}: "
                                                    f"cannot be parsed ({message})")
                continue
        if not fields:
            continue  # a blank line
        if len(fields) != width:
            yield _Record(None, "".join(lines.taken),
                          f"{_lines_named(lines.first, len(lines.taken))}: expected {width} "
                          f"fields, found {len(fields)}")
            continue
        if any(map(has_undecodable, fields)):
            raw = "".join(lines.taken)
            yield _Record(None, raw, undecodable_reason(
                _lines_named(lines.first, len(lines.taken)), raw, encoding), undecodable=True)
            continue
        yield _Record(fields, "")


def _long_record(lines: _Lines, long: LongLine, quoted: bool, limit: int) -> _Record:
    """The rejected record a too-long line belongs to, read to its end: with quoting, a
    record goes on while its quotes are unbalanced (a field with line breaks)."""
    first, before = lines.first, lines.taken
    raw = "".join(before)[:MAX_RAW_CHARS]
    raw += long.head[:MAX_RAW_CHARS - len(raw)]
    chars = sum(map(len, before)) + long.chars
    quotes = sum(line.count('"') for line in before) + long.quotes
    while quoted and quotes % 2:
        lines.taken = []  # read past, not kept
        try:
            line = next(lines)
        except StopIteration:
            break
        except _TooLong as exc:
            chars, quotes = chars + exc.line.chars, quotes + exc.line.quotes
            continue
        chars, quotes = chars + len(line), quotes + line.count('"')
    count = lines.next_number - first
    return _Record(None, raw, too_long_reason(_lines_named(first, count), chars, limit))


def _lines_named(first: int, count: int) -> str:
    return f"line {first}" if count == 1 else f"lines {first}-{first + count - 1}"


def careful_delimited(request: ReadRequest, quoted: bool, names: list[str], cols: Columns,
                      skip: int) -> Iterator[pa.Table]:
    """The same rows as pyarrow's parse (``tasks.reading.delimited``), parsed line by line
    by Python's csv, with malformed lines as rejected rows; the first ``skip`` rows are not
    yielded again."""
    columns, batch_rows, limit_chars = request.columns, request.batch_rows, request.limit_chars
    delimiter = "\t" if request.kind == "tsv" else ","
    positions = [names.index(name) if name is not None else None
                 for name in (cols.review_id, cols.text, cols.label, cols.group, cols.slice)]
    out_cols = Columns("review_id" if cols.review_id else None, "text",
                       "label" if cols.label else None, cols.id_prefix,
                       "group" if cols.group else None, cols.with_group,
                       "slice" if cols.slice else None,
                       tuple((output, output) for _, output in cols.extra))
    extra = [(names.index(name), output) for name, output in cols.extra]
    values: dict[str, list] = {key: [] for key in (*ROLES, "error")}
    carried: dict[str, list] = {output: [] for _, output in cols.extra}
    row = 0
    with open_text(request.path, request.gzipped, request.max_decompressed_bytes,
                   request.encoding, newline="") as text:
        # csv's own cap on a field (128 KiB, process-wide) would reject long reviews
        # a record of ``limit_chars`` may hold; lines are capped by ``bounded_lines``.
        csv.field_size_limit(max(csv.field_size_limit(), limit_chars))
        lines = _Lines(bounded_lines(text, limit_chars))
        records = _records(lines, delimiter, quoted, len(names), limit_chars, request.encoding)
        next(records, None)  # the header
        for record in records:
            row += 1
            if row <= skip:
                continue
            if record.undecodable:
                request.report.note_undecodable(record.error)
            if record.fields is None:
                picked = [None, shown(record.raw[:MAX_RAW_CHARS]), None, None, None]
            else:
                picked = [record.fields[i] if i is not None else None for i in positions]
            for key, value in zip(ROLES, picked):
                values[key].append(value)
            for index, output in extra:
                fields = record.fields
                carried[output].append(fields[index] if fields is not None
                                       and index < len(fields) else None)
            values["error"].append(record.error)
            if len(values["text"]) == batch_rows:
                yield _careful_table(values, carried, out_cols, row - batch_rows + 1, columns)
                values = {key: [] for key in values}
                carried = {key: [] for key in carried}
    if values["text"]:
        yield _careful_table(values, carried, out_cols, row - len(values["text"]) + 1, columns)


def _careful_table(values: dict[str, list], carried: dict[str, list], cols: Columns,
                   first_row: int, columns: ColumnMapping) -> pa.Table:
    table = pa.table({key: pa.array(values[key], pa.string()) for key in ROLES}
                     | {key: pa.array(carried[key], pa.string()) for key in carried})
    return normalize_table(table, cols, first_row, columns, pa.array(values["error"], pa.string()))



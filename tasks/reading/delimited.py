"""CSV and TSV: a header line naming the columns, then one record a line.

CSV is RFC 4180 (quoted fields, as pandas and Excel write). TSV comes both ways: NSMC
style, where a double quote is plain text, and quoted like CSV (pandas
``to_csv(sep="\\t")``); the start of each file decides (``tsv_is_quoted``). Every
column is read as a string (ids like "007" keep their zeros). Blank lines are skipped.

Files are parsed by pyarrow (fast, multi-threaded, in blocks, so memory stays flat for
any file size). When pyarrow meets a malformed line, or a quote still open at the end
of the file, the file is read again from the first row not yet yielded by the careful
path (``tasks.reading.careful``), which rejects bad lines one by one.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from tasks.reading.careful import careful_delimited, csv_dialect
from tasks.reading.columns import Columns, resolve_columns
from tasks.reading.encodings import has_undecodable, undecodable_reason
from tasks.reading.normalize import rebatch
from tasks.reading.request import ReadRequest
from tasks.reading.schema import UnreadableFileError
from tasks.reading.streams import open_bytes


class _CarefulRead(Exception):
    """pyarrow's parse cannot be trusted from here on: read the rest line by line."""


# A field that starts with a quote (at a line start or after a tab).
_QUOTE_OPENS = re.compile(r'(?:^|\t)"', re.MULTILINE)
# A whole quoted field: its content may hold doubled quotes, tabs and line breaks.
_QUOTED_FIELD = re.compile(r'(?:^|\t)"([^"]*(?:""[^"]*)*)"(?=\t|\r|\n|$)', re.MULTILINE)
# Characters of the sample both readings of a TSV are compared on: enough rows to tell
# them apart (thousands of reviews), few enough to cost milliseconds, not tens of them.
_COMPARE_CHARS = 1 << 18


def tsv_is_quoted(sample: str, complete: bool = True) -> bool:
    """Whether a TSV file quotes its fields the CSV way, judged from its start ``sample``.

    Quoted (pandas ``to_csv(sep="\\t")``, Excel): a field holding a tab, a line break or
    a double quote is written in double quotes, inner quotes doubled. Unquoted (NSMC):
    a double quote is text. The file is taken as quoted only on evidence only quoting
    explains (a quoted field holding a doubled quote, a tab or a line break, or a
    quoted header) and when, read that way, no more of the sample's rows lack the
    header's number of fields than read the other way. (Misfits, not fits, are
    compared: read unquoted, one quoted record with line breaks becomes several lines
    that may each happen to fit.)
    """
    if not _QUOTE_OPENS.search(sample):
        return False  # no field starts with a quote: both readings are the same
    body = sample if complete else sample[: sample.rfind("\n") + 1]
    first_line = body.split("\n", 1)[0].rstrip("\r")
    header_quoted = bool(first_line) and all(
        len(field) >= 2 and field[0] == field[-1] == '"' for field in first_line.split("\t"))
    evidence = header_quoted or any(
        '""' in m.group(1) or "\t" in m.group(1) or "\n" in m.group(1) or "\r" in m.group(1)
        for m in _QUOTED_FIELD.finditer(body))
    if not evidence:
        return False
    if len(body) > _COMPARE_CHARS:
        body = body[: body.rfind("\n", 0, _COMPARE_CHARS) + 1] or body
    return _misfits(body, quoted=True) <= _misfits(body, quoted=False)


def _misfits(body: str, quoted: bool) -> int:
    """Rows of ``body`` that fail to parse or lack its header's number of fields."""
    reader = csv.reader(io.StringIO(body, newline=""), **csv_dialect("\t", quoted, strict=True))
    width, misfits = None, 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return misfits
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                return misfits  # the sample ends inside a field: what came before counts
            misfits += 1
            continue
        if width is None:
            width = len(fields)
        elif fields:
            misfits += len(fields) != width


def read_delimited(request: ReadRequest) -> Iterator[pa.Table]:
    """The batches of a CSV or TSV file (``request.kind``)."""
    path, sample, report = request.path, request.sample, request.report
    delimiter = "\t" if request.kind == "tsv" else ","
    quoted = request.kind == "csv" or tsv_is_quoted(sample, request.complete)
    report.layout = f"{request.kind} {'quoted' if quoted else 'unquoted'}"
    try:
        names = next(csv.reader(io.StringIO(sample, newline=""),
                                **csv_dialect(delimiter, quoted, strict=False)))
    except StopIteration:
        names = []
    if not any(name.strip() for name in names):
        raise UnreadableFileError(path, "the first line holds no column names; the file "
                                        "needs a header line (review_id, text, label)")
    if any(map(has_undecodable, names)):
        raise UnreadableFileError(path, undecodable_reason(
            "the header line", ",".join(names), request.encoding)
            + "; without its column names no row can be read: write the header again")
    cols = resolve_columns(path, names, request.columns, request.ids)
    report.ids_generated = cols.review_id is None
    yielded = 0
    try:
        for batch in _fast_delimited(request, quoted, names, cols):
            yielded += batch.num_rows
            yield batch
        return
    except _CarefulRead as exc:
        report.careful = str(exc)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        # A malformed line, or bytes that are not valid text (pyarrow's UTF-8 check, or
        # its decoding of another encoding), in the block pyarrow was parsing; the rows
        # before that block are already out.
        report.careful = str(exc)
    yield from careful_delimited(request, quoted, names, cols, skip=yielded)


def _fast_delimited(request: ReadRequest, quoted: bool, names: list[str],
                    cols: Columns) -> Iterator[pa.Table]:
    """pyarrow's multi-threaded CSV reader, streaming blocks of 16 MiB."""
    # NSMC-style TSV does not quote fields: a double quote inside a review is text.
    parse = pacsv.ParseOptions(delimiter="\t" if request.kind == "tsv" else ",",
                               newlines_in_values=quoted, quote_char='"' if quoted else False)
    # Every column read as a string: ids like "007" keep their zeros and a label column
    # of words and numbers does not fail inference.
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    # Rows of a block stay together; a block of 16 MiB keeps memory flat for any file size.
    read = pacsv.ReadOptions(encoding=request.encoding, block_size=16 << 20)
    with open_bytes(request.path, request.gzipped, request.max_decompressed_bytes) as stream:
        reader = pacsv.open_csv(stream, read_options=read, parse_options=parse,
                                convert_options=convert)
        if reader.schema.names != names:  # the header line parsed differently: trust neither
            raise _CarefulRead(f"pyarrow read the header as {reader.schema.names}")
        yield from rebatch((pa.Table.from_batches([b]) for b in reader), cols,
                           request.columns, request.batch_rows,
                           before_last=_check_last_row if quoted else None)


def _check_last_row(rest: pa.Table) -> None:
    """A quote opened and never closed makes pyarrow read the rest of the file, line
    breaks and all, as the last row's field: rows lost without a trace. A line break
    in a field of the last row is the sign; the careful path then tells an unclosed
    quote from a review that really spans lines."""
    for column in rest.columns:
        value = column[len(column) - 1].as_py()
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            raise _CarefulRead("the last row holds a line break: a quote may never close")


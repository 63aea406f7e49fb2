"""Read review files of any supported format as normalized Arrow record batches.

Every reader yields ``pyarrow.Table`` batches of at most ``batch_rows`` rows with the
columns of ``NORMALIZED_SCHEMA``: whatever the file called its columns, and whatever
types it stored them as, downstream code sees ``review_id`` and ``text`` as strings,
``label`` as int8 (1 positive, 0 negative, -1 not understood, null absent), the
1-based ``source_row`` of each row in its file, and ``read_error`` for rows the reader
could parse only partly or not at all (a CSV line with too many fields, a JSON line
that is not an object, a text that is not a string). Such a row keeps the raw line in
``text`` and says why, with its line number, in ``read_error``; validation quarantines
it. Files are streamed, so a file larger than memory is read batch by batch.

A file that cannot be read at all (wrong format, no header, undecodable, no row
parsed) raises ``UnreadableFileError`` with a reason that names the file; the caller
quarantines it whole.

Files as they arrive in the wild (README, "Input files"):

- No id column: each row gets a stable generated id, ``<first 16 hex of the file's
  SHA-256>-row<source_row>`` (same bytes, same ids); ``ReadReport.ids_generated`` says so.
- CSV is RFC 4180 (quoted fields, as pandas and Excel write). TSV comes both ways: NSMC
  style, where a double quote is plain text, and quoted like CSV (pandas
  ``to_csv(sep="\\t")``); the start of each file decides (``tsv_is_quoted``).
- Encodings: UTF-8 (with or without BOM) and UTF-16 with BOM are read as they are; any
  other encoding when named in the ``encodings`` setting or detected unambiguously by
  charset-normalizer (``resolve_encoding``). ``ReadReport.encoding`` records which.
- ``.json`` holding one array of objects is streamed element by element; a ``.json``
  starting with ``{`` is read as JSON Lines.

Delimited files are parsed by pyarrow (fast, multi-threaded). When pyarrow meets a
malformed line, or a quote still open at the end of the file, the file is read again
from the first row not yet yielded by Python's ``csv`` module, which rejects bad lines
one by one (the careful path).

``path`` may also be an ``ObjectPath`` (``s3://...``): text formats are streamed from
the object, Parquet is read with ranged requests (only the row groups needed).
``rows=(start, stop)`` reads one shard of a file: the rows with 0-based index in
``[start, stop)`` (``stop`` None: to the end), numbered as in the whole file. Parquet
shards read only their row groups; text shards parse and skip the rows before theirs.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tasks.reading.columns import ColumnMapping

NORMALIZED_SCHEMA = pa.schema([
    ("source_row", pa.int64()),
    ("review_id", pa.string()),
    ("text", pa.string()),
    ("label", pa.int8()),
    ("label_raw", pa.string()),
    ("read_error", pa.string()),
])
# Batches read with ``with_group=True`` (labeled data for training) carry one more column:
# what the review is about (a movie, a product), from the first ``ColumnMapping.group``
# name the file has; null where it has none.
GROUPED_SCHEMA = NORMALIZED_SCHEMA.append(pa.field("group", pa.string()))

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "json", ".parquet": "parquet", ".pq": "parquet"}

# The start of a text file that decides its encoding and, for TSV, its quoting.
SAMPLE_BYTES = 1 << 20
# Non-ASCII bytes charset-normalizer needs to see before its guess is trusted: on a
# few accented letters it names an encoding at random (latin-1 "très" came back johab).
MIN_DETECT_BYTES = 256
# A rejected row keeps at most this much of its raw line(s).
MAX_RAW_CHARS = 1 << 20
# Characters of a record (a line, a CSV record, a JSON element) beyond the longest
# text allowed: the other fields, and escapes that make the raw text longer than the
# text (a JSON "\ud83d\ude00" is 12 characters for one). A longer record cannot hold
# a text short enough to score, so it is skipped while read, never held whole.
RECORD_ESCAPE_FACTOR = 12
RECORD_SLACK_CHARS = 1 << 20
# Characters removed from texts before anything reads them: zero-width spaces and
# joiners, word joiner, and a byte-order mark inside a text. They are invisible to a
# reader but split the words a model sees.
_ZERO_WIDTH = "[\u200b\u200c\u200d\u2060\ufeff]"
# CJK compatibility ideographs: Hanja that KS X 1001 (cp949) encodes twice for their
# readings. NFC would merge them into the unified ones; they are kept as written.
_COMPAT_IDEOGRAPHS = re.compile("([\uf900-\ufaff\U0002f800-\U0002fa1f]+)")
# Longest record always read whole: a review past max_text_chars but within this is
# read with its id and fails validation by its length, like any other too-long text.
RECORD_MIN_CHARS = 64 << 20
# Encodings that extend another: a file both decode the same way is not ambiguous.
_ENCODING_FAMILY = {"euc_kr": "cp949", "gb2312": "gb18030", "gbk": "gb18030",
                    "shift_jis": "cp932", "ascii": "utf_8"}


class UnreadableFileError(Exception):
    """The whole file cannot be read; ``reason`` says why and what to do."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class FileFormat:
    kind: str  # csv | tsv | jsonl | json | parquet
    gzipped: bool


@dataclass
class ReadReport:
    """What a reader learned about one file while reading it; filled in as it reads.

    ``encoding``: the text encoding used ("" for Parquet). ``ids_generated``: the file
    has no id column, so every ``review_id`` was generated from the content hash and
    row number. ``layout``: how the file was parsed ("csv quoted", "tsv unquoted",
    "json array", ...). ``careful``: why the careful (line by line) path was taken, if
    it was.
    """

    encoding: str = ""
    ids_generated: bool = False
    layout: str = ""
    careful: str = ""


def detect_format(path: Path) -> FileFormat | None:
    """The format a file's name declares, or None if reviewflow does not read it."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if gzipped:
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in _FORMATS:
        return None
    kind = _FORMATS[suffixes[-1]]
    if kind == "parquet" and gzipped:
        return None  # Parquet compresses internally; a gzipped Parquet file is not supported
    return FileFormat(kind, gzipped)


def is_review_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and detect_format(path) is not None


def iter_review_batches(path: Path, columns: ColumnMapping, batch_rows: int,
                        max_decompressed_bytes: int,
                        rows: tuple[int, int | None] | None = None, *,
                        encodings: Sequence[str] = (), detect_encoding: bool = True,
                        sha256: str | None = None,
                        report: ReadReport | None = None,
                        with_group: bool = False,
                        max_text_chars: int | None = None) -> Iterator[pa.Table]:
    """Yield normalized batches of the reviews in ``path`` (of its rows ``rows`` only).

    ``encodings`` are tried, in order, on a text file that is not UTF-8 or UTF-16;
    ``detect_encoding`` lets charset-normalizer name one when none fits. ``sha256`` is
    the file's content hash, the seed of generated ids (computed here if needed and
    not given). ``report``, if given, is filled in with what was found (``ReadReport``).
    ``with_group`` adds the ``group`` column (``GROUPED_SCHEMA``); scoring leaves it out,
    so what it writes does not depend on the file's other columns. ``max_text_chars``
    (default: the setting's default) bounds what one record may hold: a line, CSV
    record or JSON element too long to carry a text of that length is skipped while
    read, in bounded memory, and yielded as a rejected row (``record_chars``).

    Raises ``UnreadableFileError`` if the file's format, encoding, compression or
    columns make it unreadable, or if not one row of it could be parsed. Batches
    already yielded stay valid, so callers that need all-or-nothing handling must
    stage their output until the generator ends.
    """
    fmt = detect_format(path)
    if fmt is None:
        raise UnreadableFileError(path, "unsupported file type; use .csv, .tsv, .jsonl, "
                                        ".json, .parquet (text formats may end in .gz)")
    if path.stat().st_size == 0:
        raise UnreadableFileError(path, "the file is empty")
    report = report if report is not None else ReadReport()
    if not with_group:
        columns = columns.model_copy(update={"group": []})
    ids = _GeneratedIds(path, sha256)
    limit_chars = record_chars(max_text_chars)
    rows_seen = rows_parsed = 0
    first_error: str | None = None
    encoding = ""
    try:
        if fmt.kind == "parquet":
            report.layout = "parquet"
            batches = _parquet_batches(path, columns, batch_rows, rows, ids, report)
        else:
            sample, complete = _head(path, fmt.gzipped, max_decompressed_bytes)
            encoding = resolve_encoding(path, sample, encodings, detect_encoding)
            report.encoding = encoding
            text_sample = _decode_sample(sample, encoding, complete)
            if fmt.kind in ("json", "jsonl"):
                batches = _json_batches(path, fmt, text_sample, encoding, columns, batch_rows,
                                        max_decompressed_bytes, ids, report, limit_chars)
            else:
                batches = _delimited_batches(path, fmt, text_sample, complete, encoding, columns,
                                             batch_rows, max_decompressed_bytes, ids, report,
                                             limit_chars)
        if rows is not None:
            batches = _within(batches, *rows)
        for batch in batches:
            rows_seen += batch.num_rows
            errors = batch.column("read_error")
            rows_parsed += errors.null_count
            if first_error is None and errors.null_count < batch.num_rows:
                first_error = pc.drop_null(errors)[0].as_py()
            yield batch
    except UnreadableFileError:
        raise
    except UnicodeError as exc:
        where = f" after row {rows_seen}" if rows_seen else ""
        raise UnreadableFileError(path, f"is not valid {encoding or 'text'}{where} ({exc}); if "
                                        "the file uses another encoding, name it in the "
                                        "encodings setting (REVIEWFLOW_ENCODINGS=cp949, "
                                        "cp1252, ...)") from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError,
            EOFError, gzip.BadGzipFile) as exc:
        where = f" after row {rows_seen}" if rows_seen else ""
        raise UnreadableFileError(path, f"cannot be read as {fmt.kind}{where}: {exc}") from exc
    if rows_seen == 0:
        raise UnreadableFileError(path, "the file has no data rows")
    if rows_parsed == 0 and rows is None:
        # Every row is a read error: this is no review file of its format at all.
        raise UnreadableFileError(path, f"not one of its {rows_seen} rows could be parsed "
                                        f"as {fmt.kind}; the first: {first_error}")


def record_chars(max_text_chars: int | None) -> int:
    """The longest record (characters) read for texts of at most ``max_text_chars``."""
    if max_text_chars is None:
        from tasks.settings import Settings

        max_text_chars = Settings.model_fields["max_text_chars"].default
    return max(RECORD_ESCAPE_FACTOR * max_text_chars + RECORD_SLACK_CHARS, RECORD_MIN_CHARS)


def _native_path(path: Path) -> bool:
    """Whether pyarrow can open ``path`` itself: it takes paths as UTF-8 only, and a name
    that is not UTF-8 (a Latin-1 ``café.parquet`` in labeled/) is opened by Python."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parquet_row_count(path) -> int:
    """Rows in a Parquet file, from its footer (no data is read)."""
    if isinstance(path, Path) and _native_path(path):
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


# --------------------------------------------------------------------------- encodings

def resolve_encoding(path: Path, sample: bytes, encodings: Sequence[str] = (),
                     detect: bool = True) -> str:
    """The encoding to read a text file in, judged from its first bytes ``sample``.

    In order: a UTF-16 byte-order mark; UTF-8 (with or without its mark); the first of
    ``encodings`` that decodes the sample; charset-normalizer's guess, taken only when
    it is unambiguous (every low-chaos candidate decodes the sample to the same text)
    and rests on at least ``MIN_DETECT_BYTES`` non-ASCII bytes. Otherwise the file is
    unreadable, and the reason names the setting that would make it readable.
    """
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if _decodes(sample, "utf-8"):
        return "utf-8"  # pyarrow skips a UTF-8 byte-order mark itself
    for name in encodings:
        if _decodes(sample, name):
            return name
    guess = (_detected(sample) or _korean(sample)) if detect else None
    if guess is not None:
        return guess
    tried = f" nor as {', '.join(encodings)}" if encodings else ""
    return _undecodable(path, sample, tried, detect)


def _undecodable(path: Path, sample: bytes, tried: str, detect: bool) -> str:
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = f" (byte {exc.start}: {sample[exc.start:exc.start + 4]!r})"
    else:
        at = ""
    detected = " and charset-normalizer could not tell its encoding for sure" if detect else ""
    raise UnreadableFileError(
        path, f"cannot be decoded as UTF-8{at}{tried}{detected}; name the file's encoding in "
              "the encodings setting (REVIEWFLOW_ENCODINGS=cp949 for Korean Windows/EUC-KR "
              "files, cp1252 for Western Windows/latin-1 ones)")


def _decodes(sample: bytes, encoding: str) -> bool:
    """Whether ``sample`` is valid ``encoding`` (a character cut at its end allowed)."""
    try:
        codecs.getincrementaldecoder(encoding)(errors="strict").decode(sample, final=False)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _detected(sample: bytes) -> str | None:
    """charset-normalizer's encoding for ``sample``, if it is sure of it."""
    if sum(1 for byte in sample if byte > 127) < MIN_DETECT_BYTES:
        return None
    from charset_normalizer import from_bytes  # imported only for files that need it

    matches = from_bytes(sample)
    best = matches.best()
    if best is None or best.percent_chaos > 1.0 or not _decodes(sample, best.encoding):
        return None
    text = _decode_sample(sample, best.encoding, complete=False)
    family = _ENCODING_FAMILY.get(best.encoding, best.encoding)
    for match in matches:
        if match.percent_chaos > 1.0 or _ENCODING_FAMILY.get(match.encoding,
                                                             match.encoding) == family:
            continue
        if not _decodes(sample, match.encoding) or \
                _decode_sample(sample, match.encoding, complete=False) != text:
            return None  # cp1250 or cp1252? a wrong guess would silently change the text
    return best.encoding


# Of a Korean text's non-ASCII characters, the least share that is Hangul, and the most
# that is Hanja, archaic jamo or the cp949-only syllables (those EUC-KR lacks): real
# reviews, slang and emoticons included, stay far inside both (README, "Encodings").
KOREAN_MIN_HANGUL = 0.6
KOREAN_MAX_UNUSUAL = 0.1


def _korean(sample: bytes) -> str | None:
    """"cp949" if ``sample`` decodes strictly as cp949 to text that reads as Korean.

    charset-normalizer names cp949 for real reviews but with a "chaos" of up to 8%
    (ㅋㅋ, ㅠㅠ, emoticons), too much to trust its guess. Other bytes that happen to
    decode as cp949 give other characters: Western single-byte text mostly fails to
    decode at all, and otherwise gives cp949-only syllables (a lead byte before an ASCII
    letter); Chinese (GBK) and Japanese (EUC-JP, Shift-JIS) give Hanja, archaic jamo or
    cp949-only syllables.
    """
    if sum(1 for byte in sample if byte > 127) < MIN_DETECT_BYTES or \
            not _decodes(sample, "cp949"):
        return None
    text = _decode_sample(sample, "cp949", complete=False)
    other = "".join(char for char in text if char > "\x7f")
    hangul = sum(1 for char in other if "\uac00" <= char <= "\ud7a3" or "\u3131" <= char <= "\u3163")
    unusual = sum(1 for char in other if "\u3164" <= char <= "\u318e" or "\u4e00" <= char <= "\u9fff"
                  or "\uf900" <= char <= "\ufaff")
    # cp949-only characters: a lead or trail byte below 0xA1 (EUC-KR's are all above).
    pairs = np.frombuffer(other.encode("cp949"), dtype=np.uint8).reshape(-1, 2)
    unusual += int(np.count_nonzero((pairs < 0xA1).any(axis=1)))
    if hangul < KOREAN_MIN_HANGUL * len(other) or unusual > KOREAN_MAX_UNUSUAL * len(other):
        return None
    return "cp949"


def _decode_sample(sample: bytes, encoding: str, complete: bool) -> str:
    decoder = codecs.getincrementaldecoder(_python_codec(encoding))(errors="strict")
    return decoder.decode(sample, final=complete)


def _python_codec(encoding: str) -> str:
    # Python's plain utf-8 codec keeps a byte-order mark as U+FEFF; pyarrow drops it.
    return "utf-8-sig" if encoding == "utf-8" else encoding


# --------------------------------------------------------------------------- helpers

def _within(batches: Iterator[pa.Table], start: int, stop: int | None) -> Iterator[pa.Table]:
    """The rows of ``batches`` whose 0-based index (``source_row`` - 1) is in [start, stop)."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        first = batch.column("source_row")[0].as_py() - 1
        low = max(start - first, 0)
        high = batch.num_rows if stop is None else min(stop - first, batch.num_rows)
        if high > low:
            yield batch.slice(low, high - low)
        if stop is not None and first + batch.num_rows >= stop:
            return  # past the shard: stop reading (the generator below closes the file)


class _LimitedReader(io.RawIOBase):
    """Reads a decompressing stream and fails once more than ``limit`` bytes came out."""

    def __init__(self, raw, limit: int, path: Path):
        self._raw, self._limit, self._path, self._total = raw, limit, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        self._total += len(data)
        if self._total > self._limit:
            raise UnreadableFileError(
                self._path, f"decompresses to more than {self._limit:,} bytes (the "
                            "max_decompressed_bytes setting); split the file or raise the limit")
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ClosingGzip(gzip.GzipFile):
    """A GzipFile over an opened object that also closes the object."""

    def close(self) -> None:
        raw = self.fileobj
        try:
            super().close()
        finally:
            if raw is not None:
                raw.close()


def _open_bytes(path: Path, gzipped: bool, limit: int) -> io.BufferedReader:
    if not isinstance(path, Path):  # an ObjectPath: stream the object
        raw = path.open("rb")
        if gzipped:
            return io.BufferedReader(_LimitedReader(_ClosingGzip(fileobj=raw, mode="rb"), limit,
                                                    path), 1 << 20)
        return raw
    if gzipped:
        return io.BufferedReader(_LimitedReader(gzip.open(path, "rb"), limit, path), 1 << 20)
    return open(path, "rb")  # noqa: SIM115 - closed by the caller


def _head(path: Path, gzipped: bool, limit: int) -> tuple[bytes, bool]:
    """The first ``SAMPLE_BYTES`` of the (decompressed) file, and whether that is all of it."""
    with _open_bytes(path, gzipped, limit) as stream:
        sample = stream.read(SAMPLE_BYTES + 1)
    return sample[:SAMPLE_BYTES], len(sample) <= SAMPLE_BYTES


def _open_text(path: Path, gzipped: bool, limit: int, encoding: str, newline: str | None):
    raw = _open_bytes(path, gzipped, limit)
    return io.TextIOWrapper(raw, encoding=_python_codec(encoding), errors="strict",
                            newline=newline)


@dataclass
class _GeneratedIds:
    """Where generated review ids come from: the file's content hash (computed once,
    only if a file without an id column needs it and the caller did not pass it)."""

    path: Path
    sha256: str | None

    def prefix(self) -> str:
        if self.sha256 is None:
            from tasks.storage.local import file_sha256

            self.sha256 = file_sha256(self.path)
        return f"{self.sha256[:16]}-row"


def _key(name: str) -> str:
    return name.strip().lower().lstrip("\ufeff")


def _pick(names: list[str], wanted: list[str]) -> str | None:
    lowered = {_key(name): name for name in names}
    for candidate in wanted:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


@dataclass(frozen=True)
class _Columns:
    review_id: str | None  # None: ids are generated, ``id_prefix`` + source_row
    text: str
    label: str | None
    id_prefix: str | None = None
    group: str | None = None  # the file's group column, if it has one
    with_group: bool = False  # batches carry a ``group`` column (null without one)


class _NoColumns(Exception):
    """The names lack a text column or name a column twice; the message says which."""


def _names(names: list[str], columns: ColumnMapping, where: str = "the header"
           ) -> tuple[str | None, str, str | None, str | None]:
    """The names among ``names`` of the id, text, label and group columns."""
    review_id = _pick(names, columns.review_id)
    text = _pick(names, columns.text)
    label = _pick(names, columns.label)
    group = _pick(names, columns.group) if columns.group else None
    if text is None:
        raise _NoColumns(f"missing required column text (looked for {', '.join(columns.text)}); "
                         f"{where} has {names}. Rename the column or add its name to the "
                         "column mapping settings")
    keys = [_key(name) for name in names]
    for role, name in (("review_id", review_id), ("text", text), ("label", label),
                       ("group", group)):
        if name is not None and keys.count(_key(name)) > 1:
            # pyarrow would raise KeyError ('Field "text" exists 2 times in schema') far
            # from here; which of the two holds the reviews cannot be guessed.
            raise _NoColumns(f"column {name!r} (the {role} column) appears "
                             f"{keys.count(_key(name))} times in {where} {names}; rename or "
                             "drop the extra one")
    return review_id, text, label, group


def _resolve(path: Path, names: list[str], columns: ColumnMapping,
             ids: _GeneratedIds | None = None) -> _Columns:
    try:
        review_id, text, label, group = _names(names, columns)
    except _NoColumns as exc:
        raise UnreadableFileError(path, str(exc).replace("the header has", "the file has "
                                                         "columns")) from exc
    prefix = None
    if review_id is None:
        if ids is None:
            raise UnreadableFileError(path, "missing required column review_id")
        prefix = ids.prefix()
    return _Columns(review_id, text, label, prefix, group, bool(columns.group))


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
    if len(texts) == 0 or pc.all(pc.string_is_ascii(texts)).as_py() is not False:
        return texts  # nothing to normalize (pure ASCII, or all null)
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


def _normalize(table: pa.Table, cols: _Columns, first_row: int, columns: ColumnMapping,
               read_error: pa.Array | None = None) -> pa.Table:
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
    if not cols.with_group:
        return pa.Table.from_arrays(arrays, schema=NORMALIZED_SCHEMA)
    group = (table.column(cols.group).combine_chunks().cast(pa.string())
             if cols.group is not None else pa.nulls(n, pa.string()))
    return pa.Table.from_arrays([*arrays, group], schema=GROUPED_SCHEMA)


def _rebatch(tables: Iterator[pa.Table], cols: _Columns, columns: ColumnMapping,
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
            yield _normalize(head, cols, next_row, columns)
            next_row += batch_rows
            pending, pending_rows = [rest], rest.num_rows
    if pending_rows:
        rest = pa.concat_tables(pending)
        if before_last is not None:
            before_last(rest)
        yield _normalize(rest, cols, next_row, columns)


# --------------------------------------------------------------------------- CSV and TSV

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
    reader = csv.reader(io.StringIO(body, newline=""), **_dialect("\t", quoted, strict=True))
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


def _dialect(delimiter: str, quoted: bool, strict: bool) -> dict:
    if quoted:
        return {"delimiter": delimiter, "quotechar": '"', "doublequote": True, "strict": strict}
    return {"delimiter": delimiter, "quoting": csv.QUOTE_NONE}


def _delimited_batches(path: Path, fmt: FileFormat, sample: str, complete: bool, encoding: str,
                       columns: ColumnMapping, batch_rows: int, limit: int, ids: _GeneratedIds,
                       report: ReadReport, limit_chars: int) -> Iterator[pa.Table]:
    delimiter = "\t" if fmt.kind == "tsv" else ","
    quoted = fmt.kind == "csv" or tsv_is_quoted(sample, complete)
    report.layout = f"{fmt.kind} {'quoted' if quoted else 'unquoted'}"
    try:
        names = next(csv.reader(io.StringIO(sample, newline=""),
                                **_dialect(delimiter, quoted, strict=False)))
    except StopIteration:
        names = []
    if not any(name.strip() for name in names):
        raise UnreadableFileError(path, "the first line holds no column names; the file "
                                        "needs a header line (review_id, text, label)")
    cols = _resolve(path, names, columns, ids)
    report.ids_generated = cols.review_id is None
    yielded = 0
    try:
        for batch in _fast_delimited(path, fmt, encoding, quoted, names, cols, columns,
                                     batch_rows, limit):
            yielded += batch.num_rows
            yield batch
        return
    except _CarefulRead as exc:
        report.careful = str(exc)
    except pa.ArrowInvalid as exc:
        # A malformed line (or bytes that are not valid text) in the block pyarrow was
        # parsing; the rows before that block are already out.
        report.careful = str(exc)
    yield from _careful_delimited(path, fmt, encoding, quoted, names, cols, columns,
                                  batch_rows, limit, skip=yielded, limit_chars=limit_chars)


def _fast_delimited(path: Path, fmt: FileFormat, encoding: str, quoted: bool, names: list[str],
                    cols: _Columns, columns: ColumnMapping, batch_rows: int,
                    limit: int) -> Iterator[pa.Table]:
    """pyarrow's multi-threaded CSV reader, streaming blocks of 16 MiB."""
    # NSMC-style TSV does not quote fields: a double quote inside a review is text.
    parse = pacsv.ParseOptions(delimiter="\t" if fmt.kind == "tsv" else ",",
                               newlines_in_values=quoted, quote_char='"' if quoted else False)
    # Every column read as a string: ids like "007" keep their zeros and a label column
    # of words and numbers does not fail inference.
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    # Rows of a block stay together; a block of 16 MiB keeps memory flat for any file size.
    read = pacsv.ReadOptions(encoding=encoding, block_size=16 << 20)
    with _open_bytes(path, fmt.gzipped, limit) as stream:
        reader = pacsv.open_csv(stream, read_options=read, parse_options=parse,
                                convert_options=convert)
        if reader.schema.names != names:  # the header line parsed differently: trust neither
            raise _CarefulRead(f"pyarrow read the header as {reader.schema.names}")
        yield from _rebatch((pa.Table.from_batches([b]) for b in reader), cols, columns,
                            batch_rows, before_last=_check_last_row if quoted else None)


def _check_last_row(rest: pa.Table) -> None:
    """A quote opened and never closed makes pyarrow read the rest of the file, line
    breaks and all, as the last row's field: rows lost without a trace. A line break
    in a field of the last row is the sign; the careful path then tells an unclosed
    quote from a review that really spans lines."""
    for column in rest.columns:
        value = column[len(column) - 1].as_py()
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            raise _CarefulRead("the last row holds a line break: a quote may never close")


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
        if isinstance(line, _LongLine):
            raise _TooLong(line)
        self.taken.append(line)
        return line

    def begin(self) -> None:
        self.taken = []
        self.first = self.next_number

    def push_back(self, lines: list[str]) -> None:
        self._back.extendleft(reversed(lines))
        self.next_number -= len(lines)


@dataclass
class _LongLine:
    """A line longer than a record may be: what is kept of it once it was read past."""

    head: str  # its first MAX_RAW_CHARS characters
    chars: int  # its length
    quotes: int  # double quotes in it: whether a quoted field goes on after it


class _TooLong(Exception):
    def __init__(self, line: _LongLine):
        super().__init__("a line too long to read")
        self.line = line


def _bounded_lines(text, limit: int, chunk: int = 1 << 20) -> Iterator[str | _LongLine]:
    """The lines of ``text``; one longer than ``limit`` characters comes as a ``_LongLine``,
    read a chunk at a time and never held whole (a 3 GiB line takes a chunk of memory)."""
    while True:
        line = text.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line[-1] in "\r\n":
            yield line
            continue
        head, chars, quotes = line[:MAX_RAW_CHARS], len(line), line.count('"')
        del line
        while True:
            piece = text.readline(chunk)
            chars += len(piece)
            quotes += piece.count('"')
            if not piece or piece[-1] in "\r\n":
                break
        yield _LongLine(head, chars, quotes)


def _too_long(lines: str, chars: int, limit: int) -> str:
    return (f"{lines}: {chars:,} characters, longer than any record with a text of "
            f"max_text_chars can be ({limit:,}); skipped unread, the rest of the file is read")


@dataclass
class _Record:
    fields: list[str] | None  # None: rejected
    raw: str
    error: str | None = None


def _records(lines: _Lines, delimiter: str, quoted: bool, width: int,
             limit_chars: int = 0) -> Iterator[_Record]:
    """Records of a delimited text, each good or rejected with its line numbers.

    Blank lines are skipped (as pyarrow does). A record with the wrong number of fields,
    or a line Python's strict parser rejects, is rejected whole. A quote that never
    closes (the file ends, or the field outgrows csv's field size limit, inside it)
    rejects only the line it opened on; the lines after it are read again as records.
    A line longer than ``limit_chars`` rejects its record (quoted: up to the line where
    its quotes balance) without being held.
    """
    reader = csv.reader(lines, **_dialect(delimiter, quoted, strict=True))
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
                lenient = list(csv.reader(taken, **_dialect(delimiter, quoted, strict=False)))
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
        yield _Record(fields, "")


def _long_record(lines: _Lines, long: _LongLine, quoted: bool, limit: int) -> _Record:
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
    return _Record(None, raw, _too_long(_lines_named(first, count), chars, limit))


def _lines_named(first: int, count: int) -> str:
    return f"line {first}" if count == 1 else f"lines {first}-{first + count - 1}"


def _careful_delimited(path: Path, fmt: FileFormat, encoding: str, quoted: bool,
                       names: list[str], cols: _Columns, columns: ColumnMapping,
                       batch_rows: int, limit: int, skip: int,
                       limit_chars: int) -> Iterator[pa.Table]:
    """The same rows as ``_fast_delimited``, parsed line by line by Python's csv, with
    malformed lines as rejected rows; the first ``skip`` rows are not yielded again."""
    delimiter = "\t" if fmt.kind == "tsv" else ","
    positions = [names.index(name) if name is not None else None
                 for name in (cols.review_id, cols.text, cols.label, cols.group)]
    out_cols = _Columns("review_id" if cols.review_id else None, "text",
                        "label" if cols.label else None, cols.id_prefix,
                        "group" if cols.group else None, cols.with_group)
    values: dict[str, list] = {"review_id": [], "text": [], "label": [], "group": [],
                               "error": []}
    row = 0
    with _open_text(path, fmt.gzipped, limit, encoding, newline="") as text:
        # csv's own cap on a field (128 KiB, process-wide) would reject long reviews
        # a record of ``limit_chars`` may hold; lines are capped by ``_bounded_lines``.
        csv.field_size_limit(max(csv.field_size_limit(), limit_chars))
        lines = _Lines(_bounded_lines(text, limit_chars))
        records = _records(lines, delimiter, quoted, len(names), limit_chars)
        next(records, None)  # the header
        for record in records:
            row += 1
            if row <= skip:
                continue
            if record.fields is None:
                picked = [None, record.raw[:MAX_RAW_CHARS], None, None]
            else:
                picked = [record.fields[i] if i is not None else None for i in positions]
            for key, value in zip(("review_id", "text", "label", "group"), picked):
                values[key].append(value)
            values["error"].append(record.error)
            if len(values["text"]) == batch_rows:
                yield _careful_table(values, out_cols, row - batch_rows + 1, columns)
                values = {key: [] for key in values}
    if values["text"]:
        yield _careful_table(values, out_cols, row - len(values["text"]) + 1, columns)


def _careful_table(values: dict[str, list], cols: _Columns, first_row: int,
                   columns: ColumnMapping) -> pa.Table:
    table = pa.table({key: pa.array(values[key], pa.string())
                      for key in ("review_id", "text", "label", "group")})
    return _normalize(table, cols, first_row, columns, pa.array(values["error"], pa.string()))


# --------------------------------------------------------------------------- Parquet

def _parquet_batches(path: Path, columns: ColumnMapping, batch_rows: int,
                     rows: tuple[int, int | None] | None, ids: _GeneratedIds,
                     report: ReadReport) -> Iterator[pa.Table]:
    if isinstance(path, Path) and _native_path(path):
        yield from _parquet_file_batches(path, path, columns, batch_rows, rows, ids, report)
    else:
        with path.open("rb") as handle:  # ranged reads of the object, or a name pyarrow refuses
            yield from _parquet_file_batches(path, handle, columns, batch_rows, rows, ids,
                                             report)


def _parquet_file_batches(path, source, columns: ColumnMapping, batch_rows: int,
                          rows: tuple[int, int | None] | None, ids: _GeneratedIds,
                          report: ReadReport) -> Iterator[pa.Table]:
    # Without pre-buffering: the default reads ahead most of the file, so memory would
    # grow with file size instead of staying at one batch.
    parquet = pq.ParquetFile(source, pre_buffer=False)
    schema = parquet.schema_arrow
    cols = _resolve(path, schema.names, columns, ids)
    report.ids_generated = cols.review_id is None
    text_type = schema.field(cols.text).type
    if not _is_text_type(_plain_type(text_type)):
        raise UnreadableFileError(path, f"column {cols.text!r} holds {text_type}, not text; "
                                        "write the reviews as a string column")
    if cols.review_id is not None:
        id_type = schema.field(cols.review_id).type
        if not (_is_text_type(_plain_type(id_type)) or pa.types.is_integer(_plain_type(id_type))):
            raise UnreadableFileError(path, f"column {cols.review_id!r} holds {id_type}; "
                                            "review ids must be strings or integers")
    wanted = [c for c in (cols.review_id, cols.text, cols.label, cols.group) if c is not None]
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
    yield from _rebatch(batches, cols, columns, batch_rows, first_row)


def _plain_type(data_type: pa.DataType) -> pa.DataType:
    return data_type.value_type if pa.types.is_dictionary(data_type) else data_type


def _is_text_type(data_type: pa.DataType) -> bool:
    """Types a user sees as plain strings: pandas writes ``category`` as a dictionary,
    ``string[pyarrow]`` as large_string; newer writers use string_view; bytes count when
    they hold UTF-8."""
    return (pa.types.is_string(data_type) or pa.types.is_large_string(data_type)
            or pa.types.is_string_view(data_type) or pa.types.is_binary(data_type)
            or pa.types.is_large_binary(data_type) or pa.types.is_binary_view(data_type))


def _plain_strings(path, table: pa.Table, cols: _Columns) -> pa.Table:
    """``table`` with its id and text columns as plain ``string`` (dictionaries decoded),
    so batches of row groups with different dictionaries or types concatenate."""
    for name in (cols.review_id, cols.text, cols.label, cols.group):
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


# --------------------------------------------------------------------------- JSON

@dataclass
class _JsonItem:
    """One JSON Lines line or array element: its value, or why it has none."""

    value: object = None
    error: str | None = None
    raw: str | None = None  # the line, kept to re-read numbers exactly or to quarantine


def _json_batches(path: Path, fmt: FileFormat, sample: str, encoding: str,
                  columns: ColumnMapping, batch_rows: int, limit: int, ids: _GeneratedIds,
                  report: ReadReport, limit_chars: int) -> Iterator[pa.Table]:
    """JSON Lines (one object a line), or for ``.json`` starting with '[' one array of
    objects, streamed element by element. One bad line or element is one rejected row.

    Each object's fields are matched on their own (objects need not share keys, their
    order or the alias they use): an object without a text field is one rejected row.
    Whether the file has ids is decided by the first object with a text field; in a
    file with ids, an object without one fails validation (review_id not null).
    """
    array = fmt.kind == "json" and sample.lstrip("\ufeff \t\r\n").startswith("[")
    report.layout = "json array" if array else "json lines"
    kind = "element" if array else "line"
    by_keys: dict[tuple, tuple | str] = {}  # an object's keys -> their roles, or why none
    has_ids: bool | None = None
    values: dict[str, list] = {"review_id": [], "text": [], "label": [], "group": [],
                               "error": []}
    row = 0
    first_row = 1
    with _open_text(path, fmt.gzipped, limit, encoding, newline="\n") as text:
        items = (_json_array_items(text, limit_chars) if array
                 else _json_line_items(text, limit_chars))
        for item in items:
            row += 1
            record_id = body = label = group = None
            error = item.error
            record = item.value
            if error is not None:
                body = item.raw[:MAX_RAW_CHARS] if item.raw else None
            elif not isinstance(record, dict):
                error = f"{kind} {row} is a JSON {type(record).__name__}, not an object"
            else:
                keys = tuple(record)
                roles = by_keys.get(keys)
                if roles is None:
                    if len(by_keys) > 1024:
                        by_keys.clear()  # objects with ever new keys: bound the memory
                    try:
                        roles = _names(list(keys), columns, "the object")
                    except _NoColumns as exc:
                        roles = str(exc)
                    by_keys[keys] = roles
                if isinstance(roles, str):
                    error = f"{kind} {row}: {roles}"
                    roles = (_pick(list(keys), columns.review_id), None, None, None)
                elif has_ids is None:
                    has_ids = roles[0] is not None
                    report.ids_generated = not has_ids
                id_key, text_key, label_key, group_key = roles
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
            values["review_id"].append(record_id)
            values["group"].append(group)
            values["text"].append(body)
            values["label"].append(label)
            values["error"].append(error)
            if len(values["text"]) == batch_rows:
                yield _json_table(values, has_ids is False, ids, first_row, columns)
                first_row += batch_rows
                values = {key: [] for key in values}
    if values["text"]:
        yield _json_table(values, has_ids is False, ids, first_row, columns)


def _json_line_items(text, limit_chars: int) -> Iterator[_JsonItem]:
    for number, line in enumerate(_bounded_lines(text, limit_chars), start=1):
        if isinstance(line, _LongLine):
            yield _JsonItem(error=_too_long(f"line {number}", line.chars, limit_chars),
                            raw=line.head)
            continue
        if not line.strip():
            continue  # blank lines separate nothing in JSON Lines
        try:
            yield _JsonItem(orjson.loads(line), raw=line)
        except orjson.JSONDecodeError as exc:
            yield _JsonItem(error=f"line {number} is not valid JSON ({exc})", raw=line)


_SPACE = re.compile(r"[ \t\r\n\ufeff]*")


# Outside a string, the characters that open or close an element; inside, its end.
_JSON_STRUCTURE = re.compile(r'["{}\[\],]')
_STRING_END = re.compile(r'["\\]')


def _json_array_items(text, limit_chars: int, chunk: int = 1 << 20) -> Iterator[_JsonItem]:
    """The elements of one JSON array, read ``chunk`` characters at a time.

    Memory holds the current chunk and the current element, never the whole array. An
    element that is not valid JSON ends the array: what follows cannot be told apart
    from it, so it is one rejected row holding the start of the rest. An element longer
    than ``limit_chars`` is one rejected row, scanned past chunk by chunk (strings and
    brackets tracked, nothing parsed or kept).
    """
    # Python's parser: integers of any size stay exact, decimals keep their digits.
    decoder = json.JSONDecoder(parse_float=Decimal)
    buffer, pos, eof = "", 0, False

    def fill() -> None:
        nonlocal buffer, pos, eof
        buffer = buffer[pos:]
        pos = 0
        # doubling (a large element is O(size)), up to just past the element limit
        more = text.read(max(chunk, min(len(buffer), limit_chars + chunk - len(buffer))))
        eof = not more
        buffer += more

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
        nonlocal pos, buffer
        depth, in_string, escaped, length = 0, False, False, 0
        while True:
            if pos >= len(buffer):
                length += len(buffer)
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
            pos = end
            yield _JsonItem(value)
            continue
        head = buffer[pos:pos + MAX_RAW_CHARS]
        length = skip_element()
        if length is None:
            yield _JsonItem(error=f"element {number} never ends; the array ends inside it",
                            raw=head)
            return
        yield _JsonItem(error=_too_long(f"element {number}", length, limit_chars), raw=head)


def _scalar_text(value) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _json_table(values: dict[str, list], generated: bool, ids: _GeneratedIds,
                first_row: int, columns: ColumnMapping) -> pa.Table:
    table = pa.table({key: pa.array(values[key], pa.string())
                      for key in ("review_id", "text", "label", "group")})
    has_label = any(label is not None for label in values["label"])
    # Decided by the settings, not by the objects seen so far: every batch of the file
    # has the same columns, even one of bad lines only.
    normalized = _Columns(None if generated else "review_id", "text",
                          "label" if has_label else None, ids.prefix() if generated else None,
                          "group" if columns.group else None, bool(columns.group))
    return _normalize(table, normalized, first_row, columns, pa.array(values["error"], pa.string()))

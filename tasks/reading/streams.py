"""Opening a review file as bytes or text, within the limits the settings set.

A ``.gz`` file is decompressed while read and fails once more than
``max_decompressed_bytes`` came out of it. A text file's first ``SAMPLE_BYTES`` decide
its encoding and, for TSV, its quoting. A record (a line, a CSV record, a JSON element)
longer than ``record_chars(max_text_chars)`` cannot hold a text short enough to
score: it is read past a chunk at a time, never held whole, and becomes one rejected
row keeping at most ``MAX_RAW_CHARS`` of it. ``path`` may be an ``ObjectPath``
(``s3://...``): the object is streamed.

What a format's reader uses: ``open_bytes``, ``open_text``, ``read_head`` (a file's first
``SAMPLE_BYTES``), ``bounded_lines`` with ``LongLine`` (lines, a too-long one read past),
``too_long_reason`` and ``record_chars``.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tasks.reading.encodings import UNDECODABLE_ERRORS, python_codec
from tasks.reading.schema import UnreadableFileError
from tasks.storage.local import open_binary

# The start of a text file that decides its encoding and, for TSV, its quoting.
SAMPLE_BYTES = 1 << 20
# A rejected row keeps at most this much of its raw line(s).
MAX_RAW_CHARS = 1 << 20
# Characters of a record (a line, a CSV record, a JSON element) beyond the longest
# text allowed: the other fields, and escapes that make the raw text longer than the
# text (a JSON "\ud83d\ude00" is 12 characters for one). A longer record cannot hold
# a text short enough to score, so it is skipped while read, never held whole.
RECORD_ESCAPE_FACTOR = 12
RECORD_SLACK_CHARS = 1 << 20
# Longest record always read whole: a review past max_text_chars but within this is
# read with its id and fails validation by its length, like any other too-long text.
RECORD_MIN_CHARS = 64 << 20


def record_chars(max_text_chars: int | None) -> int:
    """The longest record (characters) read for texts of at most ``max_text_chars``;
    ``RECORD_MIN_CHARS`` when the caller sets no limit on a text (None)."""
    if max_text_chars is None:
        return RECORD_MIN_CHARS
    return max(RECORD_ESCAPE_FACTOR * max_text_chars + RECORD_SLACK_CHARS, RECORD_MIN_CHARS)


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


def open_bytes(path: Path, gzipped: bool, limit: int) -> io.BufferedReader:
    """``path``'s bytes, decompressed when ``gzipped`` (failing past ``limit`` bytes out);
    an ``ObjectPath`` is streamed. The caller closes it."""
    raw = open_binary(path)
    if gzipped:
        return io.BufferedReader(_LimitedReader(_ClosingGzip(fileobj=raw, mode="rb"), limit,
                                                path), 1 << 20)
    return raw


def read_head(path: Path, gzipped: bool, limit: int) -> tuple[bytes, bool]:
    """The first ``SAMPLE_BYTES`` of the (decompressed) file, and whether that is all of it."""
    with open_bytes(path, gzipped, limit) as stream:
        sample = stream.read(SAMPLE_BYTES + 1)
    return sample[:SAMPLE_BYTES], len(sample) <= SAMPLE_BYTES


def open_text(path: Path, gzipped: bool, limit: int, encoding: str, newline: str | None):
    """``open_bytes`` decoded in ``encoding``; bytes that do not decode become lone
    surrogates (``tasks.reading.encodings.has_undecodable`` finds them)."""
    raw = open_bytes(path, gzipped, limit)
    # Bytes that do not decode are kept as lone surrogates: the reader quarantines the
    # records that hold them (tasks.reading.encodings).
    return io.TextIOWrapper(raw, encoding=python_codec(encoding), errors=UNDECODABLE_ERRORS,
                            newline=newline)


@dataclass
class LongLine:
    """A line longer than a record may be: what is kept of it once it was read past."""

    head: str  # its first MAX_RAW_CHARS characters
    chars: int  # its length
    quotes: int  # double quotes in it: whether a quoted field goes on after it


def bounded_lines(text, limit: int, chunk: int = 1 << 20) -> Iterator[str | LongLine]:
    """The lines of ``text``; one longer than ``limit`` characters comes as a ``LongLine``,
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
        yield LongLine(head, chars, quotes)


def too_long_reason(lines: str, chars: int, limit: int) -> str:
    """The ``read_error`` of a record (``lines``: where it is) of ``chars`` characters,
    longer than the ``limit`` a record may be."""
    return (f"{lines}: {chars:,} characters, longer than any record with a text of "
            f"max_text_chars can be ({limit:,}); skipped unread, the rest of the file is read")


"""Which encoding a text file is read in (``resolve_encoding``), judged from its first bytes,
and what becomes of the bytes that encoding cannot decode.

UTF-8 (with or without a byte-order mark) and UTF-16 with a byte-order mark are read as
they are; any other encoding when named in the ``encodings`` setting or detected
unambiguously by charset-normalizer, or for Korean text in cp949
(docs/data-contract.md). ``ReadReport.encoding`` records which. A file none of these decode is
unreadable, with a reason that names the setting that would make it readable.

A file that decodes but for a few records (``few_undecodable``) keeps its other rows:
it is read with ``UNDECODABLE_ERRORS``, which turns each byte that does not decode into
a lone surrogate (U+DC80-U+DCFF, never the result of decoding), and the readers
quarantine every record holding one (``has_undecodable``) as a rejected row that shows
the bytes as ``\\xff`` (``shown``) and names them (``undecodable_reason``). More such
records than that, and the file is more likely in another encoding: it is unreadable,
the reason naming the setting.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.reading.schema import UnreadableFileError

# Non-ASCII bytes charset-normalizer needs to see before its guess is trusted: on a
# few accented letters it names an encoding at random (latin-1 "très" came back johab).
MIN_DETECT_BYTES = 256
# Encodings that extend another: a file both decode the same way is not ambiguous.
_ENCODING_FAMILY = {"euc_kr": "cp949", "gb2312": "gb18030", "gbk": "gb18030",
                    "shift_jis": "cp932", "ascii": "utf_8"}


# A text file with at most this many records holding bytes its encoding cannot decode,
# and at most this share of its records, is read with those records quarantined (a stray
# byte, a bad copy, a write cut short); with more, it is more likely in another encoding
# and is quarantined whole, the reason naming the encodings setting.
MAX_UNDECODABLE_RECORDS = 100
MAX_UNDECODABLE_SHARE = 0.05
# How a file is decoded: each byte that does not decode becomes the lone surrogate
# U+DC80 + byte, which no valid text decodes to, so a reader can find and show it.
UNDECODABLE_ERRORS = "surrogateescape"
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_UNDECODABLE_RUN = re.compile("[\udc80-\udcff]+")
# Any lone surrogate: also what a JSON escape such as "\ud83d" without its pair gives.
_SURROGATE = re.compile("[\ud800-\udfff]")


def few_undecodable(bad: int, records: int) -> bool:
    """Whether ``bad`` of ``records`` records holding undecodable bytes are few enough to
    quarantine them alone and read the rest (``MAX_UNDECODABLE_RECORDS`` and ``_SHARE``)."""
    return bad <= MAX_UNDECODABLE_RECORDS and bad <= MAX_UNDECODABLE_SHARE * records


def has_undecodable(text: str) -> bool:
    """Whether ``text`` (decoded with ``UNDECODABLE_ERRORS``) holds bytes that did not decode."""
    return not text.isascii() and _UNDECODABLE.search(text) is not None  # isascii: O(1)


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate: no character, so no Parquet string holds it."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def shown(text: str) -> str:
    """``text`` with each undecodable byte written ``\\xff`` and any other lone surrogate
    ``\\ud83d``: what a quarantined row keeps of a record, as valid text."""
    return _SURROGATE.sub(_escaped, text)


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def undecodable_reason(where: str, raw: str, encoding: str) -> str:
    """The read error of a record holding undecodable bytes: where it is, which bytes."""
    found = [f"0x{ord(char) - 0xDC00:02X}" for char in _UNDECODABLE.findall(raw)]
    listed = " ".join(found[:8]) + (" …" if len(found) > 8 else "")
    return f"{where}: bytes {listed} are not valid {encoding_name(encoding)}"


def encoding_name(encoding: str) -> str:
    return "UTF-8" if encoding == "utf-8" else encoding


def undecodable_file_reason(encoding: str, bad: int, records: int, first: str) -> str:
    """Why a file with too many undecodable records (``few_undecodable``) is unreadable,
    and what to do; ``first`` names the first such record and its bytes."""
    return (f"is not valid {encoding_name(encoding)}: {bad:,} of {records:,} records read hold "
            f"bytes that do not decode ({first}), too many to be a few damaged records; if "
            "the file uses another encoding, name it in the encodings setting "
            "(REVIEWFLOW_ENCODINGS=cp949, cp1252, ...)")


def resolve_encoding(path: Path, sample: bytes, encodings: Sequence[str] = (),
                     detect: bool = True) -> str:
    """The encoding to read a text file in, judged from its first bytes ``sample``.

    In order: a UTF-16 byte-order mark; UTF-8 (with or without its mark); UTF-8 with
    bytes that are not, when more of its non-ASCII bytes form UTF-8 characters than not
    (read as anything else, every row would be garbled; the reader then quarantines the
    records that do not decode, or the file when they are more than a few); the first
    of ``encodings`` that decodes the sample; charset-normalizer's guess, taken only
    when it is unambiguous (every low-chaos candidate decodes the sample to the same
    text) and rests on at least ``MIN_DETECT_BYTES`` non-ASCII bytes; UTF-8 but for a
    few places (``few_undecodable``). Otherwise the file is unreadable, and the reason
    names the setting that would make it readable.
    """
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if _decodes(sample, "utf-8"):
        return "utf-8"  # pyarrow skips a UTF-8 byte-order mark itself
    damaged = _damaged_utf8(sample)
    if damaged.characters > damaged.undecodable:  # mostly UTF-8: never garbled as another
        return "utf-8"
    for name in encodings:
        if _decodes(sample, name):
            return name
    guess = (_detected(sample) or _korean(sample)) if detect else None
    if guess is not None:
        return guess
    if damaged.few:
        return "utf-8"
    tried = f" nor as {', '.join(encodings)}" if encodings else ""
    return _undecodable(path, sample, tried, detect)


@dataclass(frozen=True)
class _Damage:
    few: bool  # few places hold bytes that are not UTF-8 (``few_undecodable``)
    characters: int  # non-ASCII characters that are valid UTF-8
    undecodable: int  # bytes that are not


def _damaged_utf8(sample: bytes) -> _Damage:
    """How much of ``sample`` is not UTF-8: its runs of undecodable bytes against its
    records, counted as its lines or, for JSON written on a few lines, its objects."""
    text = codecs.getincrementaldecoder("utf-8")(errors=UNDECODABLE_ERRORS).decode(sample)
    runs = len(_UNDECODABLE_RUN.findall(text))
    records = max(sum(1 for line in text.splitlines() if line.strip()), text.count("{"))
    undecodable = len(_UNDECODABLE.findall(text))
    characters = len(text) - len(text.encode("ascii", "ignore")) - undecodable
    return _Damage(few_undecodable(runs, records), characters, undecodable)


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
    text = decode_sample(sample, best.encoding, complete=False)
    family = _ENCODING_FAMILY.get(best.encoding, best.encoding)
    for match in matches:
        if match.percent_chaos > 1.0 or _ENCODING_FAMILY.get(match.encoding,
                                                             match.encoding) == family:
            continue
        if not _decodes(sample, match.encoding) or \
                decode_sample(sample, match.encoding, complete=False) != text:
            return None  # cp1250 or cp1252? a wrong guess would silently change the text
    return best.encoding


# Of a Korean text's non-ASCII characters, the least share that is Hangul, and the most
# that is Hanja, archaic jamo or the cp949-only syllables (those EUC-KR lacks): real
# reviews, slang and emoticons included, stay far inside both (docs/data-contract.md).
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
    text = decode_sample(sample, "cp949", complete=False)
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


def decode_sample(sample: bytes, encoding: str, complete: bool) -> str:
    """``sample`` decoded as the file will be (``UNDECODABLE_ERRORS``)."""
    decoder = codecs.getincrementaldecoder(python_codec(encoding))(errors=UNDECODABLE_ERRORS)
    return decoder.decode(sample, final=complete)


def python_codec(encoding: str) -> str:
    # Python's plain utf-8 codec keeps a byte-order mark as U+FEFF; pyarrow drops it.
    return "utf-8-sig" if encoding == "utf-8" else encoding

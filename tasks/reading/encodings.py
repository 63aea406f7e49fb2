"""Which encoding a text file is read in (``resolve_encoding``), judged from its first bytes.

UTF-8 (with or without a byte-order mark) and UTF-16 with a byte-order mark are read as
they are; any other encoding when named in the ``encodings`` setting or detected
unambiguously by charset-normalizer, or for Korean text in cp949
(docs/data-contract.md). ``ReadReport.encoding`` records which. A file none of these decode is
unreadable, with a reason that names the setting that would make it readable.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tasks.reading.schema import UnreadableFileError

# Non-ASCII bytes charset-normalizer needs to see before its guess is trusted: on a
# few accented letters it names an encoding at random (latin-1 "très" came back johab).
MIN_DETECT_BYTES = 256
# Encodings that extend another: a file both decode the same way is not ambiguous.
_ENCODING_FAMILY = {"euc_kr": "cp949", "gb2312": "gb18030", "gbk": "gb18030",
                    "shift_jis": "cp932", "ascii": "utf_8"}


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

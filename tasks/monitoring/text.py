"""Tokens and scripts of review text, as the model reads it: the model's standardization
and unigram tokens in pyarrow, the tokens a ``Vocabulary`` (``tasks.model.vocabulary``)
does not hold, letters per script.

The patterns are the model's own (``tasks.model.text``), which its registered text
functions are built from too, so the tokens counted here are the model's.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.model.text import (
    HTML_LINE_BREAK,
    MARKS,
    MARKS_AS_WORDS,
    ODD_SEPARATORS,
    PUNCTUATION,
    UNSPACED_SCRIPTS,
)
from tasks.model.vocabulary import Vocabulary

SCRIPTS = ("latin", "hangul", "han", "kana", "other")
SCRIPT_NAMES = {"latin": "Latin-script", "hangul": "Hangul", "han": "Han", "kana": "Kana",
                "other": "other-script"}
# RE2 script classes (as pyarrow.compute and TensorFlow use them), without brackets.
_SCRIPT_CLASSES = {"latin": r"\p{Latin}", "hangul": r"\p{Hangul}", "han": r"\p{Han}",
                   "kana": r"\p{Hiragana}\p{Katakana}"}
# ---------------------------------------------------------------- tokens and scripts
def standardize(texts: pa.Array, marks_are_words: bool = False) -> pa.Array:
    """``tasks.model.tokenizers.standardize_review`` (with ``marks_are_words``,
    ``standardize_keeping_marks``) in pyarrow: the same RE2 patterns; ASCII-only
    lower-casing, as ``tf.strings.lower`` does by default."""
    texts = pc.ascii_lower(texts)
    texts = pc.replace_substring_regex(texts, HTML_LINE_BREAK, " ")
    if marks_are_words:
        texts = pc.replace_substring_regex(texts, ODD_SEPARATORS, " ")
        return pc.replace_substring_regex(texts, MARKS, MARKS_AS_WORDS)
    return pc.replace_substring_regex(texts, PUNCTUATION, " ")


def tokens(texts: pa.Array, characters_of_unspaced_scripts: bool,
           marks_are_words: bool = False) -> pa.Array:
    """The unigram tokens the model looks up, flattened: whitespace-separated words, and
    with ``characters_of_unspaced_scripts`` each Hangul/Han/Kana/Thai character alone."""
    standard = standardize(texts, marks_are_words)
    if characters_of_unspaced_scripts:
        standard = pc.replace_substring_regex(standard, f"([{UNSPACED_SCRIPTS}])", r" \1 ")
    flat = pc.list_flatten(pc.ascii_split_whitespace(standard))
    return flat.filter(pc.not_equal(pc.utf8_length(flat), 0))


def unknown_tokens(texts: pa.Array, vocabulary: Vocabulary) -> tuple[int, int]:
    """``(tokens, tokens not in the vocabulary)`` of ``texts``."""
    found = tokens(texts, vocabulary.characters_of_unspaced_scripts, vocabulary.marks_are_words)
    if len(found) == 0:
        return 0, 0
    known = sum(map(vocabulary.lookup.__contains__, found.to_pylist()))
    return len(found), len(found) - known


def letters_per_row(texts: pa.Array) -> np.ndarray:
    """Letters of each script per text: shape ``(len(texts), len(SCRIPTS))``, columns
    in ``SCRIPTS`` order ("other": letters of none of the four).

    Letters are kept by deleting *runs* of everything else and measured by length: a
    regex that matched each letter costs a match per letter (10 times slower on English
    reviews); deleting runs costs a match per gap, and on the letters alone, deleting
    what is not Latin from English text matches nothing at all.
    """
    letters = pc.replace_substring_regex(texts, r"[^\p{L}]+", "")
    total = text_lengths(letters)
    counts = [text_lengths(pc.replace_substring_regex(letters, f"[^{_SCRIPT_CLASSES[s]}]+", ""))
              for s in SCRIPTS[:-1]]
    found = np.zeros((len(total), len(SCRIPTS)), dtype=np.int64)
    for index, column in enumerate(counts):
        found[:, index] = column
    found[:, -1] = np.maximum(0, total - found[:, :-1].sum(axis=1))
    return found


def text_lengths(texts: pa.Array) -> np.ndarray:
    """Characters per text (0 for a null), as int64."""
    return pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def script_letters(texts: pa.Array) -> list[int]:
    """Letters of each script in ``SCRIPTS`` order, over all of ``texts``."""
    return [int(n) for n in letters_per_row(texts).sum(axis=0)]


def main_scripts(per_row: np.ndarray) -> np.ndarray:
    """The index in ``SCRIPTS`` of the script each text is mainly written in (the one
    most of its letters are in; ties to the first), -1 for a text without letters."""
    if len(per_row) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.where(per_row.sum(axis=1) > 0, per_row.argmax(axis=1), -1)


def rows_per_script(main: np.ndarray) -> list[int]:
    """How many texts are mainly written in each script, in ``SCRIPTS`` order."""
    return np.bincount(main[main >= 0], minlength=len(SCRIPTS)).tolist()


def sample(texts: pa.Array, most: int) -> pa.Array:
    """Every k-th text, at most ``most`` of them (all when there are fewer): the text
    signals need the tokens of thousands of rows, not of all of them."""
    rows = sampled_rows(len(texts), most)
    return texts if rows is None else texts.take(pa.array(rows))


def sampled_rows(count: int, most: int) -> np.ndarray | None:
    """The rows ``sample`` keeps of ``count`` (None: all of them)."""
    if count <= most:
        return None
    return np.arange(0, count, math.ceil(count / most))


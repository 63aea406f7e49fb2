"""The rules by which a model reads review text, in plain Python (no TensorFlow).

The model's registered text functions (``tasks.model.tokenizers``) are built from these
RE2 patterns and n-gram sizes, and the drift monitor (``tasks.monitoring``) reads text
with the same patterns in pyarrow, so both cut a review into the same words.
``Tokenizer`` and ``Standardization`` name the kinds of split and standardization a
saved model's vectorizer uses, as the monitor needs to know them.
"""

from __future__ import annotations

from enum import StrEnum

# An HTML line break (``<br>``, ``<br/>``, ``<br />``): a space.
HTML_LINE_BREAK = r"<br\s*/?>"
# Anything but letters and digits of every script (Hangul included) and whitespace:
# one character at a time, replaced by a space (``standardize_review``).
PUNCTUATION = r"[^\p{L}\p{N}\s]"
# A run of punctuation or symbols, kept as a word of its own (``standardize_keeping_marks``):
# replaced by itself between spaces (``MARKS_AS_WORDS``, the same text in RE2's
# replacement syntax for TensorFlow and pyarrow).
MARKS = r"[^\p{L}\p{N}\s]+"
MARKS_AS_WORDS = r" \0 "
# Separators and control characters other than ASCII whitespace (RE2: \P is "not in").
ODD_SEPARATORS = r"(?:[^\P{Z} ]|[^\P{C}\t\n\r])+"
# Scripts written without spaces between words (Han, Kana, Thai), or whose spaced units
# carry many morphemes (Hangul: stem, particles and endings in one "word"), as the body
# of an RE2 character class.
UNSPACED_SCRIPTS = r"\p{Hangul}\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}"
# A text holding any character of those scripts (RE2, matched against the whole text):
# a batch without one is cut into words only.
HOLDS_UNSPACED_SCRIPT = f"(?s).*[{UNSPACED_SCRIPTS}].*"

# N-gram sizes: of words (every n-gram split), of characters inside runs of unspaced
# scripts (``split_ngrams``), of such a word's characters with its boundaries
# (``split_ngrams_bounded``), and of unspaced-script text with its spaces taken out
# (``split_ngrams_across``).
WORD_NGRAMS = (1, 2, 3)
CHARACTER_NGRAMS = (1, 2, 3)
BOUNDED_CHARACTER_NGRAMS = (1, 2, 3, 4)
ACROSS_CHARACTER_NGRAMS = (3, 4)


class Tokenizer(StrEnum):
    """How a model's vectorizer splits standardized text into tokens."""

    WORDS = "words"  # whitespace-separated words only (the seed, Keras' own splits)
    NGRAMS = "ngrams"  # word n-grams, character n-grams in unspaced scripts
    BOUNDED = "ngrams-bounded"  # the same, character n-grams with word boundaries
    ACROSS = "ngrams-across"  # the bounded ones, and character n-grams across spaces

    @property
    def characters_of_unspaced_scripts(self) -> bool:
        """Whether single characters of unspaced scripts are tokens of this split."""
        return self is not Tokenizer.WORDS


class Standardization(StrEnum):
    """How a model's vectorizer standardizes text before splitting it."""

    PLAIN = "plain"  # punctuation becomes spaces (``standardize_review``, Keras' own)
    MARKS = "marks"  # runs of punctuation become words (``standardize_keeping_marks``)

    @property
    def marks_are_words(self) -> bool:
        """Whether runs of punctuation and symbols are tokens of this standardization."""
        return self is Standardization.MARKS

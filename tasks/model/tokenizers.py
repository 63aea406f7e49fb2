"""The text functions inside every saved model: standardizations and n-gram splits.

Each is registered with Keras by name (package "reviewflow", then the function's own
name, e.g. "reviewflow>split_ngrams"): a saved model records those names, and Keras
finds the functions by them when it loads the model in safe mode, without running
code from the file. Renaming one, or its package, stops saved models from loading
(``tests/test_saved_models.py`` loads models saved by earlier releases).

The patterns and n-gram sizes are ``tasks.model.text``'s, which the drift monitor
reads text with too. ``TOKENIZERS`` and ``STANDARDIZATIONS`` map the registered name a
vectorizer's config records to the kind of split or standardization it names.
"""

from __future__ import annotations

from tasks.model.backend import keras, tf
from tasks.model.text import (
    ACROSS_CHARACTER_NGRAMS,
    BOUNDED_CHARACTER_NGRAMS,
    CHARACTER_NGRAMS,
    HOLDS_UNSPACED_SCRIPT,
    HTML_LINE_BREAK,
    MARKS,
    MARKS_AS_WORDS,
    ODD_SEPARATORS,
    PUNCTUATION,
    UNSPACED_SCRIPTS,
    WORD_NGRAMS,
    Standardization,
    Tokenizer,
)


@keras.saving.register_keras_serializable(package="reviewflow")
def standardize_review(text: tf.Tensor) -> tf.Tensor:
    """Lower-case, turn HTML line breaks into spaces, and strip punctuation.

    Registered by name so saved models load in Keras safe mode without arbitrary code.
    """
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, HTML_LINE_BREAK, " ")
    # Keep letters and digits of every script (Hangul included); drop punctuation.
    return tf.strings.regex_replace(text, PUNCTUATION, " ")


@keras.saving.register_keras_serializable(package="reviewflow")
def standardize_keeping_marks(text: tf.Tensor) -> tf.Tensor:
    """``standardize_review``, except that each run of punctuation or symbols becomes a
    word of its own instead of a space: "great!!" is "great !!", "재미없다..." is
    "재미없다 ...", "최고^^" is "최고 ^^".

    Reviewers say much with marks ("!!", "...", "?!", "^^", ":)"), Korean reviewers
    especially. As words, they join the word n-grams ("great !!", "... 별로"). On reviews
    of held-out movies (the split of BENCHMARKS.md, "Languages"; one training run each)
    this lifted accuracy from 0.9039 to 0.9065 in English and from 0.8716 to 0.8739 in
    Korean; each mark alone as a word did a little less (0.9057, 0.8735). Registered by
    name for safe-mode loading.

    Separators and control characters (no-break and ideographic spaces, U+2028, NEL,
    zero-width marks) become spaces first, as whitespace would. Kept as marks, they
    would be tokens holding a character that Python counts as a line break, and Keras
    saves the vocabulary one token per line and reads it back with ``splitlines``: the
    saved model would not load. ASCII whitespace is left out of that pattern: matching
    every space of a review made this the slowest step of scoring.
    """
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, HTML_LINE_BREAK, " ")
    text = tf.strings.regex_replace(text, ODD_SEPARATORS, " ")
    return tf.strings.regex_replace(text, MARKS, MARKS_AS_WORDS)


@keras.saving.register_keras_serializable(package="reviewflow")
def split_ngrams(text: tf.Tensor) -> tf.Tensor:
    """Word 1-3 grams, plus character 1-3 grams inside runs of unspaced scripts.

    In English this is exactly the word 1-, 2- and 3-grams. A Korean word such as
    "재미있었어요" also yields "재미", "재미있", "있었", ... so reviews that conjugate the
    same stem differently (or leave out spaces) still share tokens; a Japanese or
    Chinese sentence, one "word" to a whitespace split, becomes its characters.
    Registered by name, like ``standardize_review``, for safe-mode loading.
    """
    return _words_and_unspaced_characters(text, _char_ngrams)


def _words_and_unspaced_characters(text: tf.Tensor, char_ngrams) -> tf.Tensor:
    """Word 1-3 grams, joined by ``char_ngrams(text)`` when the batch holds an unspaced script."""
    word_grams = tf.strings.ngrams(tf.strings.split(text), WORD_NGRAMS)
    # Joining the two token lists copies every token, which made English scoring 40%
    # slower; only batches that contain such a script pay for it.
    unspaced = tf.reduce_any(tf.strings.regex_full_match(text, HOLDS_UNSPACED_SCRIPT))
    return tf.cond(unspaced, lambda: tf.concat([word_grams, char_ngrams(text)], axis=1),
                   lambda: word_grams)


def _char_ngrams(text: tf.Tensor) -> tf.Tensor:
    runs = tf.strings.split(_unspaced_script_only(text))
    chars = tf.strings.unicode_split(runs, "UTF-8")
    return tf.strings.ngrams(chars, CHARACTER_NGRAMS, separator="").merge_dims(1, 2)


@keras.saving.register_keras_serializable(package="reviewflow")
def split_ngrams_bounded(text: tf.Tensor) -> tf.Tensor:
    """Word 1-3 grams, plus character 1-4 grams of each unspaced-script word with a space
    marking where the word starts and ends.

    Unlike ``split_ngrams`` (character 1-3 grams, no boundaries), "재미" at the start of
    a word (" 재미") is a token of its own apart from "재미" inside one, so a stem and an
    ending are told from the same letters elsewhere; 4-grams hold a stem with its
    ending. English gets exactly the word 1-3 grams, as with ``split_ngrams``.
    """
    return _words_and_unspaced_characters(text, _bounded_char_ngrams)


def _bounded_char_ngrams(text: tf.Tensor) -> tf.Tensor:
    return _bounded_grams_of(_unspaced_script_only(text))


def _bounded_grams_of(unspaced: tf.Tensor) -> tf.Tensor:
    runs = tf.strings.split(unspaced)
    runs = tf.ragged.map_flat_values(lambda words: tf.strings.join([" ", words, " "]), runs)
    chars = tf.strings.unicode_split(runs, "UTF-8")
    return tf.strings.ngrams(chars, BOUNDED_CHARACTER_NGRAMS, separator="").merge_dims(1, 2)


def _unspaced_script_only(text: tf.Tensor) -> tf.Tensor:
    # Deleting every other script leaves only the unspaced runs and the spaces between.
    return tf.strings.regex_replace(text, f"[^{UNSPACED_SCRIPTS}\\s]+", "")


@keras.saving.register_keras_serializable(package="reviewflow")
def split_ngrams_across(text: tf.Tensor) -> tf.Tensor:
    """``split_ngrams_bounded``'s tokens, plus character 3- and 4-grams of the
    unspaced-script text with its spaces taken out.

    Korean reviewers space freely: "재미 없다", "재미없다" and "재미없 다" say the same.
    Grams that run across a space ("미없다" from "재미 없다") are the same tokens as the
    ones inside an unspaced word, so both spellings share them. On reviews of held-out
    movies this lifted Korean accuracy from 0.866 to 0.872 (BENCHMARKS.md, "Languages");
    3-5 and 2-5 grams across did no better and scored slower. English gets exactly the
    word 1-3 grams, as with ``split_ngrams``.
    """
    return _words_and_unspaced_characters(text, _bounded_and_across_char_ngrams)


def _bounded_and_across_char_ngrams(text: tf.Tensor) -> tf.Tensor:
    unspaced = _unspaced_script_only(text)  # once: the regex is a large part of the cost
    joined = tf.strings.regex_replace(unspaced, r"\s+", "")
    across = tf.strings.ngrams(tf.strings.unicode_split(joined, "UTF-8"),
                               ACROSS_CHARACTER_NGRAMS, separator="")
    return tf.concat([_bounded_grams_of(unspaced), across], axis=1)


# The registered name a vectorizer's config records for its split or standardization,
# and the kind it names. Any other split or standardization (Keras' own, named by a
# string such as "whitespace") is Tokenizer.WORDS or Standardization.PLAIN.
TOKENIZERS: dict[str, Tokenizer] = {
    keras.saving.get_registered_name(function): kind for function, kind in (
        (split_ngrams, Tokenizer.NGRAMS), (split_ngrams_bounded, Tokenizer.BOUNDED),
        (split_ngrams_across, Tokenizer.ACROSS))}
STANDARDIZATIONS: dict[str, Standardization] = {
    keras.saving.get_registered_name(function): kind for function, kind in (
        (standardize_review, Standardization.PLAIN),
        (standardize_keeping_marks, Standardization.MARKS))}


def registered_name(function) -> str | None:
    """The name Keras saves ``function`` by ("reviewflow>split_ngrams"); a string (Keras'
    own choices, "whitespace") is its own name; None for none."""
    if function is None or isinstance(function, str):
        return function
    return keras.saving.get_registered_name(function)


def tokenizer_of(config: dict) -> Tokenizer:
    """The kind of split a TextVectorization ``config`` records."""
    return TOKENIZERS.get(registered_name(config.get("split")), Tokenizer.WORDS)


def standardization_of(config: dict) -> Standardization:
    """The kind of standardization a TextVectorization ``config`` records."""
    return STANDARDIZATIONS.get(registered_name(config.get("standardize")),
                                Standardization.PLAIN)

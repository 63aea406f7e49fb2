"""A faster way to the token ids a word n-gram vectorizer gives: ``word_ngram_ids``.

The n-gram splits (``tasks.model.tokenizers``) make every word 1-, 2- and 3-gram of a
review as a string ("the film was", ...) and the vectorizer looks each string up in a
table of hundreds of thousands of n-grams: building and hashing those strings is most
of a prediction. Here each word is looked up once, as an integer, and an n-gram's key
is computed from its words' integers; one table of integer keys, made from the
vectorizer's own vocabulary, gives the same id the string would get. The ids, their
order and their padding are the vectorizer's, so a classifier given them computes
exactly the model's scores (``tests/test_ngram_keys.py`` compares them bit for bit).

It covers text the split cuts into words only: a batch holding an unspaced script
(Hangul, Han, Kana, Thai) also gets character n-grams, and is left to the model.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.model.backend import tf
from tasks.model.text import HOLDS_UNSPACED_SCRIPT, WORD_NGRAMS, Tokenizer
from tasks.model.tokenizers import tokenizer_of

# Keys are w1, w1*W + w2 and (w1*W + w2)*W + w3 for word numbers below W: they must fit
# in a signed 64-bit integer.
KEY_LIMIT = 2**63 - 1


class WordNgramIds:
    """The token ids of a word n-gram vectorizer, from integers (``word_ngram_ids``).

    ``words_only(texts)`` says whether a batch of review strings holds no character of
    an unspaced script; ``ids(texts)`` are the padded ids the vectorizer gives such a
    batch. (Standardizing keeps or removes such characters and never makes one, so the
    split of a words-only batch makes word n-grams only; a batch that holds one only in
    a mark the standardization removes is not words only, and is left to the model.)
    """

    def __init__(self, standardize, words: np.ndarray, keys: np.ndarray, ids: np.ndarray,
                 width: int, oov: int):
        self.standardize = standardize
        self.width = width
        self.word_numbers = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(words, tf.string), tf.range(1, len(words) + 1, dtype=tf.int64)),
            default_value=0)
        self.ngram_ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(ids)),
            default_value=oov)

    @staticmethod
    def words_only(texts: tf.Tensor) -> tf.Tensor:
        return tf.logical_not(tf.reduce_any(
            tf.strings.regex_full_match(texts, HOLDS_UNSPACED_SCRIPT)))

    def ids(self, texts: tf.Tensor) -> tf.Tensor:
        split = tf.strings.split(self.standardize(texts))
        numbers = self.word_numbers.lookup(split.flat_values)  # 0: in no n-gram kept
        rows = split.value_rowids()
        row_end = tf.gather(split.row_splits[1:], rows)
        count = tf.size(numbers, out_type=tf.int64)
        position = tf.range(count, dtype=tf.int64)
        padded = tf.concat([numbers, tf.zeros([len(WORD_NGRAMS)], tf.int64)], axis=0)
        grams, key, known = [], tf.zeros_like(numbers), tf.ones_like(numbers, tf.bool)
        for n in WORD_NGRAMS:  # 1, 2, 3: each size after the one before, as the split
            word = padded[n - 1:count + n - 1]  # the n-th word of the gram at each position
            key, known = key * self.width + word, known & (word > 0)
            inside = position + n <= row_end  # the gram ends inside its review
            grams.append(tf.RaggedTensor.from_value_rowids(
                tf.where(known, key, -1)[inside], rows[inside],
                nrows=split.nrows(out_type=tf.int64)))
        ngrams = tf.concat(grams, axis=1)
        found = self.ngram_ids.lookup(ngrams.flat_values)
        return ngrams.with_flat_values(found).to_tensor(default_value=0)


def word_ngram_ids(vectorizer) -> WordNgramIds | None:
    """``vectorizer``'s ids from integers, or None where it is not an n-gram split of
    word 1-3 grams with integer output, or its vocabulary cannot be keyed in 64 bits."""
    config = vectorizer.get_config()
    if (config.get("output_mode") != "int" or config.get("output_sequence_length")
            or config.get("ragged") or tokenizer_of(config) is Tokenizer.WORDS
            or tuple(WORD_NGRAMS) != (1, 2, 3) or not callable(config.get("standardize"))):
        return None
    table = getattr(getattr(vectorizer, "_lookup_layer", None), "lookup_table", None)
    default = getattr(table, "default_value", None)
    if table is None or default is None:
        return None
    tokens, ids = table.export()
    keyed = _keyed_vocabulary(pa.array(tokens.numpy(), pa.binary()), ids.numpy())
    if keyed is None:
        return None
    return WordNgramIds(config["standardize"], *keyed, oov=int(default.numpy()))


def _keyed_vocabulary(tokens: pa.Array, ids: np.ndarray):
    """The words of the vocabulary's word 1-3 grams, each n-gram's integer key and id,
    and the key base; None when the keys would not fit in 64 bits.

    A token with an empty part (a character n-gram's word boundary, " 재미") is no word
    n-gram: the split never makes an empty word."""
    parts = pc.split_pattern(tokens, b" ")
    counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(parts)
    empty = pc.equal(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)
    starts = parts.offsets.to_numpy()[:-1]
    has_empty = np.add.reduceat(empty.astype(np.int64), starts) > 0 if len(flat) else \
        np.zeros(len(tokens), bool)
    chosen = (counts >= 1) & (counts <= max(WORD_NGRAMS)) & ~has_empty
    words = pc.unique(flat.filter(pa.array(np.repeat(chosen, counts))))
    width = len(words) + 1
    if width ** max(WORD_NGRAMS) > KEY_LIMIT:
        return None
    numbers = pc.index_in(flat, value_set=words).fill_null(-1).to_numpy(zero_copy_only=False)
    numbers = numbers.astype(np.int64) + 1
    keys = np.zeros(len(tokens), np.int64)
    for n in range(max(WORD_NGRAMS)):
        has = chosen & (counts > n)
        keys[has] = keys[has] * width + numbers[starts[has] + n]
    return (words.to_numpy(zero_copy_only=False).astype(object), keys[chosen],
            ids[chosen].astype(np.int64), width)

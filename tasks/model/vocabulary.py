"""The tokens a loaded model knows, as the drift monitor looks them up: ``Vocabulary``.

Plain Python and pyarrow (no TensorFlow): ``tasks.model.serving.model_vocabulary`` reads
one from a model's TextVectorization layer, and ``tasks.monitoring`` (which re-exports it)
counts the tokens of scored text that it does not hold.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

ASCII_WHITESPACE = r"[ \t\n\v\f\r]"  # what pc.ascii_split_whitespace splits on
# How often a vocabulary's lookup set was built (once per loaded model; tests read it).
LOOKUP_BUILDS = {"count": 0}
_LOOKUP_LOCK = threading.Lock()


@dataclass(frozen=True)
class Vocabulary:
    """The tokens a model knows, as the monitoring code looks them up.

    ``characters_of_unspaced_scripts``: the model splits runs of unspaced scripts into
    characters (the n-gram model), so those are looked up one character at a time.
    ``marks_are_words``: the model keeps runs of punctuation as words
    (``tasks.model.tokenizers.standardize_keeping_marks``), so they are looked up too.
    """

    tokens: pa.Array
    characters_of_unspaced_scripts: bool = False
    marks_are_words: bool = False

    @property
    def lookup(self) -> frozenset[str]:
        """The tokens a looked-up token can equal, as a set, built once per vocabulary
        (so once per loaded model).

        ``pc.is_in(found, value_set=tokens)`` hashes the whole vocabulary on every call,
        a fixed cost per batch, so per one-row file, that grows with the vocabulary. The
        looked-up tokens are split on ASCII whitespace, so the n-grams (which hold a
        space: 95% of an 800k-token vocabulary) can never match and are left out.
        """
        found = self.__dict__.get("_lookup")
        if found is None:
            with _LOOKUP_LOCK:  # shards in threads share the model's vocabulary
                found = self.__dict__.get("_lookup")
                if found is None:
                    LOOKUP_BUILDS["count"] += 1
                    single = self.tokens.filter(pc.invert(pc.match_substring_regex(
                        self.tokens, ASCII_WHITESPACE)))
                    found = self.__dict__["_lookup"] = frozenset(single.to_pylist())
        return found

"""Saving, loading and serving models: ``save_model``, ``load_model`` (Keras safe mode),
``warm_up``, ``predict_scores``, and what the drift monitor and the run summary read
from a loaded model (``model_vocabulary``, ``compute_device``).
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from tasks.errors import RegistryError
from tasks.model.backend import keras, tf

# Loading a model finds its layers and text functions by their registered names;
# importing their modules registers them all (tokenizers.py, layers.py).
from tasks.model.layers import NaiveBayesLogistic  # noqa: F401
from tasks.model.ngram_keys import word_ngram_ids
from tasks.model.tokenizers import standardization_of, tokenizer_of
from tasks.model.vocabulary import Vocabulary


def save_model(model: keras.Model, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


class ModelLoadError(RegistryError):
    """A saved model cannot be loaded safely; the message says what to do.

    A ``RegistryError``, so the CLI reports it in one line with exit code 2 without
    importing TensorFlow first."""


def load_model(path: Path) -> keras.Model:
    """Load a saved end-to-end model in Keras safe mode (no arbitrary code runs).

    Safe mode refuses models that carry Python code (a ``Lambda`` layer's bytecode, an
    unregistered custom object); reviewflow's own layers and functions are registered
    by name, so every model it trains loads.
    """
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(
            f"cannot load the model {path} in Keras safe mode: {exc}. reviewflow loads only "
            f"models built from its own registered layers; train a new version with "
            f"`reviewflow retrain`, or point the champion at a good one with "
            f"`reviewflow models rollback` or `reviewflow models promote <version>`") from exc


# A word n-gram model serves slices of words only from integer keys
# (``tasks.model.ngram_keys``: the same ids, the same scores) once this process has asked
# it for this many scores. Building its key tables and tracing that path costs about as
# much CPU as the path saves over a few tens of thousands of English reviews, so a process
# that scores a small file never builds them, and one that scores a large file or many
# files builds them once.
KEYED_FROM_ROWS = 20_000

# Per loaded model: its traced serving functions (the model's own call; the keyed one,
# or None where the model has no keyed path) and the scores asked of it so far. Caches,
# not configuration: keyed weakly, so they live exactly as long as the model object.
_SERVING_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_KEYED_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ROWS_ASKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def serving_function(model: keras.Model, rows: int = 0):
    """``model`` as a graph function over a 1-D batch of strings of any length, for a
    caller about to score ``rows`` texts with it.

    Once ``KEYED_FROM_ROWS`` scores have been asked of a word n-gram model in this
    process (these ``rows`` included), the function makes the ids of a batch of words
    only from integers, and gives the model's own scores bit for bit; before, and for
    any other model, it is the model's own call. Each traces once per model:
    ``model.predict`` would wrap every call in Keras' data-adapter machinery, a cost paid
    on every batch of every file.
    """
    asked = _ROWS_ASKED.get(model, 0) + rows
    _ROWS_ASKED[model] = asked
    if asked >= KEYED_FROM_ROWS:
        if model not in _KEYED_FUNCTIONS:
            call = _keyed_call(model)
            _KEYED_FUNCTIONS[model] = None if call is None else _graph_function(call)
        if _KEYED_FUNCTIONS[model] is not None:
            return _KEYED_FUNCTIONS[model]
    if model not in _SERVING_FUNCTIONS:
        _SERVING_FUNCTIONS[model] = _graph_function(lambda texts: model(texts, training=False))
    return _SERVING_FUNCTIONS[model]


def _graph_function(call: Callable[[tf.Tensor], tf.Tensor]):
    # autograph=False: the model's call needs no Python-to-graph rewriting (Keras layers
    # trace as they are), and autograph would leave one generated source file per model
    # in the system temp folder, never removed.
    return tf.function(call, input_signature=[tf.TensorSpec([None], tf.string)],
                       autograph=False)


def _keyed_call(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """``model``'s scores of a batch of texts, from its classifier over token ids made
    from integers (``tasks.model.ngram_keys``) for a batch of words only, by the model
    itself otherwise; None for a model that is not a word n-gram model."""
    try:
        vectorizer, classifier = model.get_layer("vectorizer"), model.get_layer("classifier")
    except ValueError:
        return None
    keyed = word_ngram_ids(vectorizer)
    if keyed is None:
        return None

    def call(texts: tf.Tensor) -> tf.Tensor:
        return tf.cond(keyed.words_only(texts),
                       lambda: classifier(keyed.ids(texts), training=False),
                       lambda: model(texts, training=False))
    return call


def warm_up(model: keras.Model) -> keras.Model:
    """Trace ``model``'s serving function now, so a process that loads a model to serve
    pays the tracing once, at load, not inside a file."""
    predict_scores(model, np.array(["warm up"], dtype=object), 1)
    return model


# Prediction slices computed at once. One call of the serving function leaves cores idle
# (its ops run mostly one after another); a second slice in flight fills the gaps. Every
# slice is still the same slice of the same texts, so each score is what one slice at a
# time gives (tests/test_saved_models.py checks it bit for bit; BENCHMARKS.md the speed).
SLICES_IN_FLIGHT = 2


def slice_order(texts: np.ndarray) -> np.ndarray:
    """The order ``predict_scores`` cuts ``texts`` into slices in: shortest first (by
    characters), texts of one length in their own order.

    A model whose vectorizer gives token ids pads each slice to its longest review, and
    review lengths vary a hundredfold: slices in file order spend most of their work on
    padding, slices of texts of about one length little. A score does not depend on the
    other texts of its slice beyond float rounding (how the padded sum is grouped: under
    1e-6).
    """
    lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
    return np.argsort(lengths, kind="stable")


def predict_scores(model: keras.Model, texts: np.ndarray, batch_size: int,
                   between: Callable[[int], None] | None = None) -> np.ndarray:
    """Probabilities of positive sentiment, float32, one per text in the order given.

    The texts are scored in ``batch_size`` slices of ``slice_order``, ``SLICES_IN_FLIGHT``
    of them computed at once. ``between(rows)``, if given, is called after each slice
    with its row count, in order: a scoring shard counts its progress there and stops
    there when its run stops (what it raises propagates once the slices already being
    computed have finished)."""
    scores = np.empty(len(texts), dtype=np.float32)
    order = slice_order(texts)
    serve = serving_function(model, len(texts))

    def predict(start: int) -> int:
        rows = order[start:start + batch_size]
        batch = tf.constant(texts[rows], dtype=tf.string)
        scores[rows] = serve(batch).numpy().reshape(-1)
        return len(rows)

    def finish(slice_) -> None:
        rows = slice_.result()
        if between is not None:
            between(rows)

    with ThreadPoolExecutor(SLICES_IN_FLIGHT, thread_name_prefix="predict") as pool:
        in_flight: deque = deque()
        try:
            for start in range(0, len(texts), batch_size):
                in_flight.append(pool.submit(predict, start))
                if len(in_flight) == SLICES_IN_FLIGHT:
                    finish(in_flight.popleft())
            while in_flight:
                finish(in_flight.popleft())
        except BaseException:
            for waiting in in_flight:
                waiting.cancel()  # the pool's exit waits for the ones already running
            raise
    return scores


# One vocabulary per loaded model, for the drift signals (tasks.monitoring). A cache, keyed
# weakly like _SERVING_FUNCTIONS: it lives exactly as long as its model.
_VOCABULARIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_vocabulary(model: keras.Model) -> Vocabulary | None:
    """The model's own vocabulary as a ``Vocabulary`` (``tasks.model.vocabulary``, which
    the drift monitor looks tokens up in): the tokens its TextVectorization layer knows,
    whether it looks up unspaced scripts character by character (the n-gram splits) and
    whether runs of marks are words. The kinds come
    from the registered names of the split and standardization the layer's config
    records (``tasks.model.tokenizers.TOKENIZERS``, ``STANDARDIZATIONS``). Read from
    the layer, so the model is not changed and scores are not touched; None for a
    model without a layer named "vectorizer"."""
    found = _VOCABULARIES.get(model)
    if found is None:
        try:
            vectorizer = model.get_layer("vectorizer")
        except ValueError:
            return None
        config = vectorizer.get_config()
        found = Vocabulary(_vocabulary_tokens(vectorizer),
                           tokenizer_of(config).characters_of_unspaced_scripts,
                           standardization_of(config).marks_are_words)
        _VOCABULARIES[model] = found
    return found


def _vocabulary_tokens(vectorizer) -> pa.Array:
    """The vectorizer's tokens (without the padding and out-of-vocabulary entries).

    Exported from its lookup table as one byte array (0.09 s for 200k n-grams) rather
    than through ``get_vocabulary``, which builds a sorted Python list (0.55 s); that
    public path is the fallback where the layer's internals differ.
    """
    table = getattr(getattr(vectorizer, "_lookup_layer", None), "lookup_table", None)
    if table is not None:
        try:
            keys, _ = table.export()
            return pa.array(keys.numpy(), pa.binary()).cast(pa.string())
        except (AttributeError, TypeError, ValueError, pa.ArrowInvalid):
            pass
    return pa.array([t for t in vectorizer.get_vocabulary() if t and t != "[UNK]"], pa.string())


def compute_device() -> str:
    """The device TensorFlow places work on: the first visible GPU, else the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU:0 ({details.get('device_name', 'unknown')})"
    return "CPU"

"""Sentiment models: named architectures, training, loading and batch prediction.

Every model reviewflow saves is one end-to-end Keras model that takes raw review
strings and returns the probability that a review is positive. The text
preprocessing (standardization and vectorization) is a layer inside that model, so
scoring cannot use a different preprocessing than training did.
"""

from __future__ import annotations

import math
import os
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.errors import RegistryError
from tasks.native_logs import native_log_filter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow's libraries log while they load, ignoring TF_CPP_MIN_LOG_LEVEL unless
# filtered (tasks/native_logs.py).
with native_log_filter():
    import keras
    import tensorflow as tf


@keras.saving.register_keras_serializable(package="reviewflow")
def standardize_review(text: tf.Tensor) -> tf.Tensor:
    """Lower-case, turn HTML line breaks into spaces, and strip punctuation.

    Registered by name so saved models load in Keras safe mode without arbitrary code.
    """
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    # Keep letters and digits of every script (Hangul included); drop punctuation.
    return tf.strings.regex_replace(text, r"[^\p{L}\p{N}\s]", " ")


# Separators and control characters other than ASCII whitespace (RE2: \P is "not in").
ODD_SEPARATORS = r"(?:[^\P{Z} ]|[^\P{C}\t\n\r])+"


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
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    text = tf.strings.regex_replace(text, ODD_SEPARATORS, " ")
    return tf.strings.regex_replace(text, r"[^\p{L}\p{N}\s]+", " \\0 ")


@dataclass(frozen=True)
class TrainingParams:
    architecture: str = "seed"
    max_tokens: int = 10_000
    epochs: int = 20
    batch_size: int = 512
    patience: int = 2
    seed: int = 1337


@dataclass
class TrainedModel:
    model: keras.Model
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    training_seconds: float
    hyperparameters: dict = field(default_factory=dict)
    train_rows: int = 0  # the rows it learned from


def _seed_vectorizer(params: TrainingParams) -> keras.layers.TextVectorization:
    return keras.layers.TextVectorization(max_tokens=params.max_tokens, output_mode="multi_hot",
                                          standardize=standardize_review, name="vectorizer")


def _seed_classifier(params: TrainingParams, input_dim: int) -> keras.Model:
    """The seed material's network: Dense 16 relu, Dense 16 relu, Dense 1 sigmoid."""
    inputs = keras.Input(shape=(input_dim,), name="multi_hot")
    x = keras.layers.Dense(16, activation="relu")(inputs)
    x = keras.layers.Dense(16, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs, name="classifier")
    model.compile(optimizer=keras.optimizers.RMSprop(), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


@keras.saving.register_keras_serializable(package="reviewflow")
class NaiveBayesLogistic(keras.layers.Layer):
    """Logistic regression over a bag of token ids, each scaled by a Naive-Bayes ratio.

    The NBSVM recipe (Wang & Manning, 2012): a token's feature is its count times the
    log-count ratio ``log(P(token | positive) / P(token | negative))`` measured on the
    training texts, and a linear model is trained on top. The ratios are fixed by
    ``adapt``; only ``kernel`` and ``bias`` are trained. Looking up one weight per
    token id (an embedding bag of width 1) costs time in proportion to the review's
    length, never to the vocabulary, which keeps scoring fast with 200k n-grams.
    Id 0 is padding and contributes nothing.
    """

    def __init__(self, vocabulary_size: int, smoothing: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.smoothing = smoothing

    def build(self, input_shape):
        size = (self.vocabulary_size,)
        self.ratios = self.add_weight(shape=size, initializer="zeros", trainable=False,
                                      name="ratios")
        self.kernel = self.add_weight(shape=size, initializer="zeros", name="kernel")
        self.bias = self.add_weight(shape=(1,), initializer="zeros", name="bias")

    def adapt(self, batches: tf.data.Dataset) -> None:
        """Set the ratios from ``(token_ids, labels)`` batches of the training part.

        A token counts once per review (binarized, as in NBSVM).
        """
        if not self.built:
            self.build(None)
        size = self.vocabulary_size

        @tf.function(reduce_retracing=True)  # batches vary in shape
        def count(ids, labels):
            ids = tf.cast(ids, tf.int64)
            rows = tf.broadcast_to(tf.range(tf.shape(ids, tf.int64)[0])[:, None], tf.shape(ids))
            keys = tf.boolean_mask(rows * size + ids, ids > 0)  # padding dropped
            present = tf.unique(keys).y  # one entry per (review, token)
            token, positive = present % size, tf.gather(tf.cast(labels, tf.int64), present // size)
            return tf.stack([tf.math.bincount(token, minlength=size, maxlength=size, dtype=tf.int64),
                             tf.math.bincount(token, weights=positive, minlength=size,
                                              maxlength=size, dtype=tf.int64)])

        counts = np.zeros((2, size), dtype=np.float64)
        for ids, labels in batches:
            counts += count(ids, labels).numpy()
        positive = counts[1] + self.smoothing
        negative = counts[0] - counts[1] + self.smoothing
        ratios = np.log(positive / positive.sum()) - np.log(negative / negative.sum())
        ratios[0] = 0.0  # padding
        self.ratios.assign(ratios.astype("float32"))

    def call(self, token_ids):
        weights = keras.ops.take(self.ratios * self.kernel, token_ids)
        return keras.ops.sum(weights, axis=-1, keepdims=True) + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "smoothing": self.smoothing}


# Scripts written without spaces between words (Han, Kana, Thai), or whose spaced units
# carry many morphemes (Hangul: stem, particles and endings in one "word").
_UNSPACED_SCRIPTS = r"\p{Hangul}\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}"


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
    word_grams = tf.strings.ngrams(tf.strings.split(text), (1, 2, 3))
    # Joining the two token lists copies every token, which made English scoring 40%
    # slower; only batches that contain such a script pay for it.
    unspaced = tf.reduce_any(tf.strings.regex_full_match(text, f"(?s).*[{_UNSPACED_SCRIPTS}].*"))
    return tf.cond(unspaced, lambda: tf.concat([word_grams, char_ngrams(text)], axis=1),
                   lambda: word_grams)


def _char_ngrams(text: tf.Tensor) -> tf.Tensor:
    runs = tf.strings.split(_unspaced_script_only(text))
    chars = tf.strings.unicode_split(runs, "UTF-8")
    return tf.strings.ngrams(chars, (1, 2, 3), separator="").merge_dims(1, 2)


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
    return tf.strings.ngrams(chars, (1, 2, 3, 4), separator="").merge_dims(1, 2)


def _unspaced_script_only(text: tf.Tensor) -> tf.Tensor:
    # Deleting every other script leaves only the unspaced runs and the spaces between.
    return tf.strings.regex_replace(text, f"[^{_UNSPACED_SCRIPTS}\\s]+", "")


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
    across = tf.strings.ngrams(tf.strings.unicode_split(joined, "UTF-8"), (3, 4), separator="")
    return tf.concat([_bounded_grams_of(unspaced), across], axis=1)


def _token_ids_of(split: Callable[[tf.Tensor], tf.Tensor],
                  standardize: Callable[[tf.Tensor], tf.Tensor] = standardize_review):
    """A vectorizer factory: ids of the ``max_tokens`` most frequent tokens of ``split``
    over the ``standardize``d text.

    Integer ids (padded with 0) rather than a multi-hot matrix: a batch costs memory in
    proportion to its words, not to a vocabulary of hundreds of thousands of n-grams.
    """
    def vectorizer(params: TrainingParams) -> keras.layers.TextVectorization:
        return keras.layers.TextVectorization(max_tokens=params.max_tokens, output_mode="int",
                                              standardize=standardize, split=split,
                                              name="vectorizer")
    return vectorizer


def _nb_logistic_classifier(params: TrainingParams, input_dim: int,
                            learning_rate: float = 1e-2) -> keras.Model:
    """NB-weighted logistic regression over the token ids (see NaiveBayesLogistic)."""
    inputs = keras.Input(shape=(None,), dtype="int64", name="token_ids")
    logits = NaiveBayesLogistic(input_dim, name="nb_logistic")(inputs)
    outputs = keras.layers.Activation("sigmoid")(logits)
    model = keras.Model(inputs, outputs, name="classifier")
    # A convex model on strong features converges in a few epochs; early stopping on
    # the selection rows' loss is the regularization.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _slow_nb_logistic_classifier(params: TrainingParams, input_dim: int) -> keras.Model:
    """``_nb_logistic_classifier`` at a fifth of the rate: at 1e-2 the best epoch was the
    first on Korean reviews (the rare n-grams are fitted at once); at 2e-3 it is the
    third to sixth, and held-out accuracy is higher (BENCHMARKS.md, "Languages")."""
    return _nb_logistic_classifier(params, input_dim, learning_rate=2e-3)


def _adapt_nb_ratios(classifier: keras.Model, batches: tf.data.Dataset) -> None:
    classifier.get_layer("nb_logistic").adapt(batches)


@dataclass(frozen=True)
class Architecture:
    """A named model configuration.

    ``max_tokens`` is the architecture's own vocabulary size; None means
    ``TrainingParams.max_tokens`` (the seed's 10,000). ``prepare``, when given, is
    called with the classifier and the vectorized, labeled training batches before
    fitting, for statistics that need the labels (Naive-Bayes ratios).
    """

    description: str
    vectorizer: Callable[[TrainingParams], keras.layers.Layer]
    classifier: Callable[[TrainingParams, int], keras.Model]
    max_tokens: int | None = None
    prepare: Callable[[keras.Model, tf.data.Dataset], None] | None = None


ARCHITECTURES: dict[str, Architecture] = {
    "seed": Architecture(
        "multi-hot of the most frequent words, Dense16-Dense16-sigmoid, RMSprop",
        _seed_vectorizer, _seed_classifier),
    "ngram": Architecture(
        "word 1-3 grams, plus character 1-3 grams in Hangul/Han/Kana/Thai (200k tokens); "
        "Naive-Bayes-weighted logistic regression (NBSVM), Adam",
        _token_ids_of(split_ngrams), _nb_logistic_classifier, max_tokens=200_000,
        prepare=_adapt_nb_ratios),
    "ngram-char4": Architecture(
        "word 1-3 grams, plus character 1-4 grams with word boundaries in Hangul/Han/Kana/"
        "Thai (500k tokens); Naive-Bayes-weighted logistic regression (NBSVM), Adam 2e-3",
        _token_ids_of(split_ngrams_bounded), _slow_nb_logistic_classifier, max_tokens=500_000,
        prepare=_adapt_nb_ratios),
    "ngram-marks": Architecture(
        "ngram-across's tokens over text whose runs of punctuation and symbols are words "
        "(\"!!\", \"...\", \"^^\") rather than spaces (800k tokens); Naive-Bayes-weighted "
        "logistic regression (NBSVM), Adam 2e-3",
        _token_ids_of(split_ngrams_across, standardize_keeping_marks),
        _slow_nb_logistic_classifier, max_tokens=800_000, prepare=_adapt_nb_ratios),
    "ngram-across": Architecture(
        "word 1-3 grams, plus character 1-4 grams with word boundaries in Hangul/Han/Kana/"
        "Thai and character 3-4 grams across their spaces (800k tokens); Naive-Bayes-weighted"
        " logistic regression (NBSVM), Adam 2e-3",
        _token_ids_of(split_ngrams_across), _slow_nb_logistic_classifier, max_tokens=800_000,
        prepare=_adapt_nb_ratios),
}


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of "
                         f"{', '.join(sorted(ARCHITECTURES))}") from None


def _dataset(vectorizer, texts: np.ndarray, labels: np.ndarray | None, batch_size: int,
             shuffle_seed: int | None = None) -> tf.data.Dataset:
    parts = (texts,) if labels is None else (texts, labels.astype("float32"))
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    # Vectorize per batch on the fly; dense vectors are never cached (memory).
    if labels is None:
        return ds.map(vectorizer, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
    return ds.map(lambda x, y: (vectorizer(x), y),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def _token_id_dataset(vectorizer, texts: np.ndarray, labels: np.ndarray, batch_size: int,
                      shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Labeled batches of padded token ids, vectorized once and cached.

    Unlike dense vectors, the ids of a review cost memory in proportion to its length
    (about 110 MB for 20k IMDB reviews as 1-3 grams), so tokenization is paid once
    rather than every epoch. Reviews are cached unpadded and batched with others of
    similar length: review lengths vary 100-fold, and padding every batch to its
    longest review made 3-4 times more ids to train on than there are tokens.
    """
    rows = (tf.data.Dataset.from_tensor_slices((texts, labels.astype("float32"))).batch(2048)
            .map(lambda x, y: (tf.RaggedTensor.from_tensor(vectorizer(x), padding=0), y),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch()
            .map(lambda ids, y: (tf.identity(ids), y))  # a plain tensor per review
            .cache())
    if shuffle_seed is not None:
        rows = rows.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    boundaries = [64, 128, 256, 512, 1024, 2048, 4096]
    return rows.bucket_by_sequence_length(
        lambda ids, y: tf.shape(ids)[0], boundaries,
        [batch_size] * (len(boundaries) + 1)).prefetch(2)


def _yields_token_ids(vectorizer) -> bool:
    """Whether the vectorizer outputs token ids (multi-hot output is integer too)."""
    return vectorizer.get_config().get("output_mode") == "int"


def train_model(train_texts: np.ndarray, train_labels: np.ndarray, val_texts: np.ndarray,
                val_labels: np.ndarray, params: TrainingParams,
                on_epoch: Callable[[int, dict], None] | None = None) -> TrainedModel:
    """Train ``params.architecture`` with early stopping on validation loss.

    The vectorizer is adapted on the training texts only; the best epoch's weights
    (lowest validation loss) are restored, as in the seed material. ``on_epoch(epoch,
    logs)`` is called after each epoch (1-based) with Keras' figures (loss, val_loss,
    val_accuracy, …), to show progress.
    """
    arch, params = _resolved(params)
    started = time.perf_counter()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience,
                                         restore_best_weights=True)
    vectorizer, classifier, history = _fit(arch, params, train_texts, train_labels,
                                           params.epochs, (val_texts, val_labels),
                                           [stop, *_progress(on_epoch)])
    model = end_to_end(vectorizer, classifier)
    seconds = time.perf_counter() - started
    losses = history.history["val_loss"]
    return TrainedModel(
        model=model, history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        epochs_run=len(losses), best_epoch=int(np.argmin(losses)) + 1,
        training_seconds=seconds, train_rows=len(train_texts),
        hyperparameters={"architecture": params.architecture, "description": arch.description,
                         "max_tokens": params.max_tokens, "epochs": params.epochs,
                         "batch_size": params.batch_size, "patience": params.patience,
                         "seed": params.seed,
                         "optimizer": classifier.optimizer.name,
                         "learning_rate": float(classifier.optimizer.learning_rate),
                         "loss": "binary_crossentropy", "input_dim": _input_dim(vectorizer)})


def refit_model(trained: TrainedModel, texts: np.ndarray, labels: np.ndarray,
                params: TrainingParams,
                on_epoch: Callable[[int, dict], None] | None = None) -> TrainedModel:
    """Train ``params.architecture`` afresh on ``texts``, as long as ``trained`` learned.

    ``trained`` chose its length by early stopping on rows it did not train on; given
    more rows (``texts``: its training rows with the selection rows, and any
    pseudo-labeled ones), a new model learns from more reviews: vocabulary, Naive-Bayes
    ratios and weights all come from the larger set. It makes as many updates as
    ``trained`` did up to its best epoch (``refit_epochs``). No row it is given can then
    judge it, so ``trained``'s curves and selection figures stay the record of how the
    length was chosen; the promotion gate, which neither run saw, judges the result.
    """
    arch, params = _resolved(params)
    epochs = refit_epochs(trained.best_epoch, trained.train_rows, len(texts))
    started = time.perf_counter()
    vectorizer, classifier, _ = _fit(arch, params, texts, labels, epochs, None,
                                     _progress(on_epoch))
    return replace(trained, model=end_to_end(vectorizer, classifier),
                   training_seconds=trained.training_seconds + time.perf_counter() - started,
                   train_rows=len(texts),
                   hyperparameters={**trained.hyperparameters, "input_dim": _input_dim(vectorizer),
                                    "refit": {"rows": int(len(texts)), "epochs": epochs}})


def refit_epochs(best_epoch: int, rows_then: int, rows_now: int) -> int:
    """Epochs over ``rows_now`` rows that make as many updates as ``best_epoch`` epochs
    over ``rows_then`` did (rounded up, at least one).

    With 12% more rows (the selection rows) this is about the same count; with three
    times as many (pseudo-labeled reviews) a third. Measured on IMDB: early stopping
    over 16k labeled plus 30k pseudo-labeled reviews kept epoch 7-8 where the labeled
    ones alone kept 20, and this rule's 7 epochs over both scored reviews of held-out
    movies as well (0.912).
    """
    if rows_then <= 0 or rows_now <= 0:
        return best_epoch
    return max(1, math.ceil(best_epoch * rows_then / rows_now))


def _resolved(params: TrainingParams) -> tuple[Architecture, TrainingParams]:
    """The architecture of ``params``, and ``params`` with its own vocabulary size."""
    arch = architecture(params.architecture)
    if arch.max_tokens is not None:
        params = replace(params, max_tokens=arch.max_tokens)
    return arch, params


def _input_dim(vectorizer: keras.layers.Layer) -> int:
    return int(vectorizer.compute_output_shape((None,))[-1] or vectorizer.vocabulary_size())


def _fit(arch: Architecture, params: TrainingParams, texts: np.ndarray, labels: np.ndarray,
         epochs: int, validation: tuple[np.ndarray, np.ndarray] | None,
         callbacks: list[keras.callbacks.Callback]):
    """Adapt a new vectorizer on ``texts``, build the classifier and fit it; the seed is
    set first, so the same inputs give the same model."""
    keras.utils.set_random_seed(params.seed)
    vectorizer = arch.vectorizer(params)
    adapt_vocabulary(vectorizer, texts)
    classifier = arch.classifier(params, _input_dim(vectorizer))
    batches = _token_id_dataset if _yields_token_ids(vectorizer) else _dataset
    train_data = batches(vectorizer, texts, labels, params.batch_size, params.seed)
    val_data = None if validation is None else batches(vectorizer, *validation,
                                                       params.batch_size)
    if arch.prepare is not None:
        arch.prepare(classifier, train_data)
    with warnings.catch_warnings():
        # Length-bucketed batches have no fixed count per epoch, so Keras finds each
        # epoch's end by running out of data, and would warn about that every epoch.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = classifier.fit(train_data, validation_data=val_data, epochs=epochs,
                                 callbacks=callbacks, shuffle=False, verbose=0)  # shuffled above
    return vectorizer, classifier, history


def adapt_vocabulary(vectorizer: keras.layers.TextVectorization, texts: np.ndarray,
                     batch_size: int = 4096, tokens_per_count: int = 50_000_000) -> None:
    """Give ``vectorizer`` the vocabulary ``vectorizer.adapt(texts)`` would: its
    ``max_tokens`` most frequent tokens, ties broken as Keras breaks them.

    Keras counts tokens in a TensorFlow hash table and then sorts every distinct token
    (8.6 million n-grams in 48,000 IMDB reviews) as Python byte strings: 39 s, a third
    of a self-training run. Here the vectorizer's own standardization and split make the
    tokens (so the model reads text as before), Arrow counts them in one hash pass over
    up to ``tokens_per_count`` tokens at a time (about 12 bytes each; a larger corpus is
    counted in parts, each added to the counts so far), and only the tokens that can
    make the cut are sorted: 15-17 s for the same vocabulary. ``tests/test_architectures.py``
    checks that it is Keras'.
    """
    preprocess = tf.function(vectorizer._preprocess, reduce_retracing=True)
    counts: pa.Table | None = None
    pending: list[pa.Array] = []
    for start in range(0, len(texts), batch_size):
        tokens = preprocess(tf.constant(texts[start:start + batch_size], dtype=tf.string))
        flat = tokens.flat_values if isinstance(tokens, tf.RaggedTensor) else tokens
        pending.append(pa.array(flat.numpy().ravel(), type=pa.binary()))
        if sum(len(part) for part in pending) >= tokens_per_count:
            counts, pending = _token_counts(pending, counts), []
    vocabulary = _most_frequent(_token_counts(pending, counts), vectorizer)
    if not vocabulary:
        raise ValueError(f"no words to learn a vocabulary from in {len(texts)} training texts: "
                         "they are empty or only spaces once standardized; add labeled "
                         "reviews with text")
    vectorizer.set_vocabulary(vocabulary)


def _token_counts(tokens: list[pa.Array], so_far: pa.Table | None) -> pa.Table:
    """token, count of ``tokens``, added to the counts ``so_far`` (summed at once, so
    memory holds the distinct tokens once, however many parts the corpus takes)."""
    counted = pc.value_counts(pa.chunked_array(tokens, type=pa.binary()))
    counts = pa.table({"token": counted.field("values"), "count": counted.field("counts")})
    if so_far is None:
        return counts
    summed = pa.concat_tables([so_far, counts]).group_by("token").aggregate([("count", "sum")])
    return summed.rename_columns(["token", "count"])


def _most_frequent(counts: pa.Table, vectorizer) -> list[str]:
    """The tokens a Keras ``adapt`` keeps: mask and OOV tokens dropped, the most frequent
    first, ties broken by the token in descending byte order (Keras' ``lexsort``)."""
    lookup = vectorizer._lookup_layer
    special = [t.encode() for t in (lookup.mask_token, lookup.oov_token) if t is not None]
    counts = counts.filter(pc.invert(pc.is_in(counts["token"],
                                              value_set=pa.array(special, pa.binary()))))
    room = (lookup.max_tokens - lookup._token_start_index() if lookup.max_tokens
            else counts.num_rows)
    if counts.num_rows > room:
        # Sorting millions of byte strings is the slow part; only the tokens counted at
        # least as often as the last one kept (its ties included) can be in the cut.
        frequency = counts["count"].to_numpy()
        last_kept = np.partition(frequency, len(frequency) - room)[len(frequency) - room]
        counts = counts.filter(pc.greater_equal(counts["count"], last_kept))
    order = pc.sort_indices(counts, sort_keys=[("count", "descending"), ("token", "descending")])
    return [token.decode("utf-8") for token in counts["token"].take(order[:room]).to_pylist()]


def _progress(on_epoch: Callable[[int, dict], None] | None) -> list[keras.callbacks.Callback]:
    if on_epoch is None:
        return []
    return [keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: on_epoch(epoch + 1, dict(logs or {})))]


def end_to_end(vectorizer: keras.layers.Layer, classifier: keras.Model) -> keras.Model:
    """One model from raw strings to probabilities."""
    inputs = keras.Input(shape=(), dtype="string", name="review_text")
    outputs = classifier(vectorizer(inputs))
    model = keras.Model(inputs, outputs, name="review_sentiment")
    model.compile(loss="binary_crossentropy", metrics=["accuracy"])
    return model


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


# One traced serving function per loaded model. A cache, not configuration: keyed
# weakly, so it lives exactly as long as the model object it belongs to.
_SERVING_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _serving_function(model: keras.Model):
    """``model`` as a graph function over a 1-D batch of strings of any length.

    The fixed signature traces once per model. ``model.predict`` wraps every call in
    Keras' data-adapter machinery, which cost 10-40% of scoring time here for the
    n-gram model at batch 1024 (see BENCHMARKS.md).
    """
    function = _SERVING_FUNCTIONS.get(model)
    if function is None:
        # autograph=False: the model's call needs no Python-to-graph rewriting (Keras
        # layers trace as they are), and autograph would leave one generated source
        # file per model in the system temp folder, never removed.
        function = tf.function(lambda texts: model(texts, training=False),
                               input_signature=[tf.TensorSpec([None], tf.string)],
                               autograph=False)
        _SERVING_FUNCTIONS[model] = function
    return function


def warm_up(model: keras.Model) -> keras.Model:
    """Trace ``model``'s serving function now (about 0.5 s for the n-gram model), so a
    process that loads a model to serve pays it once, at load, not inside a file."""
    predict_scores(model, np.array(["warm up"], dtype=object), 1)
    return model


def predict_scores(model: keras.Model, texts: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities of positive sentiment, float32, one per text, in ``batch_size`` slices."""
    scores = np.empty(len(texts), dtype=np.float32)
    serve = _serving_function(model)
    for start in range(0, len(texts), batch_size):
        batch = tf.constant(texts[start:start + batch_size], dtype=tf.string)
        scores[start:start + batch_size] = serve(batch).numpy().reshape(-1)
    return scores


# One vocabulary per loaded model, for the drift signals (tasks.monitoring). A cache, keyed
# weakly like _SERVING_FUNCTIONS: it lives exactly as long as its model.
_VOCABULARIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_vocabulary(model: keras.Model):
    """The model's own vocabulary as ``tasks.monitoring.Vocabulary``: the tokens its
    TextVectorization layer knows, and whether it looks up unspaced scripts character by
    character (the n-gram split). Read from the layer, so the model is not changed and
    scores are not touched; None for a model without a layer named "vectorizer"."""
    found = _VOCABULARIES.get(model)
    if found is None:
        from tasks.monitoring import Vocabulary

        try:
            vectorizer = model.get_layer("vectorizer")
        except ValueError:
            return None
        split = vectorizer.get_config().get("split")
        by_characters = split is split_ngrams or "split_ngrams" in str(split)
        marks = "standardize_keeping_marks" in str(vectorizer.get_config().get("standardize"))
        found = Vocabulary(_vocabulary_tokens(vectorizer), by_characters, marks)
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

"""The named architectures a model is trained as: ``ARCHITECTURES`` and ``architecture()``.

An architecture pairs a vectorizer (standardization and split, ``tasks.model.tokenizers``)
with a classifier over its output. To add one: write its vectorizer and classifier
factories here (or reuse ``_token_ids_of`` with a new split), add an entry to
``ARCHITECTURES``, and any new text function or layer must be registered by name
(``tasks.model.tokenizers``, ``tasks.model.layers``) so its saved models load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tasks.model.backend import keras, tf
from tasks.model.layers import NaiveBayesLogistic
from tasks.model.params import TrainingParams
from tasks.model.tokenizers import (
    split_ngrams,
    split_ngrams_across,
    split_ngrams_bounded,
    standardize_keeping_marks,
    standardize_review,
)


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
    ``TrainingParams.max_tokens`` (Settings ``max_tokens``, the seed's). ``prepare``, when given, is
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

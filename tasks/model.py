"""Sentiment models: named architectures, training, loading and batch prediction.

Every model reviewflow saves is one end-to-end Keras model that takes raw review
strings and returns the probability that a review is positive. The text
preprocessing (standardization and vectorization) is a layer inside that model, so
scoring cannot use a different preprocessing than training did.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


@keras.saving.register_keras_serializable(package="reviewflow")
def standardize_review(text: tf.Tensor) -> tf.Tensor:
    """Lower-case, turn HTML line breaks into spaces, and strip punctuation.

    Registered by name so saved models load in Keras safe mode without arbitrary code.
    """
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    # Keep letters and digits of every script (Hangul included); drop punctuation.
    return tf.strings.regex_replace(text, r"[^\p{L}\p{N}\s]", " ")


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


@dataclass(frozen=True)
class Architecture:
    description: str
    vectorizer: Callable[[TrainingParams], keras.layers.Layer]
    classifier: Callable[[TrainingParams, int], keras.Model]


ARCHITECTURES: dict[str, Architecture] = {
    "seed": Architecture(
        "multi-hot of the most frequent words, Dense16-Dense16-sigmoid, RMSprop",
        _seed_vectorizer, _seed_classifier),
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


def train_model(train_texts: np.ndarray, train_labels: np.ndarray, val_texts: np.ndarray,
                val_labels: np.ndarray, params: TrainingParams) -> TrainedModel:
    """Train ``params.architecture`` with early stopping on validation loss.

    The vectorizer is adapted on the training texts only; the best epoch's weights
    (lowest validation loss) are restored, as in the seed material.
    """
    arch = architecture(params.architecture)
    keras.utils.set_random_seed(params.seed)
    started = time.perf_counter()
    vectorizer = arch.vectorizer(params)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(train_texts).batch(2048))
    input_dim = int(vectorizer.compute_output_shape((None,))[-1]
                    or vectorizer.vocabulary_size())
    classifier = arch.classifier(params, input_dim)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience,
                                         restore_best_weights=True)
    history = classifier.fit(
        _dataset(vectorizer, train_texts, train_labels, params.batch_size, params.seed),
        validation_data=_dataset(vectorizer, val_texts, val_labels, params.batch_size),
        epochs=params.epochs, callbacks=[stop], shuffle=False, verbose=0)  # shuffled above
    model = end_to_end(vectorizer, classifier)
    seconds = time.perf_counter() - started
    losses = history.history["val_loss"]
    return TrainedModel(
        model=model, history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        epochs_run=len(losses), best_epoch=int(np.argmin(losses)) + 1,
        training_seconds=seconds,
        hyperparameters={"architecture": params.architecture, "description": arch.description,
                         "max_tokens": params.max_tokens, "epochs": params.epochs,
                         "batch_size": params.batch_size, "patience": params.patience,
                         "seed": params.seed, "optimizer": "rmsprop",
                         "loss": "binary_crossentropy", "input_dim": input_dim})


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


def load_model(path: Path) -> keras.Model:
    """Load a saved end-to-end model in Keras safe mode (no arbitrary code runs)."""
    return keras.models.load_model(path, safe_mode=True, compile=False)


def predict_scores(model: keras.Model, texts: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities of positive sentiment, float32, one per text."""
    if len(texts) == 0:
        return np.zeros(0, dtype=np.float32)
    scores = model.predict(tf.constant(texts, dtype=tf.string), batch_size=batch_size, verbose=0)
    return np.asarray(scores, dtype=np.float32).reshape(-1)


def compute_device() -> str:
    """The device TensorFlow places work on: the first visible GPU, else the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU:0 ({details.get('device_name', 'unknown')})"
    return "CPU"

"""The Keras layers of reviewflow's own, registered by name for safe-mode loading.

A saved model records a layer as "reviewflow>" and its class name; renaming the class
or its package stops saved models from loading (``tests/test_saved_models.py``).
"""

from __future__ import annotations

import numpy as np

from tasks.model.backend import keras, tf


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

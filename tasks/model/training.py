"""Training: ``train_model`` (early stopping), ``refit_model`` (more rows, as many updates:
``tasks.model.params.refit_epochs``) and ``adapt_vocabulary``, the vocabulary count that
gives Keras' ``adapt`` result faster.

Every trained model is one end-to-end Keras model (``end_to_end``) from raw review
strings to the probability that a review is positive; its vectorizer, adapted on the
training texts only, is a layer inside it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.model.architectures import Architecture, architecture
from tasks.model.backend import keras, tf
from tasks.model.params import TrainingParams, refit_epochs


@dataclass
class TrainedModel:
    model: keras.Model
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    training_seconds: float
    hyperparameters: dict = field(default_factory=dict)
    train_rows: int = 0  # the rows it learned from



def multi_hot_dataset(vectorizer: keras.layers.TextVectorization, texts: np.ndarray,
                      labels: np.ndarray, batch_size: int,
                      shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Labeled batches of ``vectorizer``'s multi-hot rows, the text tokenized once.

    Standardizing, splitting and looking up a review's words is most of a multi-hot
    model's epoch; here each review's word ids are made once and cached (memory in
    proportion to its words; the dense rows, in proportion to the vocabulary, never
    are), and an epoch only turns a batch's ids into its rows. The rows are the
    vectorizer's own, in the order shuffling the texts would give, and the dataset
    knows its length as a dataset of the texts would (Keras starts each epoch's
    iterator differently when it does not, which reorders every epoch after the
    first): a model learns the same weights as from ``vectorizer`` over the texts.
    """
    vocabulary = vectorizer.get_vocabulary()
    # Ids as the vectorizer's columns: out-of-vocabulary words 0, then its vocabulary.
    word_ids = keras.layers.StringLookup(vocabulary=vocabulary[1:], mask_token=None)
    if word_ids.get_vocabulary() != vocabulary:
        raise ValueError(f"the vectorizer's multi-hot columns start with {vocabulary[0]!r}, "
                         "not the out-of-vocabulary token, so its word ids cannot stand for "
                         "its columns: this Keras orders them otherwise than reviewflow "
                         "supports (requirements.lock has the Keras it is tested with)")
    width = len(vocabulary)

    def multi_hot(ids: tf.RaggedTensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        rows = tf.math.bincount(ids, minlength=width, maxlength=width, binary_output=True,
                                dtype=tf.float32, axis=-1)
        rows.set_shape([None, width])
        return rows, y

    reviews = (tf.data.Dataset.from_tensor_slices((texts, labels.astype("float32"))).batch(2048)
               .map(lambda x, y: (word_ids(vectorizer._preprocess(x)), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
               .unbatch()
               .apply(tf.data.experimental.assert_cardinality(len(texts)))
               .cache())
    if shuffle_seed is not None:
        reviews = reviews.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return (reviews.ragged_batch(batch_size)
            .map(multi_hot, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2))


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
    batches = _token_id_dataset if _yields_token_ids(vectorizer) else multi_hot_dataset
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

"""A word n-gram model's token ids made from integers (``tasks.model.ngram_keys``) are
the ids its vectorizer gives, and its scores through ``predict_scores`` are the model's
own, bit for bit: for models saved by release 0.1 and models trained now, on words only
and on batches with Korean, Japanese or Thai."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tasks.model import (
    TrainingParams,
    load_model,
    ngram_keys,
    predict_scores,
    serving,
    serving_function,
    slice_order,
    train_model,
    word_ngram_ids,
)
from tasks.settings import Settings
from tests.helpers import read_reviews

FIXTURES = Path(__file__).parent / "fixtures" / "models-0.1"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
FIXTURE_TEXTS = json.loads((FIXTURES / "expected.json").read_text())["texts"]

# Words only (no unspaced script), the edges of the split among them: empty and blank
# texts, one and two words (no 3-grams), marks as words, an HTML break, tabs and
# no-break spaces, full-width Latin, accents, emoji, the out-of-vocabulary token's own
# spelling, words no n-gram holds.
WORDS_ONLY = [
    "", "   ", "great", "great film", "not a great film at all", "great!! great!! ^^",
    "bad...<br />really bad", "tabs\tbetween\twords", "no-break\u00a0space here",
    "Ｆｕｌｌ\u3000ｗｉｄｔｈ ＴＥＸＴ", "été naïve café", "loved it 👍🏻", "[UNK] [unk] UNK",
    "zzyzx qwv plorb", "the the the the the", "a wonderful film, i loved it!!",
    "terrible... boring and too long",
]
# A Hangul symbol ("㈜", which the plain standardization removes) is left to the model too.
UNSPACED = ["정말 재미있어요 ^^", "映画はつまらない", "หนังดีมาก", "mixed 좋아요 and bad", "㈜ company"]


def english_reviews() -> list[str]:
    frame = read_reviews(SAMPLES / "labeled" / "reviews-b.jsonl", 10_000).to_pandas()
    return frame["text"].tolist()


def ngram_models() -> dict:
    """The n-gram models saved by release 0.1, and two architectures trained now (one
    epoch, on the English and Korean samples)."""
    models = {name: load_model(FIXTURES / f"{name}.keras")
              for name in ("ngram", "ngram-char4", "ngram-marks")}
    english = read_reviews(SAMPLES / "labeled" / "reviews-b.jsonl", 10_000).to_pandas()
    korean = read_reviews(SAMPLES / "korean" / "train.tsv", 10_000).to_pandas()
    texts = np.concatenate([english["text"].to_numpy(object), korean["text"].to_numpy(object)])
    labels = np.concatenate([english["label"].to_numpy(), korean["label"].to_numpy()])
    # The 0.1 models cover the other splits; the ones trained now are today's default
    # and the split no 0.1 model has.
    for name in ("ngram-marks", "ngram-across"):
        params = TrainingParams.from_settings(Settings(), architecture=name, epochs=1, seed=3)
        models[f"{name} (trained now)"] = train_model(texts, labels, texts[:20], labels[:20],
                                                      params).model
    return models


@pytest.fixture(scope="module")
def models() -> dict:
    return ngram_models()


@pytest.fixture
def keyed_at_once(monkeypatch):
    """Word n-gram models serve from integer keys from their first score."""
    monkeypatch.setattr(serving, "KEYED_FROM_ROWS", 0)


def test_ids_from_integers_are_the_vectorizers_own(models):
    batch = tf.constant(WORDS_ONLY + english_reviews())
    for name, model in models.items():
        vectorizer = model.get_layer("vectorizer")
        keyed = word_ngram_ids(vectorizer)
        assert keyed is not None, name
        assert bool(keyed.words_only(batch)), name
        ids, expected = keyed.ids(batch).numpy(), vectorizer(batch).numpy()
        assert ids.shape == expected.shape and np.array_equal(ids, expected), name
        # Not a vacuous match: known 1-, 2- and 3-grams and unknown ones are among them.
        vocabulary = vectorizer.get_vocabulary()
        found = {len(vocabulary[i].split(" ")) for i in np.unique(ids) if i > 1}
        assert found == {1, 2, 3} and (ids == 1).any(), (name, found)


def test_a_batch_with_an_unspaced_script_is_left_to_the_model(models):
    for name, model in models.items():
        keyed = word_ngram_ids(model.get_layer("vectorizer"))
        for text in UNSPACED:
            assert not bool(keyed.words_only(tf.constant(["fine", text]))), (name, text)


@pytest.mark.parametrize("batch_size", [4, 64])
def test_scores_are_the_models_own_bit_for_bit(models, batch_size, keyed_at_once):
    """Through ``predict_scores`` (words-only slices from integers, the others by the
    model) every score equals the model's own call on the same slice."""
    texts = np.array(WORDS_ONLY + UNSPACED + FIXTURE_TEXTS + english_reviews()[:100],
                     dtype=object)
    order = slice_order(texts)
    for name, model in models.items():
        expected = np.empty(len(texts), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            expected[rows] = model(tf.constant(texts[rows]), training=False).numpy().reshape(-1)
        np.testing.assert_array_equal(predict_scores(model, texts, batch_size), expected,
                                      err_msg=name)


def lookup_key_types(model) -> set[str]:
    """The key types of the table lookups in ``model``'s serving graph (its branches too)."""
    definition = serving_function(model).get_concrete_function().graph.as_graph_def()
    nodes = [*definition.node, *(node for function in definition.library.function
                                 for node in function.node_def)]
    return {tf.dtypes.as_dtype(node.attr["Tin"].type).name for node in nodes
            if node.op == "LookupTableFindV2"}


def test_word_ngram_models_serve_from_integers_and_the_seed_does_not(models, keyed_at_once):
    seed = load_model(FIXTURES / "seed.keras")
    assert word_ngram_ids(seed.get_layer("vectorizer")) is None
    assert lookup_key_types(seed) == {"string"}
    for name, model in models.items():
        assert lookup_key_types(model) == {"string", "int64"}, name


def test_a_vocabulary_whose_keys_would_not_fit_in_64_bits_is_served_by_the_model(
        monkeypatch, keyed_at_once):
    model = load_model(FIXTURES / "ngram-marks.keras")
    texts = np.array(WORDS_ONLY + FIXTURE_TEXTS, dtype=object)
    expected = predict_scores(model, texts, 8)
    monkeypatch.setattr(ngram_keys, "KEY_LIMIT", 10)
    assert word_ngram_ids(model.get_layer("vectorizer")) is None
    again = load_model(FIXTURES / "ngram-marks.keras")  # its serving function is made anew
    np.testing.assert_array_equal(predict_scores(again, texts, 8), expected)


def test_a_model_serves_from_integer_keys_once_enough_scores_are_asked_of_it(monkeypatch):
    """Building the key tables costs a process that scores a few reviews more than it
    saves: a model's own call serves until KEYED_FROM_ROWS scores have been asked of it
    (in one call or in several), the keyed path from then on, with the same scores."""
    monkeypatch.setattr(serving, "KEYED_FROM_ROWS", 50)
    model = load_model(FIXTURES / "ngram-marks.keras")
    texts = np.array((WORDS_ONLY + FIXTURE_TEXTS) * 2, dtype=object)[:30]
    first = predict_scores(model, texts, 8)
    assert lookup_key_types(model) == {"string"}  # 30 asked
    second = predict_scores(model, texts, 8)  # 60 asked: keyed from this call on
    assert lookup_key_types(model) == {"string", "int64"}
    np.testing.assert_array_equal(first, second)
    doubled = np.concatenate([texts] * 2)
    fresh = load_model(FIXTURES / "ngram-marks.keras")
    np.testing.assert_array_equal(predict_scores(fresh, doubled, 8),
                                  predict_scores(model, doubled, 8))
    assert lookup_key_types(fresh) == {"string", "int64"}  # one call of 60


def test_a_slice_of_blank_texts_scores_as_the_model_does(keyed_at_once):
    model = load_model(FIXTURES / "ngram-marks.keras")
    blank = np.array(["", "  ", "\t", ""], dtype=object)  # no word: ids of width 0
    np.testing.assert_array_equal(predict_scores(model, blank, 4),
                                  model(tf.constant(blank), training=False).numpy().reshape(-1))
    assert lookup_key_types(model) == {"string", "int64"}

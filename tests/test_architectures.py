"""Named architectures: each trains, survives a safe-mode save and load, and the default
also learns Korean reviews, which a word-only model cannot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tasks.model import (
    ARCHITECTURES,
    Architecture,
    TrainingParams,
    adapt_vocabulary,
    load_model,
    model_vocabulary,
    predict_scores,
    refit_epochs,
    refit_model,
    save_model,
    split_ngrams,
    split_ngrams_across,
    split_ngrams_bounded,
    standardize_keeping_marks,
    standardize_review,
    train_model,
)
from tasks.model.training import multi_hot_dataset
from tasks.settings import Settings
from tasks.training.split import split_labeled
from tests.helpers import read_reviews

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
KOREAN = SAMPLES / "korean"


def params_of(**overrides) -> TrainingParams:
    """The default training settings, ``overrides`` over them."""
    return TrainingParams.from_settings(Settings(), **overrides)


def read_frame(path: Path) -> pd.DataFrame:
    """Any supported file, through the project's own reader (NSMC columns included)."""
    return read_reviews(path, 10_000).to_pandas()[["review_id", "text", "label"]]


def train(reviews: pd.DataFrame, name: str, epochs: int):
    split = split_labeled(reviews, 0.2)
    params = params_of(architecture=name, epochs=epochs, seed=7)
    return train_model(texts(split.train), split.train["label"].to_numpy(),
                       texts(split.validation), split.validation["label"].to_numpy(), params)


def texts(frame: pd.DataFrame) -> np.ndarray:
    return frame["text"].to_numpy(dtype=object)


def accuracy(model, reviews: pd.DataFrame) -> float:
    scores = predict_scores(model, texts(reviews), 1024)
    return float(np.mean((scores > 0.5) == (reviews["label"].to_numpy() == 1)))


@pytest.fixture(scope="module")
def english() -> pd.DataFrame:
    return read_frame(SAMPLES / "labeled" / "reviews-b.jsonl")


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture_trains_and_loads_in_safe_mode(name, english, tmp_path):
    trained = train(english, name, epochs=3)
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(trained.history)
    assert trained.hyperparameters["architecture"] == name
    probe = np.array(["A moving, honest script. Ten out of ten!", "Dull and far too long.",
                      "", "재미있었어요 최고", "映画は最高でした"], dtype=object)
    before = predict_scores(trained.model, probe, 2)
    loaded = load_model(save_model(trained.model, tmp_path / f"{name}.keras"))
    after = predict_scores(loaded, probe, 2)
    assert after.dtype == np.float32 and after.shape == (len(probe),)
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert np.all((after >= 0) & (after <= 1))


# Characters that Python's str.splitlines breaks at but whitespace splitting may not, and
# other separators and invisible marks: Keras saves a vocabulary one token per line and
# reads it back with splitlines, so a token holding one of them breaks the saved model.
ODD_CHARACTERS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e",
                  "\u00a0", "\u3000", "\u200b", "\u200d", "\ufeff", "\x00", "\t"]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_a_model_of_text_with_odd_separators_saves_and_loads(name, tmp_path):
    texts = np.array([f"great{c}film!!{c}재미{c}있다 👍🏻{c}..." if i % 2 else
                      f"dull{c}plot...{c}별로{c}야 😡{c}??"
                      for i, c in enumerate(ODD_CHARACTERS * 2)], dtype=object)
    labels = np.array([i % 2 for i in range(len(texts))])
    trained = train_model(texts, labels, texts[:4], labels[:4],
                          params_of(architecture=name, epochs=1, seed=7))
    loaded = load_model(save_model(trained.model, tmp_path / f"{name}.keras"))
    np.testing.assert_allclose(predict_scores(loaded, texts, 8),
                               predict_scores(trained.model, texts, 8), atol=1e-6)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("max_tokens", [None, 60])
def test_the_vocabulary_is_the_one_keras_adapt_chooses(name, max_tokens, english):
    """Same tokens in the same order as ``TextVectorization.adapt``, for every
    architecture's tokens, with a cut at ``max_tokens`` that falls among tied counts;
    batches of 7 reviews, counted in parts of about 500 tokens and summed."""
    korean = read_frame(KOREAN / "train.tsv")["text"].head(40)
    corpus = np.concatenate([texts(english), korean.to_numpy(dtype=object),
                             np.array(["", "[UNK] [unk]", "great!! great!! ^^"], dtype=object)])
    params = params_of(max_tokens=max_tokens or 10**6)
    ours, theirs = ARCHITECTURES[name].vectorizer(params), ARCHITECTURES[name].vectorizer(params)
    adapt_vocabulary(ours, corpus, batch_size=7, tokens_per_count=500)
    theirs.adapt(tf.data.Dataset.from_tensor_slices(corpus).batch(64))
    assert ours.get_vocabulary() == theirs.get_vocabulary()
    # Without a limit there are more tokens than 60, so the cut at 60 leaves some out.
    assert ours.vocabulary_size() == max_tokens if max_tokens else ours.vocabulary_size() > 60


def test_multi_hot_batches_from_cached_word_ids_train_as_the_texts_would(english):
    """A multi-hot model's training reads each review's words once (multi_hot_dataset).
    Its batches must be the vectorizer's rows over the texts, in the order shuffling the
    texts gives, epoch after epoch: a classifier fitted on either learns the same weights."""
    reviews = np.concatenate([texts(english)[:300],
                              np.array(["", "zzyzx qwv", "이 영화 정말 좋다"], dtype=object)])
    labels = (np.arange(len(reviews)) % 2).astype("float32")
    params = params_of(architecture="seed", max_tokens=60)
    vectorizer = ARCHITECTURES["seed"].vectorizer(params)
    adapt_vocabulary(vectorizer, texts(english))  # not the three odd ones
    width = len(vectorizer.get_vocabulary())

    def datasets():
        keras.utils.set_random_seed(3)
        of_texts = (tf.data.Dataset.from_tensor_slices((reviews, labels))
                    .shuffle(len(reviews), seed=5, reshuffle_each_iteration=True).batch(64)
                    .map(lambda x, y: (vectorizer(x), y)))
        return of_texts, multi_hot_dataset(vectorizer, reviews, labels, 64, shuffle_seed=5)

    of_texts, cached = datasets()
    assert int(cached.cardinality()) == int(of_texts.cardinality()) == -(-len(reviews) // 64)
    for _epoch in range(2):
        pairs = list(zip(of_texts, cached, strict=True))
        for (rows, y), (cached_rows, cached_y) in pairs:
            assert np.array_equal(rows.numpy(), cached_rows.numpy())
            assert np.array_equal(y.numpy(), cached_y.numpy())
    assert "zzyzx" not in vectorizer.get_vocabulary()  # out of it: column 0, in both
    assert any(rows.numpy()[:, 0].any() for rows, _ in cached)

    def fitted(dataset) -> list[np.ndarray]:
        keras.utils.set_random_seed(7)
        classifier = ARCHITECTURES["seed"].classifier(params, width)
        classifier.fit(dataset, epochs=3, shuffle=False, verbose=0)
        return classifier.get_weights()

    for got, expected in zip(fitted(datasets()[1]), fitted(datasets()[0]), strict=True):
        assert np.array_equal(got, expected)


def test_texts_without_a_word_are_a_clear_error_not_an_empty_vocabulary():
    vectorizer = ARCHITECTURES["ngram-marks"].vectorizer(params_of())
    with pytest.raises(ValueError, match="no words to learn a vocabulary from in 2 training"):
        adapt_vocabulary(vectorizer, np.array(["", "   "], dtype=object))


def test_seed_keeps_its_vocabulary_and_the_default_brings_its_own(english):
    assert train(english, "seed", epochs=1).hyperparameters["max_tokens"] == 10_000
    default = Settings().architecture
    assert default == "ngram-marks" and default in ARCHITECTURES
    assert ARCHITECTURES[default].max_tokens == 800_000


def test_default_architecture_learns_the_english_sample(english):
    trained = train(english, Settings().architecture, epochs=5)
    assert accuracy(trained.model, english) >= 0.9


def test_refit_learns_the_selection_rows_for_the_epochs_early_stopping_chose(english):
    split = split_labeled(english, 0.2)
    # A word only the selection rows use: the first model cannot know it, the refit must.
    selection = split.selection.assign(text=split.selection["text"] + " quokkaesque")
    params = params_of(architecture="ngram", epochs=4, patience=1, seed=7)
    trained = train_model(texts(split.train), split.train["label"].to_numpy(),
                          texts(selection), selection["label"].to_numpy(), params)
    both = pd.concat([split.train, selection], ignore_index=True)
    epochs_seen = []
    refit = refit_model(trained, texts(both), both["label"].to_numpy(), params,
                        on_epoch=lambda epoch, logs: epochs_seen.append((epoch, set(logs))))
    # As many updates as the first run made up to its best epoch.
    epochs = refit_epochs(trained.best_epoch, len(split.train), len(both))
    assert trained.train_rows == len(split.train) and refit.train_rows == len(both)
    assert [epoch for epoch, _ in epochs_seen] == list(range(1, epochs + 1))
    assert all("val_loss" not in names for _, names in epochs_seen)  # nothing held out
    assert refit.hyperparameters["refit"] == {"rows": len(both), "epochs": epochs}
    assert refit.history == trained.history and refit.best_epoch == trained.best_epoch
    assert refit.training_seconds > trained.training_seconds
    assert "quokkaesque" in model_vocabulary(refit.model).tokens.to_pylist()
    assert "quokkaesque" not in model_vocabulary(trained.model).tokens.to_pylist()
    # Seeded: the same inputs give the same model.
    again = refit_model(trained, texts(both), both["label"].to_numpy(), params)
    probe = texts(english.head(50))
    np.testing.assert_allclose(predict_scores(again.model, probe, 64),
                               predict_scores(refit.model, probe, 64), atol=1e-6)
    assert accuracy(refit.model, english) >= 0.85


def test_a_refit_makes_as_many_updates_as_the_epochs_early_stopping_kept():
    assert refit_epochs(20, 16_000, 18_000) == 18  # selection rows added: about the same
    assert refit_epochs(20, 16_000, 48_000) == 7  # pseudo-labels tripled the rows: a third
    assert refit_epochs(3, 100, 10_000) == 1  # at least one
    assert refit_epochs(4, 0, 100) == 4  # rows unknown: the epochs as they were


def test_unknown_architecture_is_a_clear_value_error(english):
    with pytest.raises(ValueError, match=r"unknown architecture 'transformer'.*ngram.*seed"):
        train(english, "transformer", epochs=1)


def test_split_adds_character_ngrams_only_for_unspaced_scripts():
    tokens = split_ngrams(standardize_review(tf.constant(["A great film!", "정말 재미있었어요"])))
    english, korean = [[t.decode() for t in row] for row in tokens.to_list()]
    assert english == ["a", "great", "film", "a great", "great film", "a great film"]
    assert {"정말 재미있었어요", "재미있었어요", "재미", "재미있", "었어요", "요"} <= set(korean)


def test_bounded_split_marks_word_boundaries_in_unspaced_scripts_only():
    tokens = split_ngrams_bounded(standardize_review(tf.constant(["A great film!",
                                                                  "정말 재미있었어요"])))
    english, korean = [[t.decode() for t in row] for row in tokens.to_list()]
    assert english == ["a", "great", "film", "a great", "great film", "a great film"]
    # " 재미" is a word's start, "재미있었" a stem with its ending: 4-grams.
    assert {"정말 재미있었어요", " 재미", "재미있었", "어요 ", "정말 ", "재"} <= set(korean)
    assert "재미있었어" not in korean  # no 5-grams


def test_across_split_adds_grams_that_run_across_spaces_in_unspaced_scripts_only():
    tokens = split_ngrams_across(standardize_review(tf.constant(["A great film!",
                                                                 "정말 재미 없다"])))
    english, korean = [[t.decode() for t in row] for row in tokens.to_list()]
    assert english == ["a", "great", "film", "a great", "great film", "a great film"]
    assert {" 재미", "재미 ", "정말 재미 없다"} <= set(korean)  # the bounded split's tokens
    # Across the spaces: "재미없다" as if written without them, 3- and 4-grams.
    assert {"말재미", "재미없", "미없다", "정말재미", "재미없다"} <= set(korean)
    assert "말재미없" in korean and "정말재미없" not in korean  # no 5-grams
    # The same review written without spaces shares every across-gram.
    unspaced = split_ngrams_across(standardize_review(tf.constant(["정말재미없다"])))
    assert {"말재미", "재미없", "미없다", "재미없다"} <= {t.decode() for t in unspaced[0].numpy()}


def word_ngram_architecture() -> Architecture:
    """The default architecture without its character n-grams: words only (with the
    classifier of "ngram", the NB-weighted logistic regression at its own rate)."""
    default, ngram = ARCHITECTURES[Settings().architecture], ARCHITECTURES["ngram"]
    return Architecture(
        "word 1-3 grams only", lambda params: keras.layers.TextVectorization(
            max_tokens=params.max_tokens, ngrams=3, output_mode="int",
            standardize=standardize_review),
        ngram.classifier, max_tokens=default.max_tokens, prepare=ngram.prepare)


def test_marks_become_words_of_their_own_and_words_stay_as_they_were():
    texts = tf.constant(["Great!!<br />It's fine...", "재미없다...최고^^ :)", "plain words"])
    marked = [t.decode().split() for t in standardize_keeping_marks(texts).numpy()]
    assert marked == [["great", "!!", "it", "'", "s", "fine", "..."],
                      ["재미없다", "...", "최고", "^^", ":)"], ["plain", "words"]]
    plain = [t.decode().split() for t in standardize_review(texts).numpy()]
    letters = [[w for w in words if any(c.isalnum() for c in w)] for words in marked]
    assert letters == plain  # the same words; only the marks are added
    # The model of this standardization knows the marks, and its drift signals count them.
    model = train_model(np.array(["great!!", "awful...", "great fun!!", "dull..."] * 5,
                                 dtype=object), np.array([1, 0, 1, 0] * 5),
                        np.array(["fine!!", "bad..."], dtype=object), np.array([1, 0]),
                        params_of(architecture="ngram-marks", epochs=2, seed=7)).model
    vocabulary = model_vocabulary(model)
    assert vocabulary.marks_are_words and {"!!", "..."} <= set(vocabulary.tokens.to_pylist())


def test_korean_reviews_need_character_ngrams(monkeypatch):
    train_reviews = read_frame(KOREAN / "train.tsv")
    test_reviews = read_frame(KOREAN / "test.tsv")
    monkeypatch.setitem(ARCHITECTURES, "words-only", word_ngram_architecture())
    default = accuracy(train(train_reviews, Settings().architecture, epochs=10).model,
                       test_reviews)
    words_only = accuracy(train(train_reviews, "words-only", epochs=10).model, test_reviews)
    assert default >= 0.9, default
    assert words_only <= default - 0.15, (words_only, default)


def test_korean_sample_is_what_its_generator_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_korean", KOREAN / "make_korean.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(tmp_path / "train.tsv", 400, seed=11, first_id=9_100_000)
    assert (tmp_path / "train.tsv").read_bytes() == (KOREAN / "train.tsv").read_bytes()
    frame = pd.read_csv(KOREAN / "test.tsv", sep="\t")
    assert list(frame.columns) == ["id", "document", "label"] and len(frame) == 300
    assert 0.35 < frame["label"].mean() < 0.65

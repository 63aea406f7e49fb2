"""Model versions saved by an earlier release load and score as they did when saved.

``tests/fixtures/models-0.1/`` holds one small model per tokenizer family (seed, ngram,
ngram-char4, ngram-marks), trained on the bundled samples and saved by release 0.1, whose
model code sat in other modules, with the scores it gave on a fixed set of texts
(``make_fixture.py`` there is the script that made them, run from a checkout of 0.1). Keras finds the saved text
functions and layers by their registered names, so moving modules must not change them.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.model import load_model, model_vocabulary, predict_scores

FIXTURES = Path(__file__).parent / "fixtures" / "models-0.1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED["scores"]))
def test_a_model_saved_by_release_0_1_scores_identically(name):
    model = load_model(FIXTURES / f"{name}.keras")
    texts = np.array(EXPECTED["texts"], dtype=object)
    scores = predict_scores(model, texts, batch_size=8)
    np.testing.assert_allclose(scores, EXPECTED["scores"][name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(EXPECTED["scores"]))
def test_a_saved_model_still_gives_the_monitor_its_vocabulary(name):
    vocabulary = model_vocabulary(load_model(FIXTURES / f"{name}.keras"))
    expected = EXPECTED["vocabulary"][name]
    assert len(vocabulary.tokens) == expected["tokens"]
    assert vocabulary.characters_of_unspaced_scripts == expected["characters_of_unspaced_scripts"]
    assert vocabulary.marks_are_words == expected["marks_are_words"]


def test_slices_in_flight_give_each_slice_its_own_scores_and_report_in_order():
    """``predict_scores`` cuts the texts into slices of ``slice_order`` (shortest first)
    and computes SLICES_IN_FLIGHT slices at once: every score, in the texts' own order,
    is the one its slice gives alone, bit for bit, and ``between`` hears of each slice
    in order, with its row count."""
    from tasks.model import serving

    assert serving.SLICES_IN_FLIGHT > 1
    model = load_model(FIXTURES / "ngram-marks.keras")
    texts = np.array(EXPECTED["texts"] * 30, dtype=object)[:-3]  # a short last slice
    order = serving.slice_order(texts)
    starts = range(0, len(texts), 8)
    alone = np.empty(len(texts), dtype=np.float32)
    for start in starts:
        rows = order[start:start + 8]
        alone[rows] = predict_scores(model, texts[rows], 8)
    heard = []
    together = predict_scores(model, texts, 8, heard.append)
    np.testing.assert_array_equal(together, alone)
    assert heard == [len(texts[s:s + 8]) for s in starts]


def test_texts_are_scored_shortest_first_and_score_as_they_would_in_file_order():
    """Slices hold texts of about one length (a slice of token ids is padded to its
    longest text): the order is by length, texts of one length in their own order, and
    each text's score is the one file-order slices give, to float rounding."""
    from tasks.model import serving

    texts = np.array(["a much longer review of the film", "", "short", "longer one",
                      "tiny!", "짧다", "bad"], dtype=object)
    assert serving.slice_order(texts).tolist() == [1, 5, 6, 2, 4, 3, 0]
    model = load_model(FIXTURES / "ngram-marks.keras")
    many = np.array(EXPECTED["texts"] * 30, dtype=object)
    in_file_order = np.concatenate([predict_scores(model, many[s:s + 8], 8)
                                    for s in range(0, len(many), 8)])
    np.testing.assert_allclose(predict_scores(model, many, 8), in_file_order, rtol=0, atol=1e-6)


def test_a_stop_between_slices_is_raised_once_the_slices_in_flight_are_done():
    import threading

    class Stop(Exception):
        pass

    model = load_model(FIXTURES / "seed.keras")
    texts = np.array(EXPECTED["texts"] * 30, dtype=object)
    heard = []

    def between(rows: int) -> None:
        heard.append(rows)
        if len(heard) == 3:
            raise Stop

    with pytest.raises(Stop):
        predict_scores(model, texts, 4, between)
    assert heard == [4, 4, 4]  # nothing reported after the stop
    assert not [t for t in threading.enumerate() if t.name.startswith("predict")]

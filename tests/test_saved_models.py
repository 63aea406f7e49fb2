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
    """``predict_scores`` computes SLICES_IN_FLIGHT slices at once: every score is the
    one that slice gives alone, bit for bit, and ``between`` hears of each slice in
    order, with its row count."""
    from tasks.model import serving

    assert serving.SLICES_IN_FLIGHT > 1
    model = load_model(FIXTURES / "ngram-marks.keras")
    texts = np.array(EXPECTED["texts"] * 30, dtype=object)[:-3]  # a short last slice
    starts = range(0, len(texts), 8)
    alone = np.concatenate([predict_scores(model, texts[s:s + 8], 8) for s in starts])
    heard = []
    together = predict_scores(model, texts, 8, heard.append)
    np.testing.assert_array_equal(together, alone)
    assert heard == [len(texts[s:s + 8]) for s in starts]


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

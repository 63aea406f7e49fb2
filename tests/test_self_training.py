"""Self-training's plain functions: which unlabeled reviews training may learn from, and
their pseudo-labels. The retraining flow's use of them is in tests/test_retrain_flow.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.training.self_training import learnable_unlabeled, pseudo_labeled
from tasks.training.split import split_labeled


def labeled(rows: int = 600, movies: int = 60) -> pd.DataFrame:
    return pd.DataFrame({"review_id": [f"r{i}" for i in range(rows)],
                         "text": [f"labeled review {i}" for i in range(rows)],
                         "label": [i % 2 for i in range(rows)],
                         "group": [f"tt{i % movies}" for i in range(rows)]})


def unlabeled(texts: list[str], groups: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"review_id": [f"u{i}" for i in range(len(texts))], "text": texts,
                         "group": groups})


def test_no_held_out_text_or_movie_comes_back_into_training():
    split = split_labeled(labeled(), 0.2)
    gate, selection, train = split.gate.iloc[0], split.selection.iloc[0], split.train.iloc[0]
    fresh_movie = "tt-new"
    pool = unlabeled(
        [gate["text"], selection["text"], train["text"],  # labeled texts under new ids
         "a review of a gate movie", "a review of a selection movie",
         "a review of a training movie", "a review of a new movie", "a review of a new movie",
         "no movie named"],
        [None, None, None, gate["group"], selection["group"], train["group"], fresh_movie,
         fresh_movie, None])
    kept, counts = learnable_unlabeled(pool, split, max_rows=100)
    assert sorted(kept["text"]) == ["a review of a new movie", "a review of a training movie",
                                    "no movie named"]
    assert counts == {"rows": 9, "labeled_text": 3, "held_out_group": 2, "duplicate_text": 1,
                      "over_max_rows": 0, "learnable": 3}
    # Every row is accounted for once.
    assert counts["rows"] == sum(counts[k] for k in ("labeled_text", "held_out_group",
                                                     "duplicate_text", "over_max_rows",
                                                     "learnable"))


def test_the_row_limit_keeps_the_same_rows_whatever_their_order():
    split = split_labeled(labeled(), 0.2)
    pool = unlabeled([f"unlabeled review {i}" for i in range(500)], [None] * 500)
    kept, counts = learnable_unlabeled(pool, split, max_rows=120)
    assert len(kept) == 120 and counts["over_max_rows"] == 380
    shuffled, _ = learnable_unlabeled(pool.sample(frac=1, random_state=3), split, max_rows=120)
    assert set(shuffled["text"]) == set(kept["text"])
    assert learnable_unlabeled(pool, split, max_rows=0)[0].empty


def test_an_empty_folder_gives_nothing_to_learn():
    split = split_labeled(labeled(), 0.2)
    kept, counts = learnable_unlabeled(unlabeled([], []), split, max_rows=100)
    assert kept.empty and counts["rows"] == 0 and counts["learnable"] == 0


def test_pseudo_labels_are_the_confident_scores_balanced_by_class():
    pool = unlabeled([f"review {i}" for i in range(10)], [None] * 10)
    scores = np.array([0.99, 0.95, 0.9, 0.85, 0.8, 0.79, 0.5, 0.21, 0.2, 0.01])
    out = pseudo_labeled(pool, scores, confidence=0.8)
    # Five positives (>= 0.8), two negatives (<= 0.2): two of each kept.
    assert list(out.columns) == ["review_id", "text", "label"]
    assert (out["label"] == 1).sum() == 2 and (out["label"] == 0).sum() == 2
    assert set(out.loc[out["label"] == 0, "text"]) == {"review 8", "review 9"}
    assert set(out.loc[out["label"] == 1, "text"]) <= {f"review {i}" for i in range(5)}
    # The same rows, in another order, give the same pseudo-labels.
    order = np.random.default_rng(0).permutation(10)
    again = pseudo_labeled(pool.iloc[order], scores[order], confidence=0.8)
    assert set(map(tuple, again.to_numpy())) == set(map(tuple, out.to_numpy()))
    # Nothing confident on one side: no pseudo-labels at all, not one class only.
    assert pseudo_labeled(pool, np.full(10, 0.9), confidence=0.8).empty


@pytest.mark.parametrize("confidence", [0.5, 1.0, 0.3])
def test_a_confidence_outside_the_open_interval_is_a_clear_error(confidence):
    pool = unlabeled(["x"], [None])
    with pytest.raises(ValueError, match="between 0.5 and 1"):
        pseudo_labeled(pool, np.array([0.9]), confidence)

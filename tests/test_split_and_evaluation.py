"""The held-out split and the promotion arithmetic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.training.evaluation import (
    ChampionOnGate,
    GateComparison,
    classification_metrics,
    mcnemar_exact,
)
from tasks.training.promotion import PromotionRules, decide_promotion
from tasks.training.split import fingerprint, split_labeled
from tests.helpers import held_out


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"review_id": [f"id-{i}" for i in range(n)],
                         "text": [f"text {i}" for i in range(n)], "label": [i % 2 for i in range(n)]})


def test_split_is_by_id_and_stable_as_data_grows():
    small, large = reviews(2000), reviews(6000)
    small_val = set(split_labeled(small, 0.2).validation["review_id"])
    large_val = set(split_labeled(large.sample(frac=1, random_state=3), 0.2).validation["review_id"])
    assert small_val == {i for i in large_val if int(i.split("-")[1]) < 2000}
    assert 0.17 < len(large_val) / 6000 < 0.23


def test_duplicate_texts_never_leak_into_training():
    frame = reviews(3000)
    frame.loc[1000:1999, "text"] = frame.loc[0:999, "text"].to_numpy()  # 1000 duplicated texts
    split = split_labeled(frame, 0.3)
    assert split.duplicates_removed == 1000
    assert set(split.train["text"]).isdisjoint(split.validation["text"])
    assert split.train["text"].is_unique and split.validation["text"].is_unique
    in_val = held_out(frame["review_id"], 0.3)
    texts_with_val = set(frame.loc[in_val, "text"])
    assert texts_with_val == set(split.validation["text"])


def test_three_parts_are_disjoint_and_the_gate_keeps_a_shared_text():
    frame = reviews(4000)
    frame.loc[2000:3999, "text"] = frame.loc[0:1999, "text"].to_numpy()
    split = split_labeled(frame, 0.3, selection_share=0.5)
    texts = [set(part["text"]) for part in (split.train, split.selection, split.gate)]
    assert all(a.isdisjoint(b) for i, a in enumerate(texts) for b in texts[i + 1:])
    assert sum(map(len, texts)) + split.duplicates_removed == 4000
    # The gate (what the champion is compared on) is the most protected part: a text
    # whose rows fall in the gate and elsewhere is kept in the gate.
    keys = frame["review_id"]
    in_gate = held_out(keys, 0.15)
    assert set(frame.loc[in_gate, "text"]) == texts[2]
    # A text with two rows is in the gate if either row is (1 - 0.85**2 = 0.28 of texts),
    # in selection if neither is in the gate and one is in selection (0.85**2 - 0.7**2).
    assert 0.24 < len(split.gate) / 2000 < 0.32 and 0.19 < len(split.selection) / 2000 < 0.27
    assert split.split_by == "review_id"


def test_split_by_group_keeps_each_movie_in_one_part():
    frame = reviews(6000).assign(group=[f"tt{i % 400}" for i in range(6000)])
    frame.loc[::50, "group"] = None  # rows without a group are split by their id
    split = split_labeled(frame, 0.2)
    owner = {}
    for name in ("train", "selection", "gate"):
        for group in getattr(split, name)["group"].dropna():
            assert owner.setdefault(group, name) == name, f"{group} in {owner[group]} and {name}"
    assert split.split_by == "group, else review_id"
    assert split.groups["gate"] > 20 and split.groups["selection"] > 20
    # Stable as data grows: the movies held out stay held out with more reviews of them.
    more = pd.concat([frame, reviews(9000).iloc[6000:].assign(
        group=[f"tt{i % 400}" for i in range(3000)])])
    grown = split_labeled(more.sample(frac=1, random_state=2), 0.2)
    known = set(frame["group"].dropna())
    assert set(split.gate["group"].dropna()) == set(grown.gate["group"].dropna()) & known


def test_fingerprint_ignores_order_but_not_labels():
    frame = reviews(100)
    shuffled = frame.sample(frac=1, random_state=1)
    assert fingerprint(frame["review_id"], frame["label"]) == fingerprint(
        shuffled["review_id"], shuffled["label"])
    assert fingerprint(frame["review_id"], frame["label"]) != fingerprint(
        frame["review_id"], 1 - frame["label"])


def test_metrics_on_a_known_case():
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.4, 0.6, 0.1])
    metrics = classification_metrics(labels, scores)
    assert metrics["accuracy"] == 0.5
    assert metrics["confusion_matrix"] == {"tp": 1, "tn": 1, "fp": 1, "fn": 1}
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["f1"] == pytest.approx(0.5)


def test_mcnemar_exact_matches_the_binomial():
    labels = np.ones(30, dtype=int)
    champion = np.r_[np.ones(10), np.zeros(20)]    # right on the first 10
    candidate = np.r_[np.zeros(2), np.ones(28)]   # loses 2 of those, wins 20 others
    result = mcnemar_exact(labels, champion, candidate)
    assert (result["only_candidate_right"], result["only_champion_right"]) == (20, 2)
    # two-sided exact binomial: 2 * P(X <= 2), X ~ Binomial(22, 1/2)
    assert result["p_value"] == pytest.approx(2 * (1 + 22 + 231) / 2**22)


def figures(accuracy: float | None = None, confusion: dict | None = None) -> dict:
    """A model's figures on 100 gate rows of both classes at ``accuracy`` (its errors on
    both), or those of ``confusion``."""
    if confusion is None:
        right, wrong = round(accuracy * 100), 100 - round(accuracy * 100)
        confusion = {"tp": right // 2, "tn": right - right // 2, "fp": wrong // 2,
                     "fn": wrong - wrong // 2}
    rows = sum(confusion.values())
    return {"accuracy": (confusion["tp"] + confusion["tn"]) / rows,
            "confusion_matrix": confusion, "rows": rows}


def gate_evidence(candidate: float | None, champion: float | None, p: float,
                  confusion: dict | None = None) -> GateComparison:
    """The figures ``decide_promotion`` reads: the candidate's correct rows and confusion
    matrix (at ``candidate`` or of ``confusion``), the champion's and the paired test's
    p-value."""
    return GateComparison(
        figures(candidate, confusion), np.zeros(0),
        None if champion is None else ChampionOnGate("champion", figures(champion),
                                                     {"p_value": p}))


@pytest.mark.parametrize("candidate, champion, significance, p, promote", [
    (0.90, None, False, None, True),       # first model above the floor
    (0.55, None, False, None, False),      # first model below the floor
    (0.90, 0.90, False, 1.0, False),       # equal is not better
    (0.91, 0.90, False, 0.5, True),
    (0.91, 0.90, True, 0.5, False),        # better but not significant
    (0.91, 0.90, True, 0.01, True),
])
def test_promotion_rules(candidate, champion, significance, p, promote):
    decision = decide_promotion(gate_evidence(candidate, champion, p),
                                PromotionRules(min_delta=0.0, accuracy_floor=0.6,
                                               require_significance=significance, alpha=0.05,
                                               min_slice_rows=300, max_slice_drop=0.03))
    assert decision.promote is promote
    assert decision.reason


@pytest.mark.parametrize("confusion, why", [
    ({"tp": 600, "tn": 0, "fp": 0, "fn": 0}, "600 positive and 0 negative"),  # one class held out
    ({"tp": 0, "tn": 47, "fp": 3, "fn": 0}, "0 positive and 50 negative"),
    ({"tp": 50, "tn": 0, "fp": 50, "fn": 0}, "predicts positive for every held-out review"),
    ({"tp": 0, "tn": 50, "fp": 0, "fn": 50}, "predicts negative for every held-out review"),
])
def test_promotion_needs_both_classes_held_out_and_predicted(confusion, why):
    """Perfect accuracy on a one-class part, or a constant model, is no evidence: refused
    with or without a champion, with or without the significance test."""
    for champion in (None, 0.5):
        for significance in (False, True):
            decision = decide_promotion(gate_evidence(None, champion, 0.0001, confusion),
                                        PromotionRules(min_delta=0.0, accuracy_floor=0.6,
                                                       require_significance=significance,
                                                       alpha=0.05, min_slice_rows=300,
                                                       max_slice_drop=0.03))
            assert not decision.promote and why in decision.reason

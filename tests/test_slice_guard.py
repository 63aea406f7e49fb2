"""The gate's slices, the promotion guard per slice, exact margins and calibration, on
plain arrays (no Prefect, no TensorFlow); then a version's record files and model card.
The guard on real English and Korean reviews through the flow is
tests/test_sliced_gate.py."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flows.cli_output import print_retrain
from tasks.layout import CARD_FILE, DECISION_FILE, MODEL_FILE, RELIABILITY_FILE, DataLayout
from tasks.model.decision import exact, exceeds
from tasks.monitoring import SCRIPT_NAMES, SCRIPTS, letters_per_row, main_scripts
from tasks.settings import Settings
from tasks.training.calibration import calibration
from tasks.training.evaluation import (
    ChampionScores,
    classification_metrics,
    compare_on_gate,
    compare_slices,
    mcnemar_exact,
)
from tasks.training.events import HistoryEvent
from tasks.training.promotion import (
    Conclusion,
    Decision,
    PromotionRules,
    SliceVerdict,
    conclude,
    decide_promotion,
)
from tasks.training.record import gate_caveat, retrain_summary, version_metrics
from tasks.training.registry import Registry
from tasks.training.slices import NO_LETTERS, SliceRows, gate_slices, script_slice_names
from tasks.training.split import split_labeled

RULES = PromotionRules(min_delta=0.0, accuracy_floor=0.6, require_significance=False,
                       alpha=0.05, min_slice_rows=300, max_slice_drop=0.03)


# ---------------------------------------------------------------- slices
def test_script_slices_follow_the_drift_monitors_rule():
    texts = ["A lovely film", "정말 재미있어요", "很好看的电影", "とても良い映画でした",
             "Очень хороший фильм", "!!! 10/10 ^^", "좋아요 good movie indeed",
             "최고의 영화 ok"]
    names = script_slice_names(texts)
    assert names.tolist() == ["Latin-script", "Hangul", "Han", "Kana", "other-script",
                              NO_LETTERS, "Latin-script", "Hangul"]
    main = main_scripts(letters_per_row(pa.array(texts)))  # the monitor's own rule
    assert [SCRIPT_NAMES[SCRIPTS[m]] if m >= 0 else NO_LETTERS for m in main] == names.tolist()
    slices = gate_slices(pd.DataFrame({"text": texts}), min_rows=2)
    assert [(s.name, s.kind, int(s.rows.sum())) for s in slices] == [
        ("Latin-script", "script", 2), ("Hangul", "script", 2), ("Han", "script", 1),
        ("Kana", "script", 1), ("other-script", "script", 1), (NO_LETTERS, "script", 1)]


def test_the_slice_column_gives_a_slice_per_value_with_enough_rows():
    values = ["books"] * 5 + ["toys"] * 4 + [None, "", " "] + ["garden", "tools"]
    gate = pd.DataFrame({"text": ["fine"] * len(values), "slice": values})
    slices = {s.name: s for s in gate_slices(gate, min_rows=3, column="category")}
    assert list(slices) == ["Latin-script", "category=books", "category=toys",
                            "category=(no value)", "category: 2 values under 3 gate rows each"]
    assert [int(s.rows.sum()) for s in slices.values()] == [14, 5, 4, 3, 2]
    gathered = slices["category: 2 values under 3 gate rows each"]
    assert gathered.kind == "category" and gathered.values == 2 and gathered.gathered
    assert gathered.rows.tolist() == [False] * 12 + [True, True]
    # One value under the minimum is a slice of its own, reported as too small by rows.
    one = gate.iloc[:13]
    assert [s.name for s in gate_slices(one, 3, "category")][-1] == "category=garden"
    # No slice column, or one without any value: the script slices only.
    assert [s.name for s in gate_slices(gate, 3)] == ["Latin-script"]
    assert [s.name for s in gate_slices(gate.assign(slice=None), 3, "category")] == [
        "Latin-script"]


def two_languages(latin_gain: int, hangul_loss: int, hangul_gain: int = 0,
                  latin_rows: int = 700, hangul_rows: int = 300):
    """Gate rows of two slices. The champion gets 80% of each right; the candidate gets
    ``latin_gain`` more Latin rows right, and on the Hangul rows loses ``hangul_loss``
    rows the champion got right and gets ``hangul_gain`` it got wrong."""
    rows = latin_rows + hangul_rows
    labels = np.tile([1, 0], rows // 2)
    champion_right = np.zeros(rows, dtype=bool)
    champion_right[: int(latin_rows * 0.8)] = True
    champion_right[latin_rows: latin_rows + int(hangul_rows * 0.8)] = True
    candidate_right = champion_right.copy()
    wrong_latin = np.flatnonzero(~champion_right[:latin_rows])
    candidate_right[wrong_latin[:latin_gain]] = True
    right_hangul = latin_rows + np.flatnonzero(champion_right[latin_rows:])
    candidate_right[right_hangul[:hangul_loss]] = False
    wrong_hangul = latin_rows + np.flatnonzero(~champion_right[latin_rows:])
    candidate_right[wrong_hangul[:hangul_gain]] = True

    def scores(right):
        return np.where(right == (labels == 1), 0.9, 0.1)

    slices = [SliceRows("Latin-script", "script", np.arange(rows) < latin_rows),
              SliceRows("Hangul", "script", np.arange(rows) >= latin_rows)]
    return labels, scores(candidate_right), scores(champion_right), slices


def test_each_slice_is_compared_on_its_own_rows():
    labels, candidate, champion, slices = two_languages(30, 20)
    latin, hangul = compare_slices(labels, candidate, champion, slices)
    assert (latin.rows, latin.candidate_correct, latin.champion_correct) == (700, 590, 560)
    assert (hangul.rows, hangul.candidate_correct, hangul.champion_correct) == (300, 220, 240)
    assert hangul.mcnemar == mcnemar_exact(labels[700:], champion[700:], candidate[700:])
    assert hangul.mcnemar["only_champion_right"] == 20
    assert hangul.candidate_accuracy == 220 / 300 and hangul.champion_accuracy == 0.8
    alone = compare_slices(labels, candidate, None, slices)
    assert alone[1].champion_correct is None and alone[1].p_value is None
    evidence = compare_on_gate(labels, candidate, ChampionScores("v1", champion), slices)
    assert evidence.slices == (latin, hangul)
    assert (evidence.rows, evidence.candidate_correct, evidence.champion_correct) == (
        1000, 810, 800)


# ---------------------------------------------------------------- the guard
def decide(latin_gain, hangul_loss, hangul_gain=0, rules=RULES, **sizes) -> Decision:
    labels, candidate, champion, slices = two_languages(latin_gain, hangul_loss, hangul_gain,
                                                        **sizes)
    return decide_promotion(compare_on_gate(labels, candidate, ChampionScores("v1", champion),
                                            slices), rules)


def verdicts(decision: Decision) -> dict[str, str]:
    return {judged.figures.name: judged.verdict for judged in decision.slices}


def test_better_overall_but_significantly_worse_on_a_slice_is_not_promoted():
    decision = decide(latin_gain=30, hangul_loss=20)  # +10 rows overall
    assert decide_promotion(*_overall_only(30, 20)).promote  # without the guard: promoted
    assert not decision.promote
    assert decision.reason.startswith("not promoted: Hangul 0.7333 vs champion 0.8000 on 300 "
                                      "gate rows, p=1.9e-06, significantly worse (McNemar at "
                                      "alpha 0.05); overall candidate 0.8100 vs champion 0.8000")
    assert verdicts(decision) == {"Latin-script": SliceVerdict.HOLDS,
                                  "Hangul": SliceVerdict.SIGNIFICANTLY_WORSE}
    record = decision.record("now")
    assert record["slices"] == decision.slice_records()
    assert record["slices"][1] == {
        "slice": "Hangul", "kind": "script", "rows": 300, "candidate_accuracy": 0.7333,
        "champion_accuracy": 0.8, "p_value": pytest.approx(2 * 0.5 ** 20),
        "verdict": "significantly worse", "candidate_correct": 220, "champion_correct": 240,
        "values": 1}


def _overall_only(latin_gain, hangul_loss):
    """The same evidence without slices: what the decision was before the guard."""
    labels, candidate, champion, _ = two_languages(latin_gain, hangul_loss)
    return compare_on_gate(labels, candidate, ChampionScores("v1", champion)), RULES


def test_worse_by_more_than_the_margin_is_refused_even_when_not_significant():
    # Hangul: 25 rows lost, 15 gained: 10 of 300 (0.0333 > 0.03), p about 0.15.
    decision = decide(latin_gain=40, hangul_loss=25, hangul_gain=15)
    assert verdicts(decision)["Hangul"] == SliceVerdict.WORSE
    assert not decision.promote
    assert decision.reason.startswith("not promoted: Hangul 0.7667 vs champion 0.8000 on 300 "
                                      "gate rows, p=0.15, 0.0333 worse, more than the margin "
                                      "0.0300")


def test_a_drop_of_exactly_the_margin_is_allowed():
    # 19 lost, 10 gained: 9 of 300 rows, exactly 0.03; as floats 0.8 - 0.77 would exceed it.
    decision = decide(latin_gain=30, hangul_loss=19, hangul_gain=10)
    assert 240 / 300 - 231 / 300 > 0.03  # the float difference says "more than 0.03"
    assert verdicts(decision)["Hangul"] == SliceVerdict.HOLDS and decision.promote
    assert not decide(latin_gain=30, hangul_loss=20, hangul_gain=10).promote  # 10 rows: more


def test_a_slice_too_small_to_judge_is_named_never_silently_passed():
    decision = decide(latin_gain=30, hangul_loss=20, rules=replace(RULES, min_slice_rows=301))
    assert decision.promote  # Hangul has 300 gate rows: not judged...
    assert verdicts(decision)["Hangul"] == SliceVerdict.TOO_SMALL
    # ...and the reason says so.
    assert decision.reason.endswith("; too small to judge (fewer than 301 gate rows): Hangul "
                                    "(300 gate rows)")
    # Gathered values of the slice column are too small whatever their total.
    labels, candidate, champion, slices = two_languages(30, 0)
    gathered = [*slices, SliceRows("category: 5 values under 300 gate rows each", "category",
                                   np.ones(1000, dtype=bool), values=5)]
    decided = decide_promotion(compare_on_gate(labels, candidate, ChampionScores("v1", champion),
                                               gathered), RULES)
    assert verdicts(decided)["category: 5 values under 300 gate rows each"] == "too small to judge"


def test_a_candidate_better_on_every_slice_is_promoted_and_a_first_model_is_not_judged():
    decision = decide(latin_gain=30, hangul_loss=0, hangul_gain=12)
    assert decision.promote and decision.reason.startswith("better: candidate 0.8420")
    assert set(verdicts(decision).values()) == {SliceVerdict.HOLDS}
    labels, candidate, _, slices = two_languages(30, 0)
    first = decide_promotion(compare_on_gate(labels, candidate, None, slices), RULES)
    assert first.promote and set(verdicts(first).values()) == {SliceVerdict.NO_CHAMPION}
    assert PromotionRules.from_settings(Settings(min_slice_rows=50, max_slice_drop=0.1)) == \
        replace(RULES, min_slice_rows=50, max_slice_drop=0.1)


# ---------------------------------------------------------------- exact margins
def test_a_gain_of_exactly_min_delta_is_not_promoted():
    """0.9 - 0.7 is 0.20000000000000007 in floats; the rule is "must exceed 0.2"."""
    labels = np.array([1] * 10 + [0] * 10)
    candidate = np.where(labels == 1, 0.9, 0.1)
    candidate[:2] = 0.2  # 18 of 20 right
    champion = np.where(labels == 1, 0.8, 0.3)
    champion[:6] = 0.3  # 14 of 20 right
    evidence = compare_on_gate(labels, candidate, ChampionScores("v1", champion))
    assert evidence.candidate_accuracy - evidence.champion_accuracy > 0.2
    refused = decide_promotion(evidence, replace(RULES, min_delta=0.2))
    assert not refused.promote and refused.reason.startswith("not better: candidate 0.9000 vs "
                                                             "champion 0.7000 (gain +0.2000")
    assert decide_promotion(evidence, replace(RULES, min_delta=0.19)).promote
    # The floor of a first model: exactly reached is reached.
    assert decide_promotion(compare_on_gate(labels, candidate, None),
                            replace(RULES, accuracy_floor=0.9)).promote
    assert exceeds(Fraction(5, 20), 0.2) and not exceeds(Fraction(4, 20), 0.2)
    assert exact(0.1) == Fraction(1, 10) and exact(3) == 3


# ---------------------------------------------------------------- calibration
def test_the_expected_calibration_error_weights_each_bins_gap_by_its_rows():
    labels = [1] * 5 + [0] * 5 + [0] * 10
    scores = [0.95] * 10 + [0.05] * 10
    found = calibration(labels, scores)
    # Bin 0.9-1.0: mean 0.95, half positive (gap 0.45); bin 0.0-0.1: mean 0.05, none (0.05).
    assert found["expected_calibration_error"] == pytest.approx((10 * 0.45 + 10 * 0.05) / 20)
    assert [b["rows"] for b in found["bins"]] == [10] + [0] * 8 + [10]
    assert found["bins"][9] == {"lower": 0.9, "upper": 1.0, "rows": 10, "mean_score": 0.95,
                                "positive_share": 0.5}
    assert found["bins"][1]["mean_score"] is None
    # Each bin holds its lower edge; 1.0 is in the last.
    edges = calibration([1, 1, 1, 1], [0.1, 0.0999, 1.0, 0.5])["bins"]
    assert [b["rows"] for b in edges] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert calibration([1, 0] * 50, [0.5] * 100)["expected_calibration_error"] == 0.0
    assert calibration([], [])["expected_calibration_error"] is None
    figures = classification_metrics(np.array(labels), np.array(scores))
    assert figures["expected_calibration_error"] == found["expected_calibration_error"]


# ---------------------------------------------------------------- the record
def a_version(tmp_path, split_by_group: bool = True):
    """A staged version's record from real steps on stand-in scores."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"review_id": [f"r{i}" for i in range(2000)],
                          "text": [("좋은 영화 " if i % 3 == 0 else "a fine film ") + str(i)
                                   for i in range(2000)],
                          "label": [i % 2 for i in range(2000)]})
    if split_by_group:
        frame["group"] = [f"tt{i % 400}" for i in range(2000)]
    split = split_labeled(frame, 0.4)
    labels = split.gate["label"].to_numpy()
    candidate = np.clip(np.where(labels == 1, 0.8, 0.2) + rng.normal(0, 0.25, len(labels)), 0, 1)
    champion = np.clip(np.where(labels == 1, 0.7, 0.3) + rng.normal(0, 0.3, len(labels)), 0, 1)
    settings = Settings(architecture="seed", epochs=4, min_slice_rows=100)
    evidence = compare_on_gate(labels, candidate, ChampionScores("v0", champion),
                               gate_slices(split.gate, settings.min_slice_rows))
    decision = decide_promotion(evidence, PromotionRules.from_settings(settings))
    trained = SimpleNamespace(
        history={"loss": [0.6, 0.5, 0.45], "accuracy": [0.7, 0.8, 0.85],
                 "val_loss": [0.55, 0.5, 0.52], "val_accuracy": [0.72, 0.79, 0.78]},
        best_epoch=2, epochs_run=3, training_seconds=4.2, train_rows=len(split.train),
        hyperparameters={"architecture": "seed", "epochs": 4,
                         "refit": {"rows": len(split.train) + len(split.selection),
                                   "epochs": 2}})
    metrics = version_metrics("20260101T000000Z-abcdef", trained, split, settings,
                              {"files": 1, "rows_read": 2000}, evidence, {"keras": "3"}, None,
                              decision)
    return split, evidence, decision, trained, json.loads(json.dumps(metrics))


def test_the_record_files_and_the_card_say_what_metrics_json_says(tmp_path):
    split, evidence, decision, _, metrics = a_version(tmp_path)
    assert metrics["slices"] == decision.slice_records()
    assert [s["slice"] for s in metrics["slices"]] == ["Latin-script", "Hangul"]
    assert metrics["calibration"]["candidate"] == evidence.calibration["candidate"]
    assert metrics["validation"]["expected_calibration_error"] == \
        metrics["calibration"]["candidate"]["expected_calibration_error"]
    assert metrics["promotion_rules"]["min_slice_rows"] == 100 and metrics["gate_caveat"] is None
    registry = Registry(DataLayout(root=tmp_path / "data").ensure().models)
    version = metrics["version"]
    folder = registry.stage(version)
    registry.write_record(version, metrics, decision.record("now"), {"p": 1})
    for picture in ("curves.png", RELIABILITY_FILE):
        assert (folder / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (folder / CARD_FILE).read_text()
    hangul = metrics["slices"][1]
    assert (f"| Hangul | {hangul['rows']:,} | {hangul['candidate_accuracy']:.4f} | "
            f"{hangul['champion_accuracy']:.4f} | {hangul['p_value']:.2g} | "
            f"{hangul['verdict']} |") in card
    ece = metrics["calibration"]["candidate"]["expected_calibration_error"]
    assert f"Expected calibration error {ece:.4f}" in card
    assert "![reliability diagram](reliability.png)" in card
    assert "![training curves](curves.png)" in card
    assert "Gate accuracy may be optimistic" not in card

    # Decided against a champion that changed meanwhile: the card says so once published.
    (folder / MODEL_FILE).write_bytes(b"a model")
    promote = Decision(True, "better: …", decision.slices)
    late = conclude(registry, version, promote, "some-other-champion")
    assert not late.promoted and late.event == HistoryEvent.NOT_PROMOTED
    card = (registry.versions / version / CARD_FILE).read_text()
    assert "**Not promoted (the champion changed during training)**" in card
    assert json.loads((registry.versions / version / DECISION_FILE).read_text())["slices"] == \
        metrics["slices"]


def test_a_split_by_review_id_is_said_in_the_summary_the_lines_and_the_card(tmp_path, capsys):
    split, evidence, decision, trained, metrics = a_version(tmp_path, split_by_group=False)
    caveat = gate_caveat("review_id", ["movie_id", "product_id", "item_id"])
    assert metrics["gate_caveat"] == caveat and split.split_by == "review_id"
    assert "reviews of one movie or product may sit on both sides" in caveat
    assert "gate accuracy can be optimistic" in caveat
    assert "REVIEWFLOW_COLUMNS__GROUP (looked for: movie_id, product_id, item_id)" in caveat
    assert "name no movie or product" in gate_caveat("group, else review_id", ["asin"])
    assert gate_caveat("group", ["asin"]) is None
    conclusion = Conclusion(metrics["version"], decision.promote, decision.reason,
                            HistoryEvent.PROMOTED)
    summary = retrain_summary(conclusion, evidence, split, trained, 0, {}, metrics,
                              "data/models/versions/v/card.md")
    assert summary["gate_caveat"] == caveat and summary["slices"] == metrics["slices"]
    print_retrain(summary)
    printed = capsys.readouterr().out
    assert f"  note: {caveat}" in printed
    latin = metrics["slices"][0]
    assert (f"  slice Latin-script {latin['candidate_accuracy']:.4f} vs champion "
            f"{latin['champion_accuracy']:.4f} on {latin['rows']:,} gate rows, "
            f"p={latin['p_value']:.2g}: {latin['verdict']}") in printed
    assert "expected calibration error on the gate rows: " in printed
    assert "model card: data/models/versions/v/card.md" in printed
    from tasks.training.card import model_card

    assert f"> **Gate accuracy may be optimistic:** {caveat}." in model_card(
        metrics, decision.record("now"), {"curves": "c.png", "reliability": "r.png"})

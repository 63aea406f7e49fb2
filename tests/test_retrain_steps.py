"""The retraining's steps as plain functions of ``tasks.training``, without Prefect:
self-training, the refit's rows, the comparison on the gate, the decision, what becomes
of a staged version, the run summary; then every step in order on a tiny real model.
The flow that wires them is tests/test_retrain_flow.py."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tasks.layout import DECISION_FILE, MODEL_FILE, DataLayout
from tasks.model import refit_epochs
from tasks.settings import Settings
from tasks.training.candidate import Candidate, plan_refit, refit, stage_candidate, train_on_split
from tasks.training.evaluation import (
    ChampionScores,
    classification_metrics,
    compare_on_gate,
    mcnemar_exact,
)
from tasks.training.events import HistoryEvent, VersionStatus
from tasks.training.promotion import (
    Conclusion,
    Decision,
    PromotionRules,
    conclude,
    decide_promotion,
)
from tasks.training.record import retrain_summary
from tasks.training.registry import Registry
from tasks.training.self_training import SelfTraining, self_train
from tasks.training.split import split_labeled

POSITIVE = ["good", "great", "superb", "lovely", "moving", "fine"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "weak"]
NEUTRAL = ["film", "plot", "actor", "scene", "story", "music", "ending"]


def review_text(rng: np.random.Generator, label: int, number: int) -> str:
    words = [*rng.choice(POSITIVE if label else NEGATIVE, 3), *rng.choice(NEUTRAL, 3)]
    return " ".join(rng.permutation(words)) + f" number{number}"


def labeled(rows: int = 600, movies: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = [(i + i // movies) % 2 for i in range(rows)]  # both classes in each movie
    return pd.DataFrame({"review_id": [f"r{i}" for i in range(rows)],
                         "text": [review_text(rng, label, i) for i, label in enumerate(labels)],
                         "label": labels, "group": [f"tt{i % movies}" for i in range(rows)]})


def unlabeled(texts: list[str], groups: list[str | None] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"review_id": [f"u{i}" for i in range(len(texts))], "text": texts,
                         "group": groups or [None] * len(texts)})


def word_scores(texts: np.ndarray) -> np.ndarray:
    """A stand-in first model: sure of a text with a positive or a negative word."""
    return np.array([0.95 if any(w in t.split() for w in POSITIVE) else
                     0.05 if any(w in t.split() for w in NEGATIVE) else 0.5 for t in texts])


def test_self_training_scores_the_learnable_rows_once_and_counts_every_row():
    split = split_labeled(labeled(), 0.2)
    pool = unlabeled([split.gate["text"][0],  # a labeled text under a new id: never scored
                      "good film", "great plot", "superb actor", "bad film", "dull plot",
                      "bad film", "a film"])
    scored = []
    result = self_train(pool, split, lambda texts: scored.append(list(texts)) or
                        word_scores(texts), max_rows=100, confidence=0.8)
    assert len(scored) == 1 and sorted(scored[0]) == sorted(
        ["good film", "great plot", "superb actor", "bad film", "dull plot", "a film"])
    assert result.counts == {"rows": 8, "labeled_text": 1, "held_out_group": 0,
                             "duplicate_text": 1, "over_max_rows": 0, "learnable": 6}
    # Three sure positives, two sure negatives, one unsure: two of each class.
    assert result.pseudo_counts == {"positive": 2, "negative": 2}
    assert list(result.pseudo.columns) == ["review_id", "text", "label"]
    assert set(result.pseudo.loc[result.pseudo["label"] == 0, "text"]) == {"bad film",
                                                                            "dull plot"}
    stats = {"files": 2, "files_quarantined": 1, "rows_rejected": 3, "rows_read": 11,
             "content_sha256": "c" * 64}
    assert result.record(stats) == {**result.counts,
                                    "pseudo_labeled": {"positive": 2, "negative": 2},
                                    "files": 2, "files_quarantined": 1, "rows_rejected": 3,
                                    "content_sha256": "c" * 64}


def test_self_training_with_nothing_learnable_scores_nothing():
    split = split_labeled(labeled(), 0.2)
    pool = unlabeled([split.train["text"][0], split.gate["text"][1]])

    def never(texts):
        raise AssertionError(f"scored {list(texts)}")

    for rows in (pool, pool.iloc[:0]):
        result = self_train(rows, split, never, max_rows=100, confidence=0.7)
        assert result.pseudo.empty and list(result.pseudo.columns) == ["review_id", "text",
                                                                       "label"]
        assert result.pseudo_counts == {"positive": 0, "negative": 0}
        assert result.counts["learnable"] == 0 and result.counts["rows"] == len(rows)
        assert Candidate(SimpleNamespace(), result).pseudo_labeled_rows == 0


def pseudo_rows(count: int) -> SelfTraining:
    frame = pd.DataFrame({"review_id": [f"p{i}" for i in range(count)],
                          "text": [f"pseudo {i}" for i in range(count)],
                          "label": np.array([i % 2 for i in range(count)], dtype="int8")})
    return SelfTraining({"rows": count, "learnable": count}, frame)


@pytest.mark.parametrize("with_selection, self_training, parts", [
    (False, None, None),                          # the first model is the candidate
    (False, pseudo_rows(0), None),                # self-training found nothing sure
    (True, None, ["training", "selection"]),
    (True, pseudo_rows(0), ["training", "selection"]),
    (False, pseudo_rows(6), ["training", "pseudo-labeled"]),
    (True, pseudo_rows(6), ["training", "selection", "pseudo-labeled"]),
])
def test_the_refit_learns_from_its_parts_for_as_many_updates(with_selection, self_training,
                                                             parts):
    split = split_labeled(labeled(), 0.2)
    first = SimpleNamespace(best_epoch=6, train_rows=len(split.train))
    plan = plan_refit(first, split, self_training, with_selection=with_selection)
    if parts is None:
        assert plan is None
        return
    sizes = {"training": len(split.train), "selection": len(split.selection),
             "pseudo-labeled": 6}
    assert plan.sizes == {name: sizes[name] for name in parts}
    rows = sum(plan.sizes.values())
    assert plan.epochs == refit_epochs(6, len(split.train), rows)
    assert list(plan.rows.columns) == ["review_id", "text", "label"] and len(plan.rows) == rows
    assert plan.rows["review_id"].is_unique
    assert set(plan.rows["review_id"]).isdisjoint(split.gate["review_id"])


def gate_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20 gate rows: the candidate gets 18 right, the champion 14; the candidate alone is
    right on 4 rows, the champion alone on none."""
    labels = np.array([1] * 10 + [0] * 10)
    candidate = np.where(labels == 1, 0.9, 0.1)
    candidate[:2] = 0.2
    champion = np.where(labels == 1, 0.8, 0.3)
    champion[:6] = 0.3
    return labels, candidate, champion


def test_the_gate_comparison_holds_both_models_figures_and_their_paired_test():
    labels, candidate, champion = gate_case()
    alone = compare_on_gate(labels, candidate, None)
    assert alone.candidate == classification_metrics(labels, candidate)
    assert alone.champion is None and alone.champion_version is None
    assert alone.champion_accuracy is None and alone.p_value is None
    assert alone.compared_to() == {"champion": None, "champion_validation": None,
                                   "mcnemar": None}
    both = compare_on_gate(labels, candidate, ChampionScores("v1", champion))
    assert both.champion_version == "v1"
    assert (both.candidate_accuracy, both.champion_accuracy) == (0.9, 0.7)
    paired = mcnemar_exact(labels, champion, candidate)
    assert (paired["only_candidate_right"], paired["only_champion_right"]) == (4, 0)
    assert both.p_value == paired["p_value"] == pytest.approx(2 / 2**4)
    assert both.compared_to() == {"champion": "v1",
                                  "champion_validation": classification_metrics(labels, champion),
                                  "mcnemar": paired}
    np.testing.assert_array_equal(both.candidate_scores, candidate)


def test_promotion_is_decided_from_the_comparison_and_the_settings_rules():
    labels, candidate, champion = gate_case()
    rules = PromotionRules.from_settings(Settings(min_delta=0.05, accuracy_floor=0.95,
                                                  require_significance=False,
                                                  significance_alpha=0.2))
    assert rules == PromotionRules(min_delta=0.05, accuracy_floor=0.95,
                                   require_significance=False, alpha=0.2,
                                   min_slice_rows=300, max_slice_drop=0.03)
    both = compare_on_gate(labels, candidate, ChampionScores("v1", champion))
    decided = decide_promotion(both, rules)
    assert decided.promote and decided.reason.startswith("better: candidate 0.9000 vs "
                                                         "champion 0.7000")
    assert not decide_promotion(both, replace(rules, min_delta=0.25)).promote
    # p = 0.125: significant at 0.2, not at 0.05.
    assert decide_promotion(both, replace(rules, require_significance=True)).promote
    refused = decide_promotion(both, replace(rules, require_significance=True, alpha=0.05))
    assert not refused.promote and refused.reason.startswith("gain not significant")
    # Without a champion the floor decides: 0.9 is below 0.95.
    first = decide_promotion(compare_on_gate(labels, candidate, None), rules)
    assert not first.promote and "below the floor 0.9500" in first.reason
    # A candidate that says "positive" to every gate row is refused whatever the champion.
    constant = compare_on_gate(labels, np.full(20, 0.9), ChampionScores("v1", 1 - champion))
    assert not decide_promotion(constant, rules).promote
    assert Decision(True, "why").record("2026-01-01T00:00:00+00:00") == {
        "promote": True, "reason": "why", "decided_at": "2026-01-01T00:00:00+00:00",
        "slices": []}


def staged(registry: Registry, decision: Decision) -> str:
    """A staged version (a stand-in model file and its decision.json)."""
    version = registry.new_version()
    folder = registry.stage(version)
    (folder / MODEL_FILE).write_bytes(b"a model")
    (folder / DECISION_FILE).write_text(json.dumps(decision.record("now")))
    return version


def test_the_conclusion_says_what_became_of_each_staged_version(tmp_path):
    registry = Registry(DataLayout(root=tmp_path / "data").ensure().models)
    first_decision = Decision(True, "no champion yet")
    first = conclude(registry, staged(registry, first_decision), first_decision, None)
    assert (first.promoted, first.reason, first.event) == (True, "no champion yet",
                                                           HistoryEvent.PROMOTED)
    assert registry.champion_version() == first.version

    rejected_decision = Decision(False, "not better: …")
    rejected = conclude(registry, staged(registry, rejected_decision), rejected_decision,
                        first.version)
    assert (rejected.promoted, rejected.reason, rejected.event) == (
        False, "not better: …", HistoryEvent.REJECTED)

    # Decided against an earlier champion than the current one: published, not promoted.
    better = Decision(True, "better: …")
    late = conclude(registry, staged(registry, better), better, rejected.version)
    assert not late.promoted and late.event == HistoryEvent.NOT_PROMOTED
    assert late.reason.startswith(f"not promoted: the champion changed from "
                                  f"{rejected.version} to {first.version}")
    assert registry.champion_version() == first.version
    events = [(e["event"], e["version"]) for e in registry.read_history()]
    assert events == [(c.event, c.version) for c in (first, rejected, late)]
    status = {row["version"]: row["status"] for row in registry.list_versions()}
    assert status == {first.version: VersionStatus.CHAMPION,
                      rejected.version: VersionStatus.REJECTED,
                      late.version: VersionStatus.NOT_PROMOTED}


def test_the_summary_of_a_retraining_keeps_its_keys_and_figures():
    labels, candidate, champion = gate_case()
    split = split_labeled(labeled(), 0.2)
    trained = SimpleNamespace(epochs_run=7, train_rows=350, training_seconds=12.345)
    conclusion = Conclusion("v2", True, "better: …", HistoryEvent.PROMOTED)
    evidence = compare_on_gate(labels, candidate, ChampionScores("v1", champion))
    slices = [{"slice": "Latin-script", "rows": 20, "verdict": "holds"}]
    summary = retrain_summary(conclusion, evidence, split, trained, 6, {"labeled_rows_read": 600},
                              {"slices": slices, "gate_caveat": None}, "models/versions/v2/card.md")
    assert summary == {
        "version": "v2", "promoted": True, "reason": "better: …", "validation_accuracy": 0.9,
        "champion_before": "v1", "champion_accuracy": 0.7,
        "expected_calibration_error": evidence.candidate["expected_calibration_error"],
        "train_rows": len(split.train), "selection_rows": len(split.selection),
        "validation_rows": len(split.gate), "split_by": "group", "gate_caveat": None,
        "slices": slices, "epochs_run": 7, "final_training_rows": 350,
        "pseudo_labeled_rows": 6, "training_seconds": 12.3,
        "row_counts": {"labeled_rows_read": 600}, "model_card": "models/versions/v2/card.md"}
    assert list(summary) == ["version", "promoted", "reason", "validation_accuracy",
                             "champion_before", "champion_accuracy",
                             "expected_calibration_error", "train_rows", "selection_rows",
                             "validation_rows", "split_by", "gate_caveat", "slices",
                             "epochs_run", "final_training_rows", "pseudo_labeled_rows",
                             "training_seconds", "row_counts", "model_card"]
    first = retrain_summary(conclusion, compare_on_gate(labels, candidate, None), split,
                            trained, 0, {})
    assert first["champion_before"] is None and first["champion_accuracy"] is None


def test_the_steps_train_judge_and_stage_a_tiny_candidate(tmp_path):
    """Every step in the flow's order on a small real model (the seed architecture, a few
    hundred short reviews): what the registry then holds is what the steps returned."""
    from tasks.model import TrainingParams, load_model, predict_scores

    layout = DataLayout(root=tmp_path / "data").ensure()
    settings = Settings(data_dir=layout.root, architecture="seed", epochs=10)
    split = split_labeled(labeled(500, movies=50), 0.3)
    params = TrainingParams.from_settings(settings, batch_size=32)
    epochs_seen = []
    first = train_on_split(split, params, on_epoch=lambda epoch, logs: epochs_seen.append(
        (epoch, "val_accuracy" in logs)))
    assert epochs_seen == [(epoch, True) for epoch in range(1, first.epochs_run + 1)]
    assert first.train_rows == len(split.train)

    rng = np.random.default_rng(7)
    pool = unlabeled([review_text(rng, i % 2, 1000 + i) for i in range(120)])
    self_training = self_train(pool, split, partial(predict_scores, first.model,
                                                    batch_size=64),
                               max_rows=1000, confidence=0.7)
    pseudo = self_training.pseudo_counts
    assert pseudo["positive"] == pseudo["negative"] > 0
    plan = plan_refit(first, split, self_training, with_selection=True)
    candidate = Candidate(refit(first, plan, params), self_training, plan)
    assert candidate.trained.train_rows == len(plan.rows) == (
        len(split.train) + len(split.selection) + candidate.pseudo_labeled_rows)
    assert candidate.trained.hyperparameters["refit"] == {"rows": len(plan.rows),
                                                          "epochs": plan.epochs}
    assert candidate.trained.best_epoch == first.best_epoch  # the first run's record stays

    evidence = compare_on_gate(split.gate["label"].to_numpy(), candidate.scores(split.gate, 64),
                               None)
    decision = decide_promotion(evidence, PromotionRules.from_settings(settings))
    assert decision.promote, decision.reason
    registry = Registry(layout.models)
    record = candidate.self_training_record({"files": 1, "files_quarantined": 0,
                                             "rows_rejected": 0, "content_sha256": "u" * 64})
    staged = stage_candidate(registry, candidate, split, settings,
                             {"content_sha256": "l" * 64}, evidence, decision, record)
    version = staged.version
    conclusion = conclude(registry, version, decision, evidence.champion_version)
    assert conclusion.promoted and registry.champion_version() == version

    saved = registry.read_version(version)
    metrics = saved["metrics"]
    assert metrics["validation"] == json.loads(json.dumps(evidence.candidate))
    assert metrics["compared_to"] == {"champion": None, "champion_validation": None,
                                      "mcnemar": None}
    assert metrics["self_training"] == record and record["pseudo_labeled"] == pseudo
    assert set(metrics["versions"]) == {"tensorflow", "keras"}
    assert metrics["hyperparameters"]["refit"] == candidate.trained.hyperparameters["refit"]
    assert saved["decision"] == json.loads(json.dumps(decision.record(metrics["trained_at"])))
    assert metrics == json.loads(json.dumps(staged.metrics))
    assert registry.read_profile(version)["version"] == version
    np.testing.assert_allclose(
        predict_scores(load_model(registry.local_model(version)), split.gate["text"]
                       .to_numpy(dtype=object), 64),
        evidence.candidate_scores, atol=1e-6)

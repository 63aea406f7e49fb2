"""Metrics on held-out rows, and the candidate compared with the champion on the gate.

``classification_metrics`` and ``mcnemar_exact`` are the figures of one model, and of two
models' paired predictions, on the same rows, in the form metrics.json records them
(``Figures``, ``PairedTest``). ``compare_on_gate`` measures the candidate and the champion
on the gate rows, on all of them and on each slice (``tasks.training.slices``,
``compare_slices``), and returns a ``GateComparison``, the evidence the promotion decision
is made from (``tasks.training.promotion``). Beside accuracies it keeps the counts of
correct rows they come from, which the decision compares (``tasks.model.decision.exceeds``).
``champion_scores`` scores the gate rows with the champion, loading it through
``tasks.model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from tasks.model.decision import predicted_labels
from tasks.training.calibration import Calibration, calibration
from tasks.training.slices import SliceRows
from tasks.training.split import texts


class Confusion(TypedDict):
    tp: int
    tn: int
    fp: int
    fn: int


class Figures(TypedDict):
    """One model on held-out rows (metrics.json "validation", "champion_validation")."""

    accuracy: float
    loss: float
    roc_auc: float
    precision: float
    recall: float
    f1: float
    expected_calibration_error: float | None
    confusion_matrix: Confusion
    rows: int


def correct_rows(figures: Figures) -> int:
    """The rows a model got right, from its confusion matrix: what its accuracy is of."""
    matrix = figures["confusion_matrix"]
    return matrix["tp"] + matrix["tn"]


class PairedTest(TypedDict):
    """The exact McNemar test on two models' predictions of the same rows
    (metrics.json "compared_to" "mcnemar")."""

    only_candidate_right: int
    only_champion_right: int
    p_value: float


def classification_metrics(labels: np.ndarray, scores: np.ndarray) -> Figures:
    """Accuracy, log loss, ROC AUC, precision, recall, F1 and the confusion matrix."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = predicted_labels(scores).astype(int)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    tn = int(((predicted == 0) & (labels == 0)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    loss = float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    positives, negatives = int(labels.sum()), int(len(labels) - labels.sum())
    if positives and negatives:  # Mann-Whitney form of the ROC AUC, ties counted half
        # Imported here: scipy.stats is a slow import, and the commands that only read a
        # version's record (models list) import this module for its types.
        from scipy.stats import rankdata

        ranks = rankdata(scores)
        auc = float((ranks[labels == 1].sum() - positives * (positives + 1) / 2)
                    / (positives * negatives))
    else:
        auc = float("nan")
    return {"accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
            "loss": loss, "roc_auc": auc, "precision": precision, "recall": recall, "f1": f1,
            "expected_calibration_error": calibration(labels, scores)[
                "expected_calibration_error"],
            "confusion_matrix": {"tp": tp, "tn": tn, "fp": fp, "fn": fn}, "rows": int(len(labels))}


def mcnemar_exact(labels: np.ndarray, champion_scores: np.ndarray,
                  candidate_scores: np.ndarray) -> PairedTest:
    """Exact (binomial) McNemar test on paired predictions of the same rows."""
    from scipy.stats import binomtest  # see classification_metrics

    labels = np.asarray(labels).astype(int)
    champion_right = predicted_labels(champion_scores) == labels
    candidate_right = predicted_labels(candidate_scores) == labels
    only_candidate = int((candidate_right & ~champion_right).sum())
    only_champion = int((champion_right & ~candidate_right).sum())
    discordant = only_candidate + only_champion
    p_value = binomtest(only_candidate, discordant, 0.5).pvalue if discordant else 1.0
    return {"only_candidate_right": only_candidate, "only_champion_right": only_champion,
            "p_value": float(p_value)}


@dataclass(frozen=True)
class ChampionScores:
    """The champion's scores on the gate rows (``champion_scores``)."""

    version: str
    scores: np.ndarray


@dataclass(frozen=True)
class ChampionOnGate:
    """The champion on the gate rows, and the paired test of its predictions against the
    candidate's."""

    version: str
    figures: Figures
    mcnemar: PairedTest


@dataclass(frozen=True)
class SliceComparison:
    """The candidate and the champion (None: there is none) on the gate rows of one slice
    (``tasks.training.slices.SliceRows``): its rows, how many each got right, and the
    paired test of their predictions there."""

    name: str
    kind: str
    rows: int
    candidate_correct: int
    champion_correct: int | None = None
    mcnemar: PairedTest | None = None
    values: int = 1

    @property
    def gathered(self) -> bool:
        """Several values of the slice column, each with too few rows to be judged."""
        return self.values > 1

    @property
    def candidate_accuracy(self) -> float | None:
        return self.candidate_correct / self.rows if self.rows else None

    @property
    def champion_accuracy(self) -> float | None:
        if self.champion_correct is None or not self.rows:
            return None
        return self.champion_correct / self.rows

    @property
    def p_value(self) -> float | None:
        return self.mcnemar["p_value"] if self.mcnemar else None


def compare_slices(labels: np.ndarray, candidate_scores: np.ndarray,
                   champion_scores: np.ndarray | None, slices: Sequence[SliceRows]
                   ) -> tuple[SliceComparison, ...]:
    """Both models on the rows of each slice (masks over the rows of ``labels``)."""
    labels = np.asarray(labels).astype(int)
    candidate_right = predicted_labels(candidate_scores) == labels
    champion_right = (predicted_labels(champion_scores) == labels
                      if champion_scores is not None else None)
    found = []
    for part in slices:
        rows = np.asarray(part.rows, dtype=bool)
        paired = (mcnemar_exact(labels[rows], np.asarray(champion_scores)[rows],
                                np.asarray(candidate_scores)[rows])
                  if champion_scores is not None else None)
        found.append(SliceComparison(
            part.name, part.kind, int(rows.sum()), int(candidate_right[rows].sum()),
            int(champion_right[rows].sum()) if champion_right is not None else None, paired,
            part.values))
    return tuple(found)


@dataclass(frozen=True)
class GateComparison:
    """The candidate, and the champion when there is one, measured now on the same gate
    rows, on all of them and on each slice, with the reliability bins of each model's
    scores: what ``tasks.training.promotion.decide_promotion`` decides from."""

    candidate: Figures
    candidate_scores: np.ndarray
    champion: ChampionOnGate | None = None
    slices: tuple[SliceComparison, ...] = ()
    calibration: dict[str, Calibration | None] = field(default_factory=dict)

    @property
    def champion_version(self) -> str | None:
        """The champion compared against: the one a promotion may replace."""
        return self.champion.version if self.champion else None

    @property
    def candidate_accuracy(self) -> float:
        return self.candidate["accuracy"]

    @property
    def champion_accuracy(self) -> float | None:
        return self.champion.figures["accuracy"] if self.champion else None

    @property
    def p_value(self) -> float | None:
        """McNemar's p-value of the paired predictions; None without a champion."""
        return self.champion.mcnemar["p_value"] if self.champion else None

    @property
    def rows(self) -> int:
        return self.candidate["rows"]

    @property
    def candidate_correct(self) -> int:
        return correct_rows(self.candidate)

    @property
    def champion_correct(self) -> int | None:
        return correct_rows(self.champion.figures) if self.champion else None

    def compared_to(self) -> dict:
        """metrics.json "compared_to": the champion, its figures and the paired test."""
        return {"champion": self.champion_version,
                "champion_validation": self.champion.figures if self.champion else None,
                "mcnemar": self.champion.mcnemar if self.champion else None}


def compare_on_gate(labels: np.ndarray, candidate_scores: np.ndarray,
                    champion: ChampionScores | None,
                    slices: Sequence[SliceRows] = ()) -> GateComparison:
    """The candidate's figures on the rows of ``labels``, and the champion's with the
    paired test when there is a champion (its scores of the same rows, in the same
    order); the same on the rows of each of ``slices``
    (``tasks.training.slices.gate_slices``)."""
    labels = np.asarray(labels)
    theirs = champion.scores if champion is not None else None
    on_slices = compare_slices(labels, candidate_scores, theirs, slices)
    reliability = {"candidate": calibration(labels, candidate_scores),
                   "champion": calibration(labels, theirs) if theirs is not None else None}
    if champion is None:
        return GateComparison(classification_metrics(labels, candidate_scores),
                              candidate_scores, None, on_slices, reliability)
    return GateComparison(
        classification_metrics(labels, candidate_scores), candidate_scores,
        ChampionOnGate(champion.version, classification_metrics(labels, champion.scores),
                       mcnemar_exact(labels, champion.scores, candidate_scores)),
        on_slices, reliability)


def champion_scores(registry, gate, batch_size: int) -> ChampionScores | None:
    """The current champion's scores on the rows of ``gate`` (a frame with a text column),
    or None without a champion. ``registry``: a ``tasks.training.registry.Registry``."""
    from tasks.model import load_model, predict_scores

    version = champion_in_force(registry)
    if version is None:
        return None
    model = load_model(registry.local_model(version))
    return ChampionScores(version, predict_scores(model, texts(gate), batch_size))


def champion_in_force(registry) -> str | None:
    """The champion's version; None only for a registry that never had one, where the
    candidate becomes the first champion. A champion lost (``champion.json`` missing or
    unusable, its model gone) is a ``RegistryError`` naming the repair: a retraining must
    never promote as if there had been none."""
    from tasks.errors import NoChampionError

    try:
        return registry.champion_version()
    except NoChampionError:
        return None

"""Metrics on held-out rows and the promotion decision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, rankdata

from tasks.model.decision import predicted_labels


def classification_metrics(labels: np.ndarray, scores: np.ndarray) -> dict:
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
        ranks = rankdata(scores)
        auc = float((ranks[labels == 1].sum() - positives * (positives + 1) / 2)
                    / (positives * negatives))
    else:
        auc = float("nan")
    return {"accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
            "loss": loss, "roc_auc": auc, "precision": precision, "recall": recall, "f1": f1,
            "confusion_matrix": {"tp": tp, "tn": tn, "fp": fp, "fn": fn}, "rows": int(len(labels))}


def mcnemar_exact(labels: np.ndarray, champion_scores: np.ndarray,
                  candidate_scores: np.ndarray) -> dict:
    """Exact (binomial) McNemar test on paired predictions of the same rows."""
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
class Decision:
    promote: bool
    reason: str


def unfit_evidence(confusion: dict) -> str | None:
    """Why held-out rows and a candidate's predictions on them cannot support a promotion,
    or None. ``confusion`` is the candidate's confusion matrix on the held-out part.

    Accuracy on a part that holds one class only says nothing about the other class (a
    model that calls everything positive scores 1.0 on all-positive rows), and a model
    whose predictions are all one class is no classifier, whatever its accuracy.
    """
    positives, negatives = confusion["tp"] + confusion["fn"], confusion["tn"] + confusion["fp"]
    if not positives or not negatives:
        return (f"the held-out part has {positives} positive and {negatives} negative reviews:"
                " accuracy on one class cannot show a better model; add labeled reviews of "
                "both classes to labeled/")
    said_positive, said_negative = confusion["tp"] + confusion["fp"], confusion["tn"] + confusion["fn"]
    if not said_positive or not said_negative:
        constant = "positive" if said_positive else "negative"
        return (f"the candidate predicts {constant} for every held-out review: a constant "
                "model is never promoted")
    return None


def decide_promotion(candidate_accuracy: float, champion_accuracy: float | None, *,
                     min_delta: float, accuracy_floor: float, require_significance: bool,
                     alpha: float, p_value: float | None, confusion: dict) -> Decision:
    """Promote only on evidence measured now, on the same held-out rows.

    ``confusion`` is the candidate's confusion matrix on those rows: rows of one class
    only, or constant predictions, refuse the promotion before any accuracy is compared
    (``unfit_evidence``).
    """
    unfit = unfit_evidence(confusion)
    if unfit is not None:
        return Decision(False, f"not promoted: {unfit}")
    if champion_accuracy is None:
        if candidate_accuracy >= accuracy_floor:
            return Decision(True, f"no champion yet; accuracy {candidate_accuracy:.4f} reaches "
                                  f"the floor {accuracy_floor:.4f}")
        return Decision(False, f"no champion yet, but accuracy {candidate_accuracy:.4f} is below "
                               f"the floor {accuracy_floor:.4f}")
    gain = candidate_accuracy - champion_accuracy
    figures = (f"candidate {candidate_accuracy:.4f} vs champion {champion_accuracy:.4f} "
               f"(gain {gain:+.4f}, needed > {min_delta:.4f})")
    if gain <= min_delta:
        return Decision(False, f"not better: {figures}")
    if require_significance and (p_value is None or p_value >= alpha):
        return Decision(False, f"gain not significant: {figures}; McNemar p={p_value:.4g} "
                               f">= {alpha}")
    extra = f"; McNemar p={p_value:.4g}" if p_value is not None else ""
    return Decision(True, f"better: {figures}{extra}")

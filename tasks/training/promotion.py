"""The promotion decision and its conclusion in the registry.

``decide_promotion`` is the one place a candidate is judged: from the evidence of the gate
rows (``tasks.training.evaluation.GateComparison``) and the rules of the settings
(``PromotionRules``), it returns a ``Decision``. ``conclude`` publishes the staged version
and moves the champion pointer when the decision says so and the champion is still the
one compared against (``Registry.conclude_training``), and says what became of it
(``Conclusion``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.settings import Settings
from tasks.training.evaluation import Confusion, GateComparison
from tasks.training.events import HistoryEvent


@dataclass(frozen=True)
class PromotionRules:
    """What a candidate must show on the gate rows to be promoted."""

    min_delta: float  # accuracy gain over the champion it must exceed
    accuracy_floor: float  # accuracy it must reach when there is no champion yet
    require_significance: bool  # the paired McNemar test must also give p < alpha
    alpha: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PromotionRules:
        return cls(min_delta=settings.min_delta, accuracy_floor=settings.accuracy_floor,
                   require_significance=settings.require_significance,
                   alpha=settings.significance_alpha)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str

    def record(self, decided_at: str) -> dict:
        """decision.json of the version it decides."""
        return {"promote": self.promote, "reason": self.reason, "decided_at": decided_at}


def unfit_evidence(confusion: Confusion) -> str | None:
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


def decide_promotion(evidence: GateComparison, rules: PromotionRules) -> Decision:
    """Promote only on evidence measured now, on the same held-out rows.

    Gate rows of one class only, or constant predictions by the candidate, refuse the
    promotion before any accuracy is compared (``unfit_evidence``).
    """
    unfit = unfit_evidence(evidence.candidate["confusion_matrix"])
    if unfit is not None:
        return Decision(False, f"not promoted: {unfit}")
    candidate_accuracy = evidence.candidate_accuracy
    champion_accuracy, p_value = evidence.champion_accuracy, evidence.p_value
    floor, min_delta, alpha = rules.accuracy_floor, rules.min_delta, rules.alpha
    if champion_accuracy is None:
        if candidate_accuracy >= floor:
            return Decision(True, f"no champion yet; accuracy {candidate_accuracy:.4f} reaches "
                                  f"the floor {floor:.4f}")
        return Decision(False, f"no champion yet, but accuracy {candidate_accuracy:.4f} is below "
                               f"the floor {floor:.4f}")
    gain = candidate_accuracy - champion_accuracy
    figures = (f"candidate {candidate_accuracy:.4f} vs champion {champion_accuracy:.4f} "
               f"(gain {gain:+.4f}, needed > {min_delta:.4f})")
    if gain <= min_delta:
        return Decision(False, f"not better: {figures}")
    if rules.require_significance and (p_value is None or p_value >= alpha):
        return Decision(False, f"gain not significant: {figures}; McNemar p={p_value:.4g} "
                               f">= {alpha}")
    extra = f"; McNemar p={p_value:.4g}" if p_value is not None else ""
    return Decision(True, f"better: {figures}{extra}")


@dataclass(frozen=True)
class Conclusion:
    """What became of a staged version: published, and promoted or not, with the reason
    the history records; ``event`` is that history event."""

    version: str
    promoted: bool
    reason: str
    event: HistoryEvent


def conclude(registry, version: str, decision: Decision, compared_against: str | None
             ) -> Conclusion:
    """Publish the staged ``version`` and promote it if ``decision`` says so and the
    champion is still ``compared_against`` (``Registry.conclude_training``): a champion
    changed meanwhile stays, and the version is "not promoted" rather than "rejected"."""
    promoted, reason = registry.conclude_training(version, decision.promote, decision.reason,
                                                  compared_against)
    event = (HistoryEvent.PROMOTED if promoted else
             HistoryEvent.NOT_PROMOTED if decision.promote else HistoryEvent.REJECTED)
    return Conclusion(version, promoted, reason, event)

"""The promotion decision and its conclusion in the registry.

``decide_promotion`` is the one place a candidate is judged: from the evidence of the gate
rows (``tasks.training.evaluation.GateComparison``) and the rules of the settings
(``PromotionRules``), it returns a ``Decision``, with a verdict on each slice of the gate
(``SliceVerdict``, ``JudgedSlice``): a candidate better overall is still refused when it is
significantly worse than the champion, or worse by more than ``max_slice_drop``, on a
slice of at least ``min_slice_rows`` gate rows; a smaller slice is reported as too small
to judge. Gains and drops are compared as counts of correct rows
(``tasks.model.decision.exceeds``). ``conclude`` publishes the staged version
and moves the champion pointer when the decision says so and the champion is still the
one compared against (``Registry.conclude_training``), and says what became of it
(``Conclusion``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from tasks.model.decision import exact, exceeds
from tasks.settings import Settings
from tasks.training.evaluation import Confusion, GateComparison, SliceComparison
from tasks.training.events import HistoryEvent
from tasks.training.slices import describe_slice


@dataclass(frozen=True)
class PromotionRules:
    """What a candidate must show on the gate rows to be promoted."""

    min_delta: float  # accuracy gain over the champion it must exceed
    accuracy_floor: float  # accuracy it must reach when there is no champion yet
    require_significance: bool  # the paired McNemar test must also give p < alpha
    alpha: float  # also the level at which a slice is significantly worse
    min_slice_rows: int  # gate rows a slice needs to be judged
    max_slice_drop: float  # what a judged slice may lose, significant or not

    @classmethod
    def from_settings(cls, settings: Settings) -> PromotionRules:
        return cls(min_delta=settings.min_delta, accuracy_floor=settings.accuracy_floor,
                   require_significance=settings.require_significance,
                   alpha=settings.significance_alpha, min_slice_rows=settings.min_slice_rows,
                   max_slice_drop=settings.max_slice_drop)


class SliceVerdict(StrEnum):
    """What the guard made of one slice of the gate rows."""

    HOLDS = "holds"
    SIGNIFICANTLY_WORSE = "significantly worse"
    WORSE = "worse by more than the margin"
    TOO_SMALL = "too small to judge"
    NO_CHAMPION = "no champion to compare"


REFUSING = (SliceVerdict.SIGNIFICANTLY_WORSE, SliceVerdict.WORSE)


@dataclass(frozen=True)
class JudgedSlice:
    """A slice's figures (``SliceComparison``) and the guard's verdict on it."""

    figures: SliceComparison
    verdict: SliceVerdict

    def record(self) -> dict:
        """The slice as decision.json, metrics.json, the run summary, the artifacts, the
        model card, the curves and ``models list --verbose`` show it."""
        figures = self.figures
        return {"slice": figures.name, "kind": figures.kind, "rows": figures.rows,
                "candidate_accuracy": _rounded(figures.candidate_accuracy),
                "champion_accuracy": _rounded(figures.champion_accuracy),
                "p_value": figures.p_value, "verdict": str(self.verdict),
                "candidate_correct": figures.candidate_correct,
                "champion_correct": figures.champion_correct, "values": figures.values}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def judge_slice(figures: SliceComparison, rules: PromotionRules) -> SliceVerdict:
    """The guard's verdict on one slice (see the module's docstring)."""
    if figures.champion_correct is None:
        return SliceVerdict.NO_CHAMPION
    if figures.gathered or figures.rows < rules.min_slice_rows:
        return SliceVerdict.TOO_SMALL
    lost = figures.champion_correct - figures.candidate_correct
    if lost > 0 and figures.p_value is not None and figures.p_value < rules.alpha:
        return SliceVerdict.SIGNIFICANTLY_WORSE
    if exceeds(Fraction(lost, figures.rows), rules.max_slice_drop):
        return SliceVerdict.WORSE
    return SliceVerdict.HOLDS


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    slices: tuple[JudgedSlice, ...] = ()

    def slice_records(self) -> list[dict]:
        return [judged.record() for judged in self.slices]

    def record(self, decided_at: str) -> dict:
        """decision.json of the version it decides."""
        return {"promote": self.promote, "reason": self.reason, "decided_at": decided_at,
                "slices": self.slice_records()}


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
    """Promote only on evidence measured now, on the same held-out rows, and only when no
    slice of them judged by the guard is worse (``judge_slice``).

    Gate rows of one class only, or constant predictions by the candidate, refuse the
    promotion before any accuracy is compared (``unfit_evidence``). Every slice's verdict
    is recorded whatever the decision; the reason names the slices too small to judge.
    """
    judged = tuple(JudgedSlice(figures, judge_slice(figures, rules))
                   for figures in evidence.slices)
    promote, reason = _overall(evidence, rules)
    refusing = [j for j in judged if j.verdict in REFUSING]
    if promote and refusing:
        promote = False
        reason = ("not promoted: " + "; ".join(_refusal(j, rules) for j in refusing)
                  + f"; overall {reason.removeprefix('better: ')}")
    small = [j.figures for j in judged if j.verdict == SliceVerdict.TOO_SMALL]
    if small:
        reason += (f"; too small to judge (fewer than {rules.min_slice_rows:,} gate rows): "
                   + ", ".join(f"{s.name} ({s.rows:,} gate row{'s' if s.rows != 1 else ''})"
                               for s in small))
    return Decision(promote, reason, judged)


def _refusal(judged: JudgedSlice, rules: PromotionRules) -> str:
    said = describe_slice(judged.record())
    if judged.verdict == SliceVerdict.SIGNIFICANTLY_WORSE:
        return f"{said}, significantly worse (McNemar at alpha {rules.alpha})"
    lost = judged.figures.champion_correct - judged.figures.candidate_correct
    return (f"{said}, {lost / judged.figures.rows:.4f} worse, more than the margin "
            f"{rules.max_slice_drop:.4f}")


def _overall(evidence: GateComparison, rules: PromotionRules) -> tuple[bool, str]:
    """The decision on all the gate rows together, and its reason."""
    unfit = unfit_evidence(evidence.candidate["confusion_matrix"])
    if unfit is not None:
        return False, f"not promoted: {unfit}"
    rows, correct = evidence.rows, evidence.candidate_correct
    candidate_accuracy = evidence.candidate_accuracy
    champion_correct, p_value = evidence.champion_correct, evidence.p_value
    floor, min_delta, alpha = rules.accuracy_floor, rules.min_delta, rules.alpha
    if champion_correct is None:
        if Fraction(correct, rows) >= exact(floor):
            return True, (f"no champion yet; accuracy {candidate_accuracy:.4f} reaches the "
                          f"floor {floor:.4f}")
        return False, (f"no champion yet, but accuracy {candidate_accuracy:.4f} is below the "
                       f"floor {floor:.4f}")
    gain = Fraction(correct - champion_correct, rows)
    figures = (f"candidate {candidate_accuracy:.4f} vs champion {evidence.champion_accuracy:.4f}"
               f" (gain {float(gain):+.4f}, needed > {min_delta:.4f})")
    if not exceeds(gain, min_delta):
        return False, f"not better: {figures}"
    if rules.require_significance and (p_value is None or p_value >= alpha):
        return False, f"gain not significant: {figures}; McNemar p={p_value:.4g} >= {alpha}"
    extra = f"; McNemar p={p_value:.4g}" if p_value is not None else ""
    return True, f"better: {figures}{extra}"


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

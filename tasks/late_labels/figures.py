"""A model version's production accuracy from its cells, beside its gate accuracy, and
whether it dropped (docs/monitoring.md, "Production accuracy").

``version_figures`` is the one function that computes a version's figures: the
``measure-accuracy`` flow's WARNING, event and artifact, ``reviewflow monitor`` and its
``--json``, and the trends picture all read them from it. Every accuracy is correct rows
over rows, summed over the cells it covers (a week over its scripts, a script over its
weeks), never an average of accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.monitoring import SCRIPT_NAMES


@dataclass(frozen=True)
class AccuracyLimits:
    """When a version's production accuracy counts as dropped: a figure on at least
    ``min_rows`` late-labeled reviews more than ``max_drop`` below its gate accuracy.
    Filled from the settings ``accuracy_max_drop`` and ``accuracy_min_rows``."""

    max_drop: float
    min_rows: int

    @classmethod
    def from_settings(cls, settings) -> AccuracyLimits:
        return cls(max_drop=settings.accuracy_max_drop, min_rows=settings.accuracy_min_rows)


@dataclass(frozen=True)
class GateAccuracy:
    """What a version's retraining measured on its gate rows: ``accuracy`` on all of them
    (metrics.json ``validation``), and per script its reviews are mainly written in
    (profile.json ``by_script``: the gate rows of each script, by the same rule as the
    slices here). None and empty for a version without them."""

    accuracy: float | None = None
    rows: int | None = None
    by_script: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of_version(cls, metrics: dict | None, profile: dict | None) -> GateAccuracy:
        validation = (metrics or {}).get("validation") or {}
        parts = (profile or {}).get("by_script") or {}
        return cls(accuracy=validation.get("accuracy"), rows=validation.get("rows"),
                   by_script={script: part["accuracy"] for script, part in parts.items()
                              if part.get("accuracy") is not None})


def _share(correct: int, rows: int) -> float | None:
    return round(correct / rows, 4) if rows else None


def _judged(rows: int, accuracy: float | None, reference: float | None,
            limits: AccuracyLimits) -> tuple[float | None, bool]:
    """(gate minus production accuracy, whether that is a drop) of one figure."""
    if accuracy is None or reference is None:
        return None, False
    drop = round(reference - accuracy, 4)
    return drop, rows >= limits.min_rows and drop > limits.max_drop


def version_figures(cells: list[dict], gate: GateAccuracy, limits: AccuracyLimits) -> dict:
    """One version's figures from its cells (dicts with ``week``, ``script``, ``rows``,
    ``correct``): overall, per week, per script, each beside the gate accuracy it is
    judged against, and ``dropped``, the figures that dropped (empty when none did; each
    week and script also says whether it did)."""
    weeks: dict[str, list[int]] = {}
    scripts: dict[str, list[int]] = {}
    for cell in cells:
        for key, into in ((str(cell["week"]), weeks), (cell["script"], scripts)):
            counts = into.setdefault(key, [0, 0])
            counts[0] += int(cell["rows"])
            counts[1] += int(cell["correct"])
    rows = sum(counts[0] for counts in weeks.values())
    correct = sum(counts[1] for counts in weeks.values())
    accuracy = _share(correct, rows)
    drop, dropped = _judged(rows, accuracy, gate.accuracy, limits)
    figures = {"rows": rows, "correct": correct, "accuracy": accuracy,
               "gate_accuracy": gate.accuracy, "gate_rows": gate.rows, "drop": drop,
               "weeks": [], "scripts": [], "dropped": []}
    if dropped:
        figures["dropped"].append({"where": "overall", "rows": rows, "accuracy": accuracy,
                                   "gate_accuracy": gate.accuracy})
    for week, (n, right) in sorted(weeks.items()):
        share = _share(right, n)
        week_drop, week_dropped = _judged(n, share, gate.accuracy, limits)
        figures["weeks"].append({"week": week, "rows": n, "correct": right, "accuracy": share,
                                 "drop": week_drop, "dropped": week_dropped})
        if week_dropped:
            figures["dropped"].append({"where": f"week of {week}", "rows": n, "accuracy": share,
                                       "gate_accuracy": gate.accuracy})
    for script, (n, right) in sorted(scripts.items(), key=lambda item: -item[1][0]):
        share, reference = _share(right, n), gate.by_script.get(script)
        script_drop, script_dropped = _judged(n, share, reference, limits)
        figures["scripts"].append({"script": script, "rows": n, "correct": right,
                                   "accuracy": share, "gate_accuracy": reference,
                                   "drop": script_drop, "dropped": script_dropped})
        if script_dropped:
            figures["dropped"].append({"where": f"{script_label(script)} reviews", "rows": n,
                                       "accuracy": share, "gate_accuracy": reference})
    return figures


def script_label(script: str) -> str:
    """How a slice reads in a sentence: ``Hangul``, ``Latin-script``, ``letterless``."""
    return SCRIPT_NAMES.get(script, "letterless")


def drop_message(version: str, figures: dict, limits: AccuracyLimits) -> str:
    """The WARNING for a version whose figures dropped: the version, the margin, and
    each figure that dropped with its reviews and the gate accuracy it fell below (the
    weeks that did counted, the latest of them named)."""
    dropped = figures["dropped"]
    weeks = [d for d in dropped if d["where"].startswith("week of ")]
    parts = [_dropped(d) for d in dropped if d not in weeks]
    if weeks:
        judged = sum(week["rows"] >= limits.min_rows for week in figures["weeks"])
        latest = weeks[-1]
        parts.insert(1 if dropped[0]["where"] == "overall" else 0,
                     f"{len(weeks)} of {judged} judged weeks (the latest, "
                     + _dropped(latest) + ")")
    return (f"production accuracy of model {version} dropped more than {limits.max_drop:.2f} "
            f"below its gate accuracy on late labels: " + "; ".join(parts)
            + f" (figures on at least {limits.min_rows:,} reviews are judged)")


def _dropped(found: dict) -> str:
    return (f"{found['where']} {found['accuracy']:.3f} on {found['rows']:,} reviews against "
            f"{found['gate_accuracy']:.3f} on the gate")

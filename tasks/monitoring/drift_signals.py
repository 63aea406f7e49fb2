"""Drift signals while scoring: the counts of each batch (``observe_batch``, which add up
in ``MonitorCounts``), the figures of a file or a run (``signals``) and the thresholds
they cross (``Thresholds``, ``flags``), each with the sentence an operator reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.model.decision import exact, exceeds, predicted_labels
from tasks.monitoring.profiles import (
    bin_counts,
    describe_mix,
    expected,
    known_scripts,
    psi,
    psi_allowance,
    script_mix,
    script_shift,
)
from tasks.monitoring.text import (
    SCRIPT_NAMES,
    SCRIPTS,
    Vocabulary,
    letters_per_row,
    main_scripts,
    rows_per_script,
    sampled_rows,
    unknown_tokens,
)
from tasks.settings import Settings


@dataclass(frozen=True)
class Thresholds:
    """When a file is flagged (docs/monitoring.md): each field is the Settings field
    ``monitor_<name>`` (``from_settings``; the defaults are the settings')."""

    max_oov_rate: float
    max_psi: float
    max_script_shift: float
    max_accuracy_drop: float
    min_rows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        """The thresholds ``settings`` gives (its ``monitor_*`` fields)."""
        return cls(**{f.name: getattr(settings, f"monitor_{f.name}") for f in fields(cls)})


# ---------------------------------------------------------------- counts while scoring
@dataclass
class MonitorCounts:
    """What a batch, shard, file or run contributes to the signals; counts add up."""

    rows: int = 0
    length_sum: int = 0
    length_bins: list[int] = field(default_factory=list)  # over the profile's edges
    score_bins: list[int] = field(default_factory=list)
    sampled_rows: int = 0
    tokens: int = 0
    unknown_tokens: int = 0
    letters: list[int] = field(default_factory=lambda: [0] * len(SCRIPTS))
    script_rows: list[int] = field(default_factory=lambda: [0] * len(SCRIPTS))  # sampled rows
    positives: int = 0
    labeled: int = 0
    correct: int = 0
    # The sampled rows by the script each is mainly written in (SCRIPTS order): their
    # tokens and unknown ones, rows predicted positive, labeled and labeled right, for
    # the figures per language (``signals`` "by_script").
    script_tokens: list[int] = field(default_factory=lambda: [0] * len(SCRIPTS))
    script_unknown_tokens: list[int] = field(default_factory=lambda: [0] * len(SCRIPTS))
    script_positives: list[int] = field(default_factory=lambda: [0] * len(SCRIPTS))
    script_labeled: list[int] = field(default_factory=lambda: [0] * len(SCRIPTS))
    script_correct: list[int] = field(default_factory=lambda: [0] * len(SCRIPTS))

    def add(self, other: MonitorCounts) -> MonitorCounts:
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if not isinstance(mine, list):
                setattr(self, item.name, mine + theirs)
            elif not mine:
                setattr(self, item.name, list(theirs))
            elif theirs:
                setattr(self, item.name, [a + b for a, b in zip(mine, theirs)])
        return self

    def as_record(self) -> dict:
        """The counts as a plain dict (the ``counts`` column of ``monitoring/``)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}

    @classmethod
    def from_record(cls, record: dict) -> MonitorCounts:
        """Counts from ``as_record``'s dict; a count it lacks is zero."""
        def plain(value):
            return ([int(n) for n in value] if isinstance(value, list | tuple | np.ndarray)
                    else int(value))

        known = {item.name for item in fields(cls)}
        return cls(**{name: plain(value) for name, value in record.items()
                      if name in known and value is not None})


def observe_batch(texts: pa.Array | pa.ChunkedArray, scores: np.ndarray, labels: pa.Array,
                  vocabulary: Vocabulary | None, profile: dict | None,
                  sample_rows: int) -> MonitorCounts:
    """The counts of one scored batch: ``texts`` and ``labels`` of its valid rows, and the
    ``scores`` the model gave them. Lengths and scores count every row; tokens and
    scripts count a sample of at most ``sample_rows`` rows (see ``sample``)."""
    # Texts stay in their chunks (combining would copy every review); labels are bytes.
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks()
    scores = np.asarray(scores, dtype=np.float64)
    counts = MonitorCounts(rows=len(texts))
    if len(texts) == 0:
        return counts
    lengths = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    counts.length_sum = int(lengths.sum())
    if profile is not None:
        counts.length_bins = bin_counts(lengths, profile["length"]["edges"]).tolist()
        counts.score_bins = bin_counts(scores, profile["score"]["edges"]).tolist()
    rows = sampled_rows(len(texts), sample_rows)
    few = texts if rows is None else texts.take(pa.array(rows))
    counts.sampled_rows = len(few)
    per_row = letters_per_row(few)
    main = main_scripts(per_row)
    counts.letters = [int(n) for n in per_row.sum(axis=0)]
    counts.script_rows = rows_per_script(main)
    predicted = predicted_labels(scores)
    counts.positives = int(predicted.sum())
    given = pc.is_valid(labels).to_numpy(zero_copy_only=False)
    counts.labeled = int(given.sum())
    right = np.zeros(len(texts), dtype=bool)
    if counts.labeled:
        values = pc.fill_null(labels, 0).to_numpy(zero_copy_only=False)
        right = given & ((values == 1) == predicted)
        counts.correct = int(right.sum())
    if rows is not None:
        predicted, given, right = predicted[rows], given[rows], right[rows]
    # Each script's sampled rows alone; the rows without letters count in the totals only.
    for index in range(-1, len(SCRIPTS)):
        mine = main == index
        if not mine.any():
            continue
        if vocabulary is not None:
            found, unknown = unknown_tokens(few.filter(pa.array(mine)), vocabulary)
            counts.tokens += found
            counts.unknown_tokens += unknown
            if index >= 0:
                counts.script_tokens[index], counts.script_unknown_tokens[index] = found, unknown
        if index >= 0:
            counts.script_positives[index] = int(predicted[mine].sum())
            counts.script_labeled[index] = int(given[mine].sum())
            counts.script_correct[index] = int(right[mine].sum())
    return counts


# ---------------------------------------------------------------- signals and flags
def signals(counts: MonitorCounts, profile: dict | None) -> dict:
    """The figures of a file or a run; those that need the profile are None without one.

    ``expected``: what the profile's parts in the file's own scripts lead one to expect
    (see ``expected``); the flags' sentences quote it."""
    mix = script_mix(counts.letters)
    reference = expected(profile, counts.script_rows) if profile else {}
    known = known_scripts(profile)
    sampled = sum(counts.script_rows)
    if known is None:  # a profile saved before by_script: the mixes compared whole
        shift = script_shift(mix, (profile or {}).get("script_mix"))
    else:
        unknown = sum(n for s, n in zip(SCRIPTS, counts.script_rows) if s not in known)
        shift = round(unknown / sampled, 4) if sampled else None
    return {
        "rows": counts.rows,
        "positive_share": round(counts.positives / counts.rows, 4) if counts.rows else None,
        "labeled_rows": counts.labeled,
        "accuracy": round(counts.correct / counts.labeled, 4) if counts.labeled else None,
        "oov_rate": round(counts.unknown_tokens / counts.tokens, 4) if counts.tokens else None,
        "mean_length": round(counts.length_sum / counts.rows, 1) if counts.rows else None,
        "length_psi": _rounded(psi(reference["length"], counts.length_bins)
                               if profile and counts.length_bins else None),
        "score_psi": _rounded(psi(reference["score"], counts.score_bins)
                              if profile and counts.score_bins else None),
        "script_mix": mix,
        "script_shift": shift,
        "unseen_scripts": sorted({s for s, n in zip(SCRIPTS, counts.script_rows) if n}
                                 - known) if known is not None else [],
        "sampled_rows": counts.sampled_rows,
        "review_shares": review_shares(counts.script_rows),
        "by_script": script_figures(counts),
        "expected": {k: (round(v, 4) if isinstance(v, float) else v)
                     for k, v in reference.items() if k not in ("length", "score")},
    }


def review_shares(script_rows: list[int]) -> dict[str, float] | None:
    """The share of the sampled reviews mainly written in each script (the reviews with
    letters), None without any: half Korean reviews are 0.5 Hangul here, however few
    letters a Korean review has beside an English one's."""
    total = sum(script_rows)
    if not total:
        return None
    return {script: round(n / total, 4) for script, n in zip(SCRIPTS, script_rows)}


def script_figures(counts: MonitorCounts) -> dict[str, dict]:
    """Per script with sampled reviews: how many, and their unknown-token rate, share
    predicted positive and accuracy on their labeled rows (the sample's figures)."""
    found = {}
    for index, script in enumerate(SCRIPTS):
        rows = counts.script_rows[index] if counts.script_rows else 0
        if not rows:
            continue
        tokens, labeled = counts.script_tokens[index], counts.script_labeled[index]
        found[script] = {
            "reviews": rows,
            "oov_rate": round(counts.script_unknown_tokens[index] / tokens, 4) if tokens else None,
            "positive_share": round(counts.script_positives[index] / rows, 4),
            "labeled_rows": labeled,
            "accuracy": round(counts.script_correct[index] / labeled, 4) if labeled else None}
    return found


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class Flag:
    signal: str
    message: str


def flags(name: str, found: dict, profile: dict | None, limits: Thresholds) -> list[Flag]:
    """The thresholds ``found`` (``signals`` of the file ``name``) crosses, each with the
    sentence an operator reads. A file of fewer than ``min_rows`` rows is never flagged:
    its shares are too noisy to mean anything."""
    if found["rows"] < limits.min_rows:
        return []
    trained_on = (f"it was trained on {describe_mix(profile.get('script_mix'))} text"
                  if profile else "it has no reference profile (trained before profiles)")
    wanted = found.get("expected") or {}
    shift = found["script_shift"]
    shifted = shift is not None and shift > limits.max_script_shift
    raised = []
    oov = found["oov_rate"]
    if oov is not None and oov > limits.max_oov_rate:
        raised.append(Flag("oov_rate", f"{name} looks unlike the champion's training data: "
                                       f"{oov:.0%} of its tokens are unknown to it; "
                                       + _oov_cause(found, wanted, shifted, trained_on)))
    if shifted:
        unseen = ", ".join(SCRIPT_NAMES[s] for s in found.get("unseen_scripts") or [])
        raised.append(Flag("script_shift", f"{name} is written in {describe_mix(found['script_mix'])}"
                                           f" text" + (f" ({shift:.0%} of its reviews mainly in "
                                                       f"{unseen}, which the champion did not "
                                                       f"learn from)" if unseen else "")
                                           + f"; the champion was trained on "
                                           f"{describe_mix(profile['script_mix'])} text"))
    same = " in the same scripts" if wanted.get("by_script") else ""
    over = {}
    for signal in ("length", "score"):
        value = found[f"{signal}_psi"]
        if value is not None:
            bins = len(profile[signal]["edges"]) + 1
            limit = limits.max_psi + psi_allowance(bins, found["rows"], wanted.get(f"{signal}_rows"))
            if value > limit:
                over[signal] = (f"PSI {value:.2f} > {limit:.2f}: the threshold {limits.max_psi}"
                                f" and {limit - limits.max_psi:.2f} of sampling noise")
    if "length" in over:
        raised.append(Flag("length_psi", f"{name}: review lengths differ from the champion's "
                                         f"training data{same} ({over['length']}; mean "
                                         f"{found['mean_length']:.0f} characters against "
                                         f"{wanted['mean_length']:.0f})"))
    if "score" in over:
        raised.append(Flag("score_psi", f"{name}: the champion's scores are distributed unlike on "
                                        f"its held-out reviews{same} ({over['score']}; "
                                        f"{found['positive_share']:.0%} positive against "
                                        f"{wanted['positive_share']:.0%})"))
    reference_accuracy = wanted.get("accuracy")
    if (found["accuracy"] is not None and reference_accuracy is not None
            and found["labeled_rows"] >= limits.min_rows
            and exceeds(exact(reference_accuracy) - exact(found["accuracy"]),
                        limits.max_accuracy_drop)):
        raised.append(Flag("accuracy", f"{name}: accuracy on its {found['labeled_rows']} labeled "
                                       f"rows is {found['accuracy']:.1%}, more than "
                                       f"{limits.max_accuracy_drop:.0%} below the champion's "
                                       f"held-out {reference_accuracy:.1%}{same}"))
    return raised


def _oov_cause(found: dict, wanted: dict, shifted: bool, trained_on: str) -> str:
    """Why a file's tokens are unknown, as far as the signals tell."""
    if shifted or found["script_shift"] is None:
        return trained_on
    reference = wanted.get("oov_rate")
    against = f" (against {reference:.0%} on its held-out reviews)" if reference is not None else ""
    return (f"its scripts ({describe_mix(found['script_mix'])}) are ones the champion learned "
            f"from{against}: text unlike the training data in the same script (unnormalized "
            f"Unicode, a different domain?)")



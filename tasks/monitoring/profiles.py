"""Reference profiles and how a file is compared with one: decile bins, PSI, script
mixes, the profile a retraining saves (``reference_profile``) and what it leads one to
expect of a file in given scripts (``expected``, ``psi_allowance``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from tasks.model.decision import predicted_labels
from tasks.monitoring.text import (
    SCRIPT_NAMES,
    SCRIPTS,
    Vocabulary,
    letters_per_row,
    main_scripts,
    text_lengths,
    unknown_tokens,
)

PROFILE_VERSION = 2
PSI_FLOOR = 1e-4
# A script the champion learned from: at least this share of its training reviews, or
# this many of them, are mainly written in it.
KNOWN_SCRIPT_SHARE = 0.05
KNOWN_SCRIPT_ROWS = 1_000
DECILES = np.linspace(0.1, 0.9, 9)


# ---------------------------------------------------------------- bins and PSI
def decile_edges(values: np.ndarray) -> list[float]:
    """Inner bin edges at the deciles of ``values``, repeated edges removed."""
    if len(values) == 0:
        return []
    return [float(x) for x in np.unique(np.quantile(values, DECILES))]


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts per bin: ``(-inf, e0), [e0, e1), …, [e_last, inf)``."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.bincount(index, minlength=len(edges) + 1)


def psi(expected_shares: Sequence[float], actual_counts: Sequence[int]) -> float | None:
    """Population stability index of observed counts against reference shares."""
    actual = np.asarray(actual_counts, dtype=np.float64)
    expected = np.asarray(expected_shares, dtype=np.float64)
    if actual.sum() == 0 or len(actual) != len(expected):
        return None
    a = np.maximum(actual / actual.sum(), PSI_FLOOR)
    e = np.maximum(expected, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def shares(counts: Sequence[int]) -> list[float] | None:
    total = sum(counts)
    return [c / total for c in counts] if total else None


def script_mix(letters: Sequence[int]) -> dict[str, float] | None:
    mix = shares(letters)
    return None if mix is None else {s: round(m, 4) for s, m in zip(SCRIPTS, mix)}


def script_shift(mix: dict[str, float] | None, reference: dict[str, float] | None) -> float | None:
    """Total variation distance between two script mixes: 0 the same, 1 disjoint."""
    if not mix or not reference:
        return None
    return round(0.5 * sum(abs(mix.get(s, 0.0) - reference.get(s, 0.0)) for s in SCRIPTS), 4)


def describe_mix(mix: dict[str, float] | None) -> str:
    """``"100% Latin-script"``, ``"71% Hangul, 29% Latin-script"``: scripts of 5% or more."""
    if not mix:
        return "no letters"
    parts = [f"{share:.0%} {SCRIPT_NAMES[s]}" for s, share in
             sorted(mix.items(), key=lambda item: -item[1]) if share >= 0.05]
    return ", ".join(parts) or "mixed-script"


# ---------------------------------------------------------------- reference profile
def reference_profile(train_texts: pa.Array, validation_texts: pa.Array,
                      validation_scores: np.ndarray, validation_labels: np.ndarray,
                      vocabulary: Vocabulary, version: str, architecture: str) -> dict:
    """The profile a retraining saves with its version (no text, only figures).

    Lengths and scripts of the training texts; vocabulary coverage, scores, positive
    share and accuracy on the held-out rows (the rows the model did not learn from,
    which is what production text is too). ``by_script``: the same figures for the
    reviews mainly written in each script, over the same bins.
    """
    lengths = text_lengths(train_texts)
    length_edges = decile_edges(lengths)
    scores = np.asarray(validation_scores, dtype=np.float64)
    score_edges = decile_edges(scores)
    labels = np.asarray(validation_labels) == 1
    train_letters = letters_per_row(train_texts)
    train_main, held_main = main_scripts(train_letters), main_scripts(
        letters_per_row(validation_texts))
    whole = _part(lengths, scores, labels, validation_texts, vocabulary, length_edges,
                  score_edges)
    by_script = {}
    for index, script in enumerate(SCRIPTS):
        mine, held = train_main == index, held_main == index
        if mine.any():
            by_script[script] = _part(lengths[mine], scores[held], labels[held],
                                      validation_texts.filter(pa.array(held)), vocabulary,
                                      length_edges, score_edges)
    return {
        "profile_version": PROFILE_VERSION, "version": version, "architecture": architecture,
        "train_rows": len(train_texts), "validation_rows": len(validation_texts),
        "length": {"edges": length_edges, **whole["length"]},
        "script_mix": script_mix(train_letters.sum(axis=0).tolist()),
        "vocabulary": {"size": len(vocabulary.tokens),
                       "characters_of_unspaced_scripts": vocabulary.characters_of_unspaced_scripts,
                       **whole["vocabulary"]},
        "score": {"edges": score_edges, **whole["score"]},
        "accuracy": whole["accuracy"],
        "by_script": by_script,
    }


def _part(lengths: np.ndarray, scores: np.ndarray, labels: np.ndarray, held_texts: pa.Array,
          vocabulary: Vocabulary, length_edges: list[float], score_edges: list[float]) -> dict:
    """The figures of (a script's part of) the training and held-out rows."""
    total, unknown = unknown_tokens(held_texts, vocabulary)
    predicted = predicted_labels(scores)
    return {
        "train_rows": len(lengths), "validation_rows": len(scores),
        "length": {"shares": shares(bin_counts(lengths, length_edges).tolist()),
                   "mean": round(float(lengths.mean()), 2) if len(lengths) else None},
        "vocabulary": {"validation_tokens": total,
                       "oov_rate": round(unknown / total, 4) if total else None,
                       "coverage": round(1 - unknown / total, 4) if total else None},
        "score": {"shares": shares(bin_counts(scores, score_edges).tolist()) if len(scores)
                  else None,
                  "positive_share": round(float(predicted.mean()), 4) if len(scores) else None},
        "accuracy": round(float((predicted == labels).mean()), 4) if len(scores) else None,
    }


def known_scripts(profile: dict | None) -> set[str] | None:
    """The scripts the champion learned from (see ``KNOWN_SCRIPT_SHARE``); None for a
    profile without ``by_script``."""
    parts = (profile or {}).get("by_script")
    if not parts:
        return None
    rows = sum(part["train_rows"] for part in parts.values())
    return {script for script, part in parts.items()
            if part["train_rows"] >= min(KNOWN_SCRIPT_ROWS, KNOWN_SCRIPT_SHARE * rows)}


def expected(profile: dict, script_rows: Sequence[int]) -> dict:
    """What the champion's training data leads one to expect of a file whose sampled rows
    are mainly written in each script as ``script_rows`` says: each figure of the
    profile's ``by_script`` parts, weighted by the file's rows in that script. Rows in a
    script the champion did not learn from, or without letters, count against the
    whole profile (``script_shift`` speaks for them).

    ``length_rows`` and ``score_rows``: how many reference rows the expected bin shares
    rest on (``1 / sum(w**2 / n)`` over the parts weighted ``w``), for ``psi_allowance``.
    """
    known = known_scripts(profile) or set()
    parts = profile.get("by_script") or {}
    whole = {"length": profile["length"]["shares"], "mean_length": profile["length"]["mean"],
             "score": profile["score"]["shares"],
             "positive_share": profile["score"]["positive_share"],
             "oov_rate": profile["vocabulary"].get("oov_rate"),
             "accuracy": profile.get("accuracy"),
             "length_rows": profile.get("train_rows"), "score_rows": profile.get("validation_rows"),
             "by_script": False}
    weights = {s: n for s, n in zip(SCRIPTS, script_rows) if n and s in known}
    if not weights:
        return whole
    rest = sum(script_rows) - sum(weights.values())
    where = {"length": ("length", "shares", "train_rows"),
             "mean_length": ("length", "mean", "train_rows"),
             "score": ("score", "shares", "validation_rows"),
             "positive_share": ("score", "positive_share", "validation_rows"),
             "oov_rate": ("vocabulary", "oov_rate", "validation_rows"),
             "accuracy": (None, "accuracy", "validation_rows")}
    found = {"by_script": True}
    for key, (section, name, rows) in where.items():
        terms = [(n, (parts[s][section] if section else parts[s])[name], parts[s][rows])
                 for s, n in weights.items()]
        terms.append((rest, whole[key], whole["length_rows" if rows == "train_rows"
                                              else "score_rows"]))
        terms = [(n, value, size) for n, value, size in terms if n and value is not None and size]
        if not terms:
            found[key] = whole[key]
            continue
        weight = sum(n for n, _, _ in terms)
        if isinstance(terms[0][1], list):
            found[key] = (sum(n * np.asarray(v) for n, v, _ in terms) / weight).tolist()
            found[f"{key}_rows"] = round(1 / sum((n / weight) ** 2 / size for n, _, size in terms))
        else:
            found[key] = sum(n * v for n, v, _ in terms) / weight
    return found


def psi_allowance(bins: int, rows: int, reference_rows: int | None) -> float:
    """The PSI two samples of one distribution show by chance alone, about
    ``(bins - 1) * (1 / rows + 1 / reference_rows)``: a small reference (the held-out
    Korean reviews of a small bilingual training set) is noisy by itself, so a flag
    needs the PSI to exceed the threshold by this much."""
    if not rows or not reference_rows or bins < 2:
        return 0.0
    return (bins - 1) * (1 / rows + 1 / reference_rows)



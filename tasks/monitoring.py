"""Drift signals for review text: reference profiles, per-batch counts, PSI and flags.

A retraining saves a *reference profile* of its data beside the model
(``models/versions/<version>/profile.json``): how long its training texts are, which
scripts they are written in, how much of the held-out text the model's own vocabulary
covers, and how the model's scores spread over the held-out rows. No text is kept, only
bin edges, shares and rates.

Each scoring run counts the same things on the batches it already has
(``observe_batch``); the counts add up over batches, shards and files
(``MonitorCounts.add``), and ``signals`` turns the counts of a file, or of a run, into
the figures an operator reads:

- ``oov_rate``: the share of the text's tokens that are not in the model's vocabulary
  (words, or single characters of Hangul, Han, Kana and Thai for the n-gram model,
  which looks those up character by character); computed on a sample of rows;
- ``length_psi`` and ``score_psi``: the population stability index of text length (in
  characters) and of the score, over the reference profile's decile bins;
- ``script_mix``: the share of letters in each script; ``script_shift``: the share of
  the file's reviews written mainly in a script the champion did not learn from (one
  that fewer than ``KNOWN_SCRIPT_SHARE`` of its training reviews, and fewer than
  ``KNOWN_SCRIPT_ROWS`` of them, are mainly written in);
- ``positive_share`` and, where rows carry labels, ``accuracy``.

A review is *mainly written* in the script most of its letters are in. The profile keeps
each script's part of the training data apart (``by_script``), and a file is compared
with the mixture of those parts weighted by its own reviews' scripts: a Korean file is
measured against the champion's Korean training reviews, an English one against its
English ones, so a bilingual champion does not flag every single-language file. A
profile without ``by_script`` (saved before version 2) is compared whole, and its script
shift is the total variation distance of the two script mixes.

The population stability index is ``sum((a - e) * ln(a / e))`` over bins, with ``e``
the reference share and ``a`` the observed share of a bin (each at least 1e-4, so an
empty bin counts as rare rather than impossible). By the usual rule of thumb, below 0.1
is no shift, 0.1-0.25 a moderate one, above 0.25 a significant one.

Pure functions on Arrow arrays and numpy: no Prefect, no TensorFlow. Plotting imports
matplotlib only when called.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.layout import MONITORING_PARTS_GLOB

PROFILE_VERSION = 2
SCRIPTS = ("latin", "hangul", "han", "kana", "other")
SCRIPT_NAMES = {"latin": "Latin-script", "hangul": "Hangul", "han": "Han", "kana": "Kana",
                "other": "other-script"}
# RE2 script classes (as pyarrow.compute and TensorFlow use them), without brackets.
_SCRIPT_CLASSES = {"latin": r"\p{Latin}", "hangul": r"\p{Hangul}", "han": r"\p{Han}",
                   "kana": r"\p{Hiragana}\p{Katakana}"}
# The scripts tasks.model.split_ngrams cuts into characters (kept equal to its class).
UNSPACED_SCRIPTS = r"\p{Hangul}\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}"
# What tasks.model.standardize_keeping_marks turns into spaces (kept equal to its pattern;
# not imported, as that would import TensorFlow).
ODD_SEPARATORS = r"(?:[^\P{Z} ]|[^\P{C}\t\n\r])+"
PSI_FLOOR = 1e-4
ASCII_WHITESPACE = r"[ \t\n\v\f\r]"  # what pc.ascii_split_whitespace splits on
# A script the champion learned from: at least this share of its training reviews, or
# this many of them, are mainly written in it.
KNOWN_SCRIPT_SHARE = 0.05
KNOWN_SCRIPT_ROWS = 1_000
# How often a vocabulary's lookup set was built (once per loaded model; tests read it).
LOOKUP_BUILDS = {"count": 0}
_LOOKUP_LOCK = threading.Lock()
DECILES = np.linspace(0.1, 0.9, 9)


@dataclass(frozen=True)
class Vocabulary:
    """The tokens a model knows, as the monitoring code looks them up.

    ``characters_of_unspaced_scripts``: the model splits runs of unspaced scripts into
    characters (the n-gram model), so those are looked up one character at a time.
    ``marks_are_words``: the model keeps runs of punctuation as words
    (``tasks.model.standardize_keeping_marks``), so they are looked up too.
    """

    tokens: pa.Array
    characters_of_unspaced_scripts: bool = False
    marks_are_words: bool = False

    @property
    def lookup(self) -> frozenset[str]:
        """The tokens a looked-up token can equal, as a set, built once per vocabulary
        (so once per loaded model).

        ``pc.is_in(found, value_set=tokens)`` hashes the whole vocabulary on every call,
        a fixed cost per batch, so per one-row file, that grows with the vocabulary. The
        looked-up tokens are split on ASCII whitespace, so the n-grams (which hold a
        space: 95% of an 800k-token vocabulary) can never match and are left out.
        """
        found = self.__dict__.get("_lookup")
        if found is None:
            with _LOOKUP_LOCK:  # shards in threads share the model's vocabulary
                found = self.__dict__.get("_lookup")
                if found is None:
                    LOOKUP_BUILDS["count"] += 1
                    single = self.tokens.filter(pc.invert(pc.match_substring_regex(
                        self.tokens, ASCII_WHITESPACE)))
                    found = self.__dict__["_lookup"] = frozenset(single.to_pylist())
        return found


@dataclass(frozen=True)
class Thresholds:
    """When a file is flagged (Settings ``monitor_*``; README, "Monitoring")."""

    max_oov_rate: float = 0.3
    max_psi: float = 0.25
    max_script_shift: float = 0.2
    max_accuracy_drop: float = 0.1
    min_rows: int = 100


# ---------------------------------------------------------------- tokens and scripts
def standardize(texts: pa.Array, marks_are_words: bool = False) -> pa.Array:
    """``tasks.model.standardize_review`` (with ``marks_are_words``,
    ``standardize_keeping_marks``) in pyarrow: the same RE2 patterns; ASCII-only
    lower-casing, as ``tf.strings.lower`` does by default."""
    texts = pc.ascii_lower(texts)
    texts = pc.replace_substring_regex(texts, r"<br\s*/?>", " ")
    if marks_are_words:
        texts = pc.replace_substring_regex(texts, ODD_SEPARATORS, " ")
        return pc.replace_substring_regex(texts, r"[^\p{L}\p{N}\s]+", r" \0 ")
    return pc.replace_substring_regex(texts, r"[^\p{L}\p{N}\s]", " ")


def tokens(texts: pa.Array, characters_of_unspaced_scripts: bool,
           marks_are_words: bool = False) -> pa.Array:
    """The unigram tokens the model looks up, flattened: whitespace-separated words, and
    with ``characters_of_unspaced_scripts`` each Hangul/Han/Kana/Thai character alone."""
    standard = standardize(texts, marks_are_words)
    if characters_of_unspaced_scripts:
        standard = pc.replace_substring_regex(standard, f"([{UNSPACED_SCRIPTS}])", r" \1 ")
    flat = pc.list_flatten(pc.ascii_split_whitespace(standard))
    return flat.filter(pc.not_equal(pc.utf8_length(flat), 0))


def unknown_tokens(texts: pa.Array, vocabulary: Vocabulary) -> tuple[int, int]:
    """``(tokens, tokens not in the vocabulary)`` of ``texts``."""
    found = tokens(texts, vocabulary.characters_of_unspaced_scripts, vocabulary.marks_are_words)
    if len(found) == 0:
        return 0, 0
    known = sum(map(vocabulary.lookup.__contains__, found.to_pylist()))
    return len(found), len(found) - known


def letters_per_row(texts: pa.Array) -> np.ndarray:
    """Letters of each script per text: shape ``(len(texts), len(SCRIPTS))``, columns
    in ``SCRIPTS`` order ("other": letters of none of the four).

    Letters are kept by deleting *runs* of everything else and measured by length: a
    regex that matched each letter costs a match per letter (10 times slower on English
    reviews); deleting runs costs a match per gap, and on the letters alone, deleting
    what is not Latin from English text matches nothing at all.
    """
    letters = pc.replace_substring_regex(texts, r"[^\p{L}]+", "")
    total = _lengths(letters)
    counts = [_lengths(pc.replace_substring_regex(letters, f"[^{_SCRIPT_CLASSES[s]}]+", ""))
              for s in SCRIPTS[:-1]]
    found = np.zeros((len(total), len(SCRIPTS)), dtype=np.int64)
    for index, column in enumerate(counts):
        found[:, index] = column
    found[:, -1] = np.maximum(0, total - found[:, :-1].sum(axis=1))
    return found


def _lengths(texts: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def script_letters(texts: pa.Array) -> list[int]:
    """Letters of each script in ``SCRIPTS`` order, over all of ``texts``."""
    return [int(n) for n in letters_per_row(texts).sum(axis=0)]


def main_scripts(per_row: np.ndarray) -> np.ndarray:
    """The index in ``SCRIPTS`` of the script each text is mainly written in (the one
    most of its letters are in; ties to the first), -1 for a text without letters."""
    if len(per_row) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.where(per_row.sum(axis=1) > 0, per_row.argmax(axis=1), -1)


def rows_per_script(main: np.ndarray) -> list[int]:
    """How many texts are mainly written in each script, in ``SCRIPTS`` order."""
    return np.bincount(main[main >= 0], minlength=len(SCRIPTS)).tolist()


def sample(texts: pa.Array, most: int) -> pa.Array:
    """Every k-th text, at most ``most`` of them (all when there are fewer): the text
    signals need the tokens of thousands of rows, not of all of them."""
    if len(texts) <= most:
        return texts
    step = math.ceil(len(texts) / most)
    return texts.take(pa.array(np.arange(0, len(texts), step)))


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
    lengths = _lengths(train_texts)
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
    predicted = scores >= 0.5
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

    def add(self, other: MonitorCounts) -> MonitorCounts:
        for name in ("rows", "length_sum", "sampled_rows", "tokens", "unknown_tokens",
                     "positives", "labeled", "correct"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("length_bins", "score_bins", "letters", "script_rows"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if not mine:
                setattr(self, name, list(theirs))
            elif theirs:
                setattr(self, name, [a + b for a, b in zip(mine, theirs)])
        return self


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
    few = sample(texts, sample_rows)
    counts.sampled_rows = len(few)
    if vocabulary is not None:
        counts.tokens, counts.unknown_tokens = unknown_tokens(few, vocabulary)
    per_row = letters_per_row(few)
    counts.letters = [int(n) for n in per_row.sum(axis=0)]
    counts.script_rows = rows_per_script(main_scripts(per_row))
    predicted = scores >= 0.5
    counts.positives = int(predicted.sum())
    given = pc.is_valid(labels).to_numpy(zero_copy_only=False)
    counts.labeled = int(given.sum())
    if counts.labeled:
        values = pc.fill_null(labels, 0).to_numpy(zero_copy_only=False)
        counts.correct = int((given & ((values == 1) == predicted)).sum())
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
        "expected": {k: (round(v, 4) if isinstance(v, float) else v)
                     for k, v in reference.items() if k not in ("length", "score")},
    }


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
            and reference_accuracy - found["accuracy"] > limits.max_accuracy_drop):
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


# ---------------------------------------------------------------- the monitoring/ dataset
MONITORING_SCHEMA = pa.schema([
    ("run_started", pa.timestamp("us", tz="UTC")),
    ("flow_run_id", pa.string()),
    ("model_version", pa.string()),
    ("source_file", pa.string()),
    ("source_sha256", pa.string()),
    ("rows", pa.int64()),
    ("positive_share", pa.float64()),
    ("labeled_rows", pa.int64()),
    ("accuracy", pa.float64()),
    ("oov_rate", pa.float64()),
    ("mean_length", pa.float64()),
    ("length_psi", pa.float64()),
    ("score_psi", pa.float64()),
    ("script_shift", pa.float64()),
    *[(f"share_{s}", pa.float64()) for s in SCRIPTS],
    ("sampled_rows", pa.int64()),
    ("has_profile", pa.bool_()),
    ("flags", pa.list_(pa.string())),
])


def monitoring_row(found: dict, raised: list[Flag], **identity) -> dict:
    """One row of ``monitoring/`` from a file's signals and flags; ``identity`` gives
    run_started, flow_run_id, model_version, source_file, source_sha256, has_profile."""
    mix = found["script_mix"] or {}
    row = {name: found.get(name) for name in MONITORING_SCHEMA.names if name in found}
    row.update({f"share_{s}": mix.get(s) for s in SCRIPTS})
    row.update(identity)
    row["flags"] = [flag.signal for flag in raised]
    return row


def monitoring_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=MONITORING_SCHEMA)


def read_monitoring(folder) -> pa.Table | None:
    """Every row of ``monitoring/`` with its ``run_date`` partition, or None if empty.

    ``folder`` is a local ``Path`` or an ``ObjectPath`` (s3://…): the parts are found
    by name (``run_date=*/*.parquet``), so the trends PNG beside them is never read.
    """
    import pyarrow.parquet as pq

    if not folder.exists():
        return None
    tables = []
    for part in sorted(folder.glob(MONITORING_PARTS_GLOB), key=str):
        with part.open("rb") as stream:
            table = pq.read_table(stream, schema=MONITORING_SCHEMA)
        day = part.parent.name.partition("=")[2]
        tables.append(table.append_column("run_date", pa.repeat(pa.scalar(day), len(table))))
    return pa.concat_tables(tables) if tables else None


def plot_trends(frame, path):
    """Signals per run over time, one line per model version, as a PNG.

    ``frame``: a pandas DataFrame of ``monitoring/`` rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("oov_rate", "unknown tokens (share)"), ("score_psi", "score PSI"),
              ("length_psi", "length PSI"), ("positive_share", "positive share"),
              ("accuracy", "live accuracy")]
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), sharex=True)
    for ax, (column, title) in zip(axes, panels):
        for version, rows in frame.groupby("model_version"):
            # The run's rows-weighted mean: one point per run.
            weighted = rows.dropna(subset=[column])
            if weighted.empty:
                continue
            per_run = weighted.groupby("run_started").apply(
                lambda g, c=column: np.average(g[c], weights=g["rows"].clip(lower=1)),
                include_groups=False)
            ax.plot(per_run.index, per_run.values, marker="o", label=version)
        ax.set_ylabel(title, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("run started (UTC)")
    figure.suptitle("reviewflow: drift signals per scoring run")
    figure.tight_layout()
    image = io.BytesIO()  # then one write: a local file or an object (s3://…) alike
    figure.savefig(image, format="png", dpi=80)
    plt.close(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image.getvalue())
    return path

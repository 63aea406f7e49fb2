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
- ``script_mix`` and ``script_shift``: the share of letters in each script, and its
  total variation distance (half the L1 distance, 0 to 1) from the training text's;
- ``positive_share`` and, where rows carry labels, ``accuracy``.

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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.layout import MONITORING_PARTS_GLOB

PROFILE_VERSION = 1
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
    known = pc.sum(pc.is_in(found, value_set=vocabulary.tokens)).as_py() or 0
    return len(found), len(found) - known


def script_letters(texts: pa.Array) -> list[int]:
    """Letters of each script in ``SCRIPTS`` order ("other": letters of none of the four).

    Letters are kept by deleting *runs* of everything else and measured by length: a
    regex that matched each letter costs a match per letter (10 times slower on English
    reviews); deleting runs costs a match per gap, and on the letters alone, deleting
    what is not Latin from English text matches nothing at all.
    """
    letters = pc.replace_substring_regex(texts, r"[^\p{L}]+", "")
    total = pc.sum(pc.utf8_length(letters)).as_py() or 0
    counts = [pc.sum(pc.utf8_length(pc.replace_substring_regex(
        letters, f"[^{_SCRIPT_CLASSES[s]}]+", ""))).as_py() or 0 for s in SCRIPTS[:-1]]
    return [*counts, max(0, total - sum(counts))]


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
    which is what production text is too).
    """
    lengths = pc.utf8_length(train_texts).to_numpy(zero_copy_only=False)
    length_edges = decile_edges(lengths)
    scores = np.asarray(validation_scores, dtype=np.float64)
    score_edges = decile_edges(scores)
    total, unknown = unknown_tokens(validation_texts, vocabulary)
    predicted = scores >= 0.5
    return {
        "profile_version": PROFILE_VERSION, "version": version, "architecture": architecture,
        "train_rows": len(train_texts), "validation_rows": len(validation_texts),
        "length": {"edges": length_edges, "shares": shares(bin_counts(lengths, length_edges)),
                   "mean": round(float(lengths.mean()), 2) if len(lengths) else None},
        "script_mix": script_mix(script_letters(train_texts)),
        "vocabulary": {"size": len(vocabulary.tokens),
                       "characters_of_unspaced_scripts": vocabulary.characters_of_unspaced_scripts,
                       "validation_tokens": total,
                       "oov_rate": round(unknown / total, 4) if total else None,
                       "coverage": round(1 - unknown / total, 4) if total else None},
        "score": {"edges": score_edges, "shares": shares(bin_counts(scores, score_edges)),
                  "positive_share": round(float(predicted.mean()), 4) if len(scores) else None},
        "accuracy": (round(float((predicted == (np.asarray(validation_labels) == 1)).mean()), 4)
                     if len(scores) else None),
    }


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
    positives: int = 0
    labeled: int = 0
    correct: int = 0

    def add(self, other: MonitorCounts) -> MonitorCounts:
        for name in ("rows", "length_sum", "sampled_rows", "tokens", "unknown_tokens",
                     "positives", "labeled", "correct"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("length_bins", "score_bins", "letters"):
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
    counts.letters = script_letters(few)
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
    """The figures of a file or a run; those that need the profile are None without one."""
    mix = script_mix(counts.letters)
    reference = profile or {}
    return {
        "rows": counts.rows,
        "positive_share": round(counts.positives / counts.rows, 4) if counts.rows else None,
        "labeled_rows": counts.labeled,
        "accuracy": round(counts.correct / counts.labeled, 4) if counts.labeled else None,
        "oov_rate": round(counts.unknown_tokens / counts.tokens, 4) if counts.tokens else None,
        "mean_length": round(counts.length_sum / counts.rows, 1) if counts.rows else None,
        "length_psi": _rounded(psi(reference["length"]["shares"], counts.length_bins)
                               if profile and counts.length_bins else None),
        "score_psi": _rounded(psi(reference["score"]["shares"], counts.score_bins)
                              if profile and counts.score_bins else None),
        "script_mix": mix,
        "script_shift": script_shift(mix, reference.get("script_mix")),
        "sampled_rows": counts.sampled_rows,
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
    raised = []
    oov = found["oov_rate"]
    if oov is not None and oov > limits.max_oov_rate:
        raised.append(Flag("oov_rate", f"{name} looks unlike the champion's training data: "
                                       f"{oov:.0%} of its tokens are unknown to it; {trained_on}"))
    shift = found["script_shift"]
    if shift is not None and shift > limits.max_script_shift:
        raised.append(Flag("script_shift", f"{name} is written in {describe_mix(found['script_mix'])}"
                                           f" text; the champion was trained on "
                                           f"{describe_mix(profile['script_mix'])} text"))
    if found["length_psi"] is not None and found["length_psi"] > limits.max_psi:
        raised.append(Flag("length_psi", f"{name}: review lengths differ from the champion's "
                                         f"training data (PSI {found['length_psi']:.2f} > "
                                         f"{limits.max_psi}; mean {found['mean_length']:.0f} "
                                         f"characters against {profile['length']['mean']:.0f})"))
    if found["score_psi"] is not None and found["score_psi"] > limits.max_psi:
        raised.append(Flag("score_psi", f"{name}: the champion's scores are distributed unlike on "
                                        f"its held-out reviews (PSI {found['score_psi']:.2f} > "
                                        f"{limits.max_psi}; {found['positive_share']:.0%} positive"
                                        f" against {profile['score']['positive_share']:.0%})"))
    reference_accuracy = (profile or {}).get("accuracy")
    if (found["accuracy"] is not None and reference_accuracy is not None
            and found["labeled_rows"] >= limits.min_rows
            and reference_accuracy - found["accuracy"] > limits.max_accuracy_drop):
        raised.append(Flag("accuracy", f"{name}: accuracy on its {found['labeled_rows']} labeled "
                                       f"rows is {found['accuracy']:.1%}, more than "
                                       f"{limits.max_accuracy_drop:.0%} below the champion's "
                                       f"held-out {reference_accuracy:.1%}"))
    return raised


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

"""Self-training: which unlabeled reviews training may learn from, and their pseudo-labels.

Reviews without labels pile up wherever reviews are scored. A model trained on the
labeled reviews scores them; the ones it scores confidently join the training rows
with the label it gave (a pseudo-label), and a second model is trained on both. It
learns the words and phrases of those reviews that the labeled ones never used, next
to words it already knows. BENCHMARKS.md ("Languages") and docs/retraining.md have
what it gains on held-out movies, at each confidence.

``self_train`` is the step: it takes the first model's scores through a function it is
given, so it is plain code over DataFrames and arrays, and returns a ``SelfTraining``;
``flows.retrain_model`` calls it between the two trainings (``tasks.training.candidate``).
Nothing here may let a held-out row's text back into training: see ``learnable_unlabeled``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.training.split import TRAINING_COLUMNS, Split, texts

# What self-training leaves out of unlabeled/, by why (``learnable_unlabeled``), in the order
# the run summary, its warning and the log line name them.
LEFT_OUT_REASONS = ("labeled_text", "held_out_group", "duplicate_text", "over_max_rows")


@dataclass(frozen=True)
class SelfTraining:
    """What self-training took from ``unlabeled/``.

    ``counts``: the rows read, those left out by each of ``LEFT_OUT_REASONS`` and the
    learnable rest (``learnable_unlabeled``); ``pseudo``: the learnable rows scored
    confidently, with the label the first model gave them (``pseudo_labeled``)."""

    counts: dict[str, int]
    pseudo: pd.DataFrame

    @property
    def pseudo_counts(self) -> dict[str, int]:
        """Pseudo-labeled rows per class."""
        labels = self.pseudo["label"]
        return {"positive": int((labels == 1).sum()), "negative": int((labels == 0).sum())}

    def record(self, unlabeled_stats: dict) -> dict:
        """metrics.json "self_training": these counts and pseudo-labels, and what reading
        ``unlabeled/`` gave (``unlabeled_stats``: files, quarantines, rejected rows and
        the folder's content fingerprint)."""
        return {**self.counts, "pseudo_labeled": self.pseudo_counts,
                **{key: unlabeled_stats[key] for key in ("files", "files_quarantined",
                                                         "rows_rejected", "content_sha256")}}


def self_train(unlabeled: pd.DataFrame, split: Split,
               score: Callable[[np.ndarray], np.ndarray], *, max_rows: int,
               confidence: float) -> SelfTraining:
    """Pseudo-label the reviews of ``unlabeled`` that training may learn from.

    ``score(texts)`` gives the first model's score of each text (``tasks.model``'s
    ``predict_scores``); it is called once, on the learnable rows only, and not at all
    when there are none."""
    pool, counts = learnable_unlabeled(unlabeled, split, max_rows)
    scores = score(texts(pool)) if len(pool) else np.zeros(0)
    return SelfTraining(counts, pseudo_labeled(pool, scores, confidence))


def learnable_unlabeled(unlabeled: pd.DataFrame, split: Split,
                        max_rows: int) -> tuple[pd.DataFrame, dict]:
    """The rows of ``unlabeled`` (review_id, text, group) that training may learn from,
    and how many were left out and why.

    Left out:

    - ``labeled_text``: a text that is also a labeled review's, in any part. Its label
      is known; and a selection or gate review must never come back into training
      under another id, or the held-out figures would measure a memorized review.
    - ``held_out_group``: a review of a movie (product) of the selection or gate part.
      Those groups are held out so the figures measure reviews of things no model saw;
      learning their reviews' words, even without labels, would make them read high.
    - ``duplicate_text``: the same text again, kept once.
    - ``over_max_rows``: beyond ``max_rows``, rows kept by a hash of their text, so the
      choice does not depend on file or row order, and training time stays bounded.
    """
    labeled_texts = pd.concat([split.train["text"], split.selection["text"], split.gate["text"]])
    is_labeled_text = unlabeled["text"].isin(labeled_texts)
    held_out_groups = pd.concat([split.selection.get("group", pd.Series(dtype=object)),
                                 split.gate.get("group", pd.Series(dtype=object))]).dropna()
    in_held_out_group = (unlabeled["group"].notna() & unlabeled["group"].isin(held_out_groups)
                         & ~is_labeled_text)
    kept = unlabeled[~is_labeled_text & ~in_held_out_group]
    unique = kept.drop_duplicates("text")
    chosen = unique.iloc[np.argsort(_text_hash(unique["text"]), kind="stable")[:max_rows]]
    return chosen.reset_index(drop=True), {
        "rows": int(len(unlabeled)), "labeled_text": int(is_labeled_text.sum()),
        "held_out_group": int(in_held_out_group.sum()),
        "duplicate_text": int(len(kept) - len(unique)),
        "over_max_rows": int(len(unique) - len(chosen)), "learnable": int(len(chosen))}


def pseudo_labeled(pool: pd.DataFrame, scores: np.ndarray, confidence: float) -> pd.DataFrame:
    """review_id, text and label of the rows of ``pool`` scored confidently.

    A score of at least ``confidence`` gives label 1, at most ``1 - confidence`` label
    0; the rest are left out. The larger class is then cut to the smaller's size
    (rows kept by a hash of their text): a model's confident guesses lean to the class
    it finds easier, and training on them as they come would shift the balance the
    labeled reviews teach.
    """
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be between 0.5 and 1 (exclusive), not {confidence}")
    scores = np.asarray(scores, dtype=np.float64)
    # Scores are float32 and 1 - 0.8 is 0.19999999999999996 in float64: a margin well
    # under float32's resolution makes a score of 0.2 count as 0.2.
    margin = 1e-6
    positive = pool[scores >= confidence - margin]
    negative = pool[scores <= 1 - confidence + margin]
    size = min(len(positive), len(negative))
    parts = [_first_by_hash(rows, size).assign(label=label)
             for rows, label in ((positive, 1), (negative, 0))]
    labeled = pd.concat(parts, ignore_index=True)[TRAINING_COLUMNS]
    return labeled.astype({"label": "int8"})


def _first_by_hash(rows: pd.DataFrame, size: int) -> pd.DataFrame:
    return rows.iloc[np.argsort(_text_hash(rows["text"]), kind="stable")[:size]]


def _text_hash(texts: pd.Series) -> np.ndarray:
    # pandas' hash of the values alone (index=False): the same text, the same number, on
    # every run and machine.
    return pd.util.hash_pandas_object(texts.astype(str), index=False).to_numpy()

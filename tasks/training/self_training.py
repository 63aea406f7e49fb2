"""Self-training: which unlabeled reviews training may learn from, and their pseudo-labels.

Reviews without labels pile up wherever reviews are scored. A model trained on the
labeled reviews scores them; the ones it scores confidently join the training rows
with the label it gave (a pseudo-label), and a second model is trained on both. It
learns the words and phrases of those reviews that the labeled ones never used, next
to words it already knows. BENCHMARKS.md ("Languages") and docs/retraining.md have
what it gains on held-out movies, at each confidence.

Plain functions over DataFrames and arrays; ``flows.retrain_model`` wires them. Nothing
here may let a held-out row's text back into training: see ``learnable_unlabeled``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.training.split import Split


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
    labeled = pd.concat(parts, ignore_index=True)[["review_id", "text", "label"]]
    return labeled.astype({"label": "int8"})


def _first_by_hash(rows: pd.DataFrame, size: int) -> pd.DataFrame:
    return rows.iloc[np.argsort(_text_hash(rows["text"]), kind="stable")[:size]]


def _text_hash(texts: pd.Series) -> np.ndarray:
    # pandas' hash of the values alone (index=False): the same text, the same number, on
    # every run and machine.
    return pd.util.hash_pandas_object(texts.astype(str), index=False).to_numpy()

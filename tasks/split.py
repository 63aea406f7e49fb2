"""The deterministic held-out split of labeled reviews."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd


def in_validation(review_ids: pd.Series, fraction: float) -> np.ndarray:
    """True where a review belongs to the validation part.

    Decided by a hash of the id alone, so a review never moves between the parts as
    new labeled files arrive, whatever order they are read in.
    """
    threshold = int(fraction * 2**64)
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(i).encode("utf-8"), digest_size=8).digest(), "big")
         < threshold for i in review_ids), dtype=bool, count=len(review_ids))


@dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    duplicates_removed: int
    kept_out_of_training: int


def split_labeled(reviews: pd.DataFrame, fraction: float) -> Split:
    """Split ``reviews`` (review_id, text, label) into training and validation parts.

    Exact duplicate texts are kept once. A text that appears in both parts is kept
    in validation only, so the validation figures never measure memorized reviews.
    """
    frame = reviews.assign(_val=in_validation(reviews["review_id"], fraction))
    # Rows of each text, validation ones first: the first row of a text that has any
    # validation occurrence is a validation row.
    ordered = frame.sort_values("_val", ascending=False, kind="stable")
    first = ordered.drop_duplicates("text", keep="first")
    duplicates_removed = len(frame) - len(first)
    text_in_val = set(ordered.loc[ordered["_val"], "text"])
    kept_out = int(frame.loc[~frame["_val"], "text"].isin(text_in_val).sum())
    first = first.sort_index()
    validation = first[first["_val"]].drop(columns="_val").reset_index(drop=True)
    train = first[~first["_val"]].drop(columns="_val").reset_index(drop=True)
    return Split(train, validation, duplicates_removed, kept_out)


def fingerprint(review_ids: pd.Series, labels: pd.Series) -> str:
    """A hash of the (id, label) pairs of a part, independent of row order."""
    digest = hashlib.sha256()
    for review_id, label in sorted(zip(review_ids.astype(str), labels.astype(int))):
        digest.update(f"{review_id}\t{label}\n".encode())
    return digest.hexdigest()

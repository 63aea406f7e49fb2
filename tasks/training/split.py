"""The deterministic three-way split of labeled reviews: train, selection and gate.

- **train**: what the candidate learns from;
- **selection**: what training looks at to choose (early stopping picks its best epoch
  on these rows);
- **gate**: what the promotion gate compares the candidate and the champion on. The
  candidate never chose anything by these rows, so it has no advantage over a champion
  that never saw them either.

Each row's part is decided by a hash of its group (the movie or product it reviews,
``ColumnMapping.group``) or, for a row without one, of its ``review_id``. Held-out
figures then measure reviews of items that training never saw, as a new batch will be,
and a row never moves between the parts as new labeled files arrive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Parts, most protected first: a text found in several parts is kept in the first.
PARTS = ("gate", "selection", "train")

# The columns of a row a model learns from (the training, selection and pseudo-labeled rows).
TRAINING_COLUMNS = ["review_id", "text", "label"]


def _position(keys: pd.Series) -> np.ndarray:
    """A stable number in [0, 1) per key, from a hash of the key alone."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(k).encode("utf-8"), digest_size=8).digest(), "big")
         / 2**64 for k in keys), dtype=np.float64, count=len(keys))


def split_keys(reviews: pd.DataFrame) -> pd.Series:
    """What each row is split by: its group where it has one, else its review id.

    A review id is its own key, so data without groups is split as before groups were
    read (the held-out rows of earlier versions stay held out).
    """
    ids = reviews["review_id"].astype(str)
    if "group" not in reviews:
        return ids
    return ids.where(~_has_group(reviews), "group:" + reviews["group"].astype(str))


def _has_group(reviews: pd.DataFrame) -> pd.Series:
    if "group" not in reviews:
        return pd.Series(False, index=reviews.index)
    group = reviews["group"]
    return group.notna() & (group.astype(str).str.strip() != "")


@dataclass
class Split:
    train: pd.DataFrame
    selection: pd.DataFrame
    gate: pd.DataFrame
    duplicates_removed: int
    kept_out_of_training: int
    split_by: str  # "group", "review_id", or "group, else review_id"
    groups: dict[str, int]  # distinct split keys per part

    @property
    def validation(self) -> pd.DataFrame:
        """Every row held out of training (selection and gate)."""
        return pd.concat([self.selection, self.gate], ignore_index=True)


def split_labeled(reviews: pd.DataFrame, fraction: float, selection_share: float = 0.5) -> Split:
    """Split ``reviews`` (review_id, text, label, optional group) into the three parts.

    ``fraction`` of the split keys is held out of training; ``selection_share`` of that
    goes to selection, the rest to the gate. Exact duplicate texts are kept once: a
    text in several parts is kept in the gate, else in selection, so held-out figures
    never measure memorized reviews.
    """
    keys = split_keys(reviews)
    position = _position(keys)
    part = np.where(position < fraction * (1 - selection_share), 0,
                    np.where(position < fraction, 1, 2))  # index into PARTS
    frame = reviews.assign(_part=part, _key=keys.to_numpy())
    ordered = frame.sort_values("_part", kind="stable")
    first = ordered.drop_duplicates("text", keep="first").sort_index()
    held_out_texts = set(ordered.loc[ordered["_part"] < 2, "text"])
    kept_out = int(frame.loc[frame["_part"] == 2, "text"].isin(held_out_texts).sum())
    parts = {name: first[first["_part"] == index] for index, name in enumerate(PARTS)}
    with_group = int(_has_group(reviews).sum())
    split_by = ("review_id" if with_group == 0 else
                "group" if with_group == len(keys) else "group, else review_id")
    return Split(**{name: part.drop(columns=["_part", "_key"]).reset_index(drop=True)
                    for name, part in parts.items()},
                 duplicates_removed=len(frame) - len(first), kept_out_of_training=kept_out,
                 split_by=split_by,
                 groups={name: int(part["_key"].nunique()) for name, part in parts.items()})


def texts(frame: pd.DataFrame) -> np.ndarray:
    """The review texts of ``frame`` as the array ``tasks.model`` trains on and scores."""
    return frame["text"].to_numpy(dtype=object)


def fingerprint(review_ids: pd.Series, labels: pd.Series) -> str:
    """A hash of the (id, label) pairs of a part, independent of row order."""
    digest = hashlib.sha256()
    for review_id, label in sorted(zip(review_ids.astype(str), labels.astype(int))):
        digest.update(f"{review_id}\t{label}\n".encode())
    return digest.hexdigest()

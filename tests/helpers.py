"""Helpers the tests share: plain functions, imported as ``from tests.helpers import …``."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def held_out(keys: pd.Series, fraction: float) -> np.ndarray:
    """True where the split holds a key out of training (selection or gate), computed
    here from the split's published rule (the first 8 bytes of each key's BLAKE2b as a
    number in [0, 1), below ``fraction``), so a change to the rule fails the tests that
    pin it: the held-out reviews of earlier versions must stay held out."""
    position = np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(k).encode("utf-8"), digest_size=8).digest(), "big")
         / 2**64 for k in keys), dtype=np.float64, count=len(keys))
    return position < fraction

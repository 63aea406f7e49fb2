"""The decision rule: a review is predicted positive when its score is at least the threshold.

Scoring (``predicted_label`` in ``scored/``), evaluation (accuracy, McNemar's test) and the
drift monitor (the share predicted positive) all read it from here. Plain NumPy, so none of
them needs TensorFlow for it.
"""

from __future__ import annotations

import numpy as np

DECISION_THRESHOLD = 0.5


def predicted_labels(scores) -> np.ndarray:
    """1 where a score is at least ``DECISION_THRESHOLD``, else 0 (int8)."""
    return (np.asarray(scores) >= DECISION_THRESHOLD).astype(np.int8)

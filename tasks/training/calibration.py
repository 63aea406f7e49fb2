"""How far a model's scores can be read as probabilities: the expected calibration error
and the reliability diagram's bins, on the gate rows.

A user who keeps the reviews scored 0.9 or more wants to know what share of them are
positive. The scores are cut into ``CALIBRATION_BINS`` equal-width bins of the score
(bin ``k`` holds the scores in ``[k / B, (k + 1) / B)``, the last bin includes 1.0);
in each, the mean score is compared with the share of positive labels. The expected
calibration error is the mean of ``|positive share - mean score|`` over the bins,
weighted by their rows (empty bins count nothing): 0 for a model whose 0.9 means 90 %
positive in every bin. It is measured on the score of the positive class, the figure
``scored/`` holds, not on the confidence of the predicted class.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

CALIBRATION_BINS = 10


class CalibrationBin(TypedDict):
    lower: float
    upper: float
    rows: int
    mean_score: float | None
    positive_share: float | None


class Calibration(TypedDict):
    """metrics.json "calibration" "candidate" / "champion"."""

    expected_calibration_error: float | None
    bins: list[CalibrationBin]


def calibration(labels, scores, bins: int = CALIBRATION_BINS) -> Calibration:
    """The reliability bins of ``scores`` against ``labels`` and their expected
    calibration error (None without rows)."""
    labels = np.asarray(labels).astype(np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    index = np.clip(np.floor(scores * bins).astype(np.int64), 0, bins - 1)
    rows = np.bincount(index, minlength=bins)
    score_sum = np.bincount(index, weights=scores, minlength=bins)
    positive_sum = np.bincount(index, weights=labels, minlength=bins)
    found: list[CalibrationBin] = []
    gap = 0.0
    for k in range(bins):
        n = int(rows[k])
        mean_score = score_sum[k] / n if n else None
        positive_share = positive_sum[k] / n if n else None
        if n:
            gap += n * abs(positive_share - mean_score)
        found.append({"lower": round(k / bins, 6), "upper": round((k + 1) / bins, 6), "rows": n,
                      "mean_score": None if mean_score is None else round(float(mean_score), 4),
                      "positive_share": (None if positive_share is None
                                         else round(float(positive_share), 4))})
    return {"expected_calibration_error": round(gap / len(scores), 4) if len(scores) else None,
            "bins": found}

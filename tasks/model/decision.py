"""The decision rule: a review is predicted positive when its score is at least the threshold;
and how a difference of two accuracies is held against a margin.

Scoring (``predicted_label`` in ``scored/``), evaluation (accuracy, McNemar's test) and the
drift monitor (the share predicted positive) all read the rule from here. Plain NumPy, so
none of them needs TensorFlow for it.

A margin (``min_delta`` 0.2, a drop of 0.03) is compared exactly (``exceeds``): as the
decimal it is written as, against the difference of counts of correct rows as a fraction.
Floats would say that 0.9 - 0.7 (0.20000000000000007) exceeds 0.2, and promote a gain of
exactly the margin that the rule says it must exceed.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

DECISION_THRESHOLD = 0.5


def predicted_labels(scores) -> np.ndarray:
    """1 where a score is at least ``DECISION_THRESHOLD``, else 0 (int8)."""
    return (np.asarray(scores) >= DECISION_THRESHOLD).astype(np.int8)


def exact(figure: float | int | Fraction) -> Fraction:
    """A figure as the decimal it is written as (``repr``): 0.2 is 1/5, not the binary
    float nearest to it."""
    if isinstance(figure, Fraction | int):
        return Fraction(figure)
    return Fraction(repr(float(figure)))


def exceeds(difference: Fraction | float, margin: float) -> bool:
    """Whether ``difference`` (best a ``Fraction`` of counts: ``Fraction(correct_a -
    correct_b, rows)``) is more than ``margin``, compared exactly."""
    return exact(difference) > exact(margin)

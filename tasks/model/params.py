"""How a model is trained: the architecture and the figures ``train_model`` reads, and
how long a refit on more rows trains (``refit_epochs``).

Plain Python (no TensorFlow). ``TrainingParams`` has no defaults of its own: each field
is the ``Settings`` field of the same name, filled in by ``TrainingParams.from_settings``,
so a default is written once, in ``tasks/settings.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from tasks.settings import Settings


@dataclass(frozen=True)
class TrainingParams:
    """The training settings ``tasks.model.training`` uses; ``architecture`` names an
    entry of ``tasks.model.architectures.ARCHITECTURES``."""

    architecture: str
    max_tokens: int
    epochs: int
    batch_size: int
    patience: int
    seed: int

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> TrainingParams:
        """The fields of the same names in ``settings``, and ``overrides`` over them."""
        values = {f.name: getattr(settings, f.name) for f in fields(cls)}
        return cls(**{**values, **overrides})


def refit_epochs(best_epoch: int, rows_then: int, rows_now: int) -> int:
    """Epochs over ``rows_now`` rows that make as many updates as ``best_epoch`` epochs
    over ``rows_then`` did (rounded up, at least one).

    With 12% more rows (the selection rows) this is about the same count; with three
    times as many (pseudo-labeled reviews) a third. On IMDB, early stopping over the
    labeled and pseudo-labeled reviews together kept about as many updates as this rule
    gives, and the two models scored reviews of held-out movies alike.
    """
    if rows_then <= 0 or rows_now <= 0:
        return best_epoch
    return max(1, math.ceil(best_epoch * rows_then / rows_now))

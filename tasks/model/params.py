"""How a model is trained: the architecture and the figures ``train_model`` reads.

Plain Python (no TensorFlow). ``TrainingParams`` has no defaults of its own: each field
is the ``Settings`` field of the same name, filled in by ``TrainingParams.from_settings``,
so a default is written once, in ``tasks/settings.py``.
"""

from __future__ import annotations

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

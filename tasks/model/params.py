"""How a model is trained: the architecture and the figures ``train_model`` reads.

Plain Python (no TensorFlow). Every default is the ``Settings`` field of the same name
(``tasks/settings.py``), so a default is written once; ``TrainingParams.from_settings``
takes them all from a ``Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from tasks.settings import Settings, default_of


@dataclass(frozen=True)
class TrainingParams:
    """The training settings ``tasks.model.training`` uses; ``architecture`` names an
    entry of ``tasks.model.architectures.ARCHITECTURES``."""

    architecture: str = default_of("architecture")
    max_tokens: int = default_of("max_tokens")
    epochs: int = default_of("epochs")
    batch_size: int = default_of("batch_size")
    patience: int = default_of("patience")
    seed: int = default_of("seed")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> TrainingParams:
        """The fields of the same names in ``settings``, and ``overrides`` over them."""
        values = {f.name: getattr(settings, f.name) for f in fields(cls)}
        return cls(**{**values, **overrides})

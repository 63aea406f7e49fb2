"""The candidate: trained on the split, refit on more rows, and staged with its record.

The steps of training one, in order (``flows.retrain_model``'s ``train-candidate`` task
runs them, with its progress and log lines between):

1. ``train_on_split``: train on the training rows; early stopping picks the best epoch
   on the selection rows.
2. Self-training (``tasks.training.self_training.self_train``, when it is on): that model
   pseudo-labels the unlabeled reviews it scores confidently.
3. ``plan_refit``: with ``refit_with_selection`` or pseudo-labels, the rows a new model
   learns from (training, selection, pseudo-labeled) and for how many epochs: as many
   updates as step 1 kept (``tasks.model.refit_epochs``). None: step 1's model is the
   candidate.
4. ``refit``: train that model afresh on those rows.

``Candidate`` is what they give. ``stage_candidate`` saves it in the registry's staging
folder with its record (metrics.json, decision.json, profile.json, the pictures and the
model card: ``tasks.training.card``), for ``tasks.training.promotion.conclude`` to
publish, and returns ``Staged``. The steps that train or save import
TensorFlow through ``tasks.model`` when they run; ``plan_refit`` and ``Candidate`` are
plain code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.layout import MODEL_FILE
from tasks.model.params import TrainingParams, refit_epochs
from tasks.settings import Settings
from tasks.training.evaluation import GateComparison
from tasks.training.promotion import Decision
from tasks.training.record import version_metrics
from tasks.training.self_training import SelfTraining
from tasks.training.split import TRAINING_COLUMNS, Split, texts

if TYPE_CHECKING:
    from tasks.model.training import TrainedModel

OnEpoch = Callable[[int, dict], None]


@dataclass(frozen=True)
class RefitPlan:
    """The rows a refit learns from, by part ("training", "selection", "pseudo-labeled";
    review_id, text, label; empty parts left out), and its epochs."""

    parts: dict[str, pd.DataFrame]
    epochs: int

    @property
    def rows(self) -> pd.DataFrame:
        return pd.concat(self.parts.values(), ignore_index=True)

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.parts.items()}


@dataclass(frozen=True)
class Staged:
    """A staged version: its name and its metrics.json record."""

    version: str
    metrics: dict


@dataclass(frozen=True)
class Candidate:
    """The model the gate judges (the refit's when there was one), what self-training
    gave (None when it did not run) and the refit's plan (None without one)."""

    trained: TrainedModel
    self_training: SelfTraining | None = None
    refit: RefitPlan | None = None

    @property
    def pseudo_labeled_rows(self) -> int:
        return len(self.self_training.pseudo) if self.self_training else 0

    def self_training_record(self, unlabeled_stats: dict | None) -> dict | None:
        """metrics.json "self_training" (``SelfTraining.record``), or None when it did not
        run."""
        if self.self_training is None:
            return None
        return self.self_training.record(unlabeled_stats)

    def scores(self, frame: pd.DataFrame, batch_size: int) -> np.ndarray:
        """The candidate's scores of the texts of ``frame``."""
        from tasks.model import predict_scores

        return predict_scores(self.trained.model, texts(frame), batch_size)


def train_on_split(split: Split, params: TrainingParams,
                   on_epoch: OnEpoch | None = None) -> TrainedModel:
    """Train ``params.architecture`` on ``split.train``; early stopping on ``split.selection``."""
    from tasks.model import train_model

    return train_model(texts(split.train), split.train["label"].to_numpy(),
                       texts(split.selection), split.selection["label"].to_numpy(), params,
                       on_epoch=on_epoch)


def plan_refit(trained, split: Split, self_training: SelfTraining | None, *,
               with_selection: bool) -> RefitPlan | None:
    """What a second model learns from: the training rows, the selection rows when
    ``with_selection``, and the pseudo-labeled rows; None when that would be the training
    rows alone. ``trained`` (``train_on_split``'s ``TrainedModel``; its ``best_epoch`` and
    ``train_rows``) sets the epochs: as many updates as it made up to its best epoch."""
    pseudo = self_training.pseudo if self_training is not None else None
    if not with_selection and (pseudo is None or pseudo.empty):
        return None
    parts = {"training": split.train, "selection": split.selection if with_selection else None,
             "pseudo-labeled": pseudo}
    parts = {name: rows[TRAINING_COLUMNS] for name, rows in parts.items()
             if rows is not None and len(rows)}
    rows = sum(len(part) for part in parts.values())
    return RefitPlan(parts, refit_epochs(trained.best_epoch, trained.train_rows, rows))


def refit(trained: TrainedModel, plan: RefitPlan, params: TrainingParams,
          on_epoch: OnEpoch | None = None) -> TrainedModel:
    """A new model trained afresh on ``plan``'s rows for its epochs
    (``tasks.model.refit_model``); ``trained``'s curves stay the record."""
    from tasks.model import refit_model

    rows = plan.rows
    return refit_model(trained, texts(rows), rows["label"].to_numpy(), params,
                       on_epoch=on_epoch)


def stage_candidate(registry, candidate: Candidate, split: Split, settings: Settings,
                    read_stats: dict, evidence: GateComparison, decision: Decision,
                    self_training: dict | None) -> Staged:
    """Save the candidate and its record in the staging folder of ``registry``
    (``tasks.training.registry.Registry``) under a new version; returns the version and
    its metrics. ``self_training``: ``Candidate.self_training_record``."""
    from tasks.model import library_versions, model_vocabulary, save_model
    from tasks.monitoring import reference_profile

    model = candidate.trained.model
    version = registry.new_version()
    save_model(model, registry.stage(version) / MODEL_FILE)
    metrics = version_metrics(version, candidate.trained, split, settings, read_stats,
                              evidence, library_versions(), self_training, decision)
    profile = reference_profile(pa.array(texts(split.train), pa.string()),
                                pa.array(texts(split.gate), pa.string()),
                                evidence.candidate_scores, split.gate["label"].to_numpy(),
                                model_vocabulary(model), version, settings.architecture)
    registry.write_record(version, metrics, decision.record(metrics["trained_at"]), profile)
    return Staged(version, metrics)

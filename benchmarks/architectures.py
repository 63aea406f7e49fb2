"""Held-out accuracy, training time and scoring speed of every named architecture.

Each architecture is trained on the training part of the project's deterministic
split (``split_labeled``, 20% held out) of a labeled Parquet file, saved, loaded
back in safe mode like any registered version, and then scores every text of the
file. Run it as::

    python -m benchmarks.architectures [../shared/data/imdb/train.parquet] [name ...]

which prints one JSON line per architecture.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.model import (
    ARCHITECTURES,
    TrainingParams,
    load_model,
    predict_scores,
    save_model,
    train_model,
)
from tasks.settings import Settings
from tasks.split import split_labeled

DEFAULT_PARQUET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "train.parquet"
PREDICT_BATCH_SIZE = 1024


def measure_architecture(name: str, train_parquet: Path) -> dict:
    """Train ``name`` on the training part of ``train_parquet`` and measure it."""
    settings = Settings()
    reviews = pd.read_parquet(train_parquet, columns=["review_id", "text", "label"])
    split = split_labeled(reviews, 0.2)
    params = TrainingParams(architecture=name, max_tokens=settings.max_tokens,
                            epochs=settings.epochs, batch_size=settings.batch_size,
                            patience=settings.patience, seed=settings.seed)
    trained = train_model(_texts(split.train), split.train["label"].to_numpy(),
                          _texts(split.validation), split.validation["label"].to_numpy(), params)
    with tempfile.TemporaryDirectory() as folder:
        model = load_model(save_model(trained.model, Path(folder) / "model.keras"))
    labels = split.validation["label"].to_numpy()
    scores = predict_scores(model, _texts(split.validation), PREDICT_BATCH_SIZE)
    texts = _texts(reviews)
    predict_scores(model, texts[:PREDICT_BATCH_SIZE], PREDICT_BATCH_SIZE)  # warm-up (tracing)
    seconds = scoring_seconds(model, texts)
    return {"architecture": name,
            "heldout_accuracy": round(float(np.mean((scores > 0.5) == (labels == 1))), 4),
            "training_seconds": round(trained.training_seconds, 1),
            "reviews_per_second": round(len(texts) / seconds),
            "epochs_run": trained.epochs_run,
            "train_rows": len(split.train), "validation_rows": len(split.validation)}


def scoring_seconds(model, texts: np.ndarray, repeats: int = 3) -> float:
    """Median wall time of ``predict_scores`` over ``texts``: one slow repeat (another
    process taking a core for a moment) moves a single timing by tens of percent."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict_scores(model, texts, PREDICT_BATCH_SIZE)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def _texts(frame: pd.DataFrame) -> np.ndarray:
    return frame["text"].to_numpy(dtype=object)


def main(argv: list[str]) -> None:
    parquet = Path(argv[0]) if argv else DEFAULT_PARQUET
    for name in argv[1:] or list(ARCHITECTURES):
        print(json.dumps(measure_architecture(name, parquet)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

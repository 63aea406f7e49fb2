"""Held-out accuracy, training time and scoring speed of every named architecture.

Each architecture is trained on the project's deterministic three-way split
(``split_labeled``, the settings' fraction held out) of a labeled Parquet file, as
``reviewflow retrain`` splits it: by ``movie_id`` where the file has one, so held-out
rows are reviews of movies training never saw. Early stopping picks its epoch on the
selection part; accuracy is measured on the gate part, which nothing was chosen by.
The model is saved, loaded back in safe mode like any registered version, and then
scores every text of the file. Run it as::

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
from tasks.training.split import Split, split_labeled

DEFAULT_PARQUET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "train.parquet"
PREDICT_BATCH_SIZE = 1024


def read_labeled(train_parquet: Path) -> pd.DataFrame:
    """review_id, text, label and, where the file has ``movie_id``, group."""
    import pyarrow.parquet as pq

    names = set(pq.read_schema(train_parquet).names)
    columns = ["review_id", "text", "label"] + (["movie_id"] if "movie_id" in names else [])
    return pd.read_parquet(train_parquet, columns=columns).rename(columns={"movie_id": "group"})


def split_for_bench(train_parquet: Path) -> tuple[pd.DataFrame, Split]:
    """The file's reviews and their three-way split, as retraining splits them."""
    reviews = read_labeled(train_parquet)
    return reviews, split_labeled(reviews, Settings().validation_fraction)


def measure_architecture(name: str, train_parquet: Path) -> dict:
    """Train ``name`` on the train part of ``train_parquet`` (early stopping on the
    selection part) and measure it on the gate part."""
    settings = Settings()
    reviews, split = split_for_bench(train_parquet)
    params = TrainingParams.from_settings(settings, architecture=name)
    trained = train_model(_texts(split.train), split.train["label"].to_numpy(),
                          _texts(split.selection), split.selection["label"].to_numpy(), params)
    with tempfile.TemporaryDirectory() as folder:
        model = load_model(save_model(trained.model, Path(folder) / "model.keras"))
    labels = split.gate["label"].to_numpy()
    scores = predict_scores(model, _texts(split.gate), PREDICT_BATCH_SIZE)
    texts = _texts(reviews)
    predict_scores(model, texts[:PREDICT_BATCH_SIZE], PREDICT_BATCH_SIZE)  # warm-up (tracing)
    seconds = scoring_seconds(model, texts)
    return {"architecture": name,
            "heldout_accuracy": round(float(np.mean((scores > 0.5) == (labels == 1))), 4),
            "training_seconds": round(trained.training_seconds, 1),
            "reviews_per_second": round(len(texts) / seconds),
            "epochs_run": trained.epochs_run, **split_figures(split)}


def split_figures(split: Split) -> dict:
    """Rows and groups of each part, and what the split went by."""
    return {"train_rows": len(split.train), "selection_rows": len(split.selection),
            "gate_rows": len(split.gate), "split_by": split.split_by,
            "groups": split.groups}


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

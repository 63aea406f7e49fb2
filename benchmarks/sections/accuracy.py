"""Section 1, ``accuracy``: held-out accuracy, training seconds and scoring reviews/s of
every named architecture, on the same split.

Every architecture in ``tasks.model.ARCHITECTURES`` (the seed's and the default first)
is trained on the project's deterministic three-way split (``split_labeled``, the
settings' fraction held out) of IMDB ``train.parquet``, as ``reviewflow retrain`` splits
it: by ``movie_id`` where the file has one, so held-out rows are reviews of movies
training never saw. Early stopping picks its epoch on the selection part; accuracy is
measured on the gate part, which nothing was chosen by. The model is saved, loaded back
in safe mode like any registered version, and then scores every text of the file.
The peers (fastText, scikit-learn), beside the default architecture in English and
Korean, are the ``peers`` section's. Run the architectures alone with::

    python -m benchmarks.sections.accuracy [../shared/data/imdb/train.parquet] [name ...]

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

from benchmarks.common import IMDB_PARQUET, Bench, log, md_table, texts_of
from tasks.settings import Settings
from tasks.training.split import Split, split_labeled

TITLE = "1. Accuracy on IMDB (reviews of movies held out of train.parquet)"
NEEDS_SHARED_DATA = True
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
    from tasks.model import TrainingParams, load_model, predict_scores, save_model, train_model

    settings = Settings()
    reviews, split = split_for_bench(train_parquet)
    params = TrainingParams.from_settings(settings, architecture=name)
    trained = train_model(texts_of(split.train), split.train["label"].to_numpy(),
                          texts_of(split.selection), split.selection["label"].to_numpy(), params)
    with tempfile.TemporaryDirectory() as folder:
        model = load_model(save_model(trained.model, Path(folder) / "model.keras"))
    labels = split.gate["label"].to_numpy()
    scores = predict_scores(model, texts_of(split.gate), PREDICT_BATCH_SIZE)
    texts = texts_of(reviews)
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
    from tasks.model import predict_scores

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict_scores(model, texts, PREDICT_BATCH_SIZE)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def run(bench: Bench) -> dict:
    """Held-out accuracy, training and scoring speed of each architecture.

    Each architecture measured by ``measure_architecture``. Order: seed, default, the
    others.
    """
    from tasks.model import ARCHITECTURES

    measurer = f"{__name__}.measure_architecture"

    parquet, settings = bench.labeled_parquet(), Settings()
    default = settings.architecture
    names = ["seed"] if "seed" in ARCHITECTURES else []
    names += [default] if default not in names else []
    names += sorted(n for n in ARCHITECTURES if n not in names)
    rows = []
    for name in names:
        roles = [r for r, n in (("seed", "seed"), ("default", default)) if n == name]
        log(f"accuracy: training {name} on {parquet.name}")
        try:
            row = measure_architecture(name, parquet)
        except Exception as exc:  # one architecture failing must not hide the others
            log(f"accuracy: {name} FAILED: {exc!r}")
            row = {"architecture": name, "error": f"{type(exc).__name__}: {exc}"}
        row.update(kind="reviewflow (Keras)", roles=roles,
                   description=ARCHITECTURES[name].description)
        rows.append(row)
        log(f"accuracy: {json.dumps(row)}")
    splits = {(r.get("train_rows"), r.get("selection_rows"), r.get("gate_rows"))
              for r in rows if "error" not in r}
    return {"train_file": str(parquet), "rows": len(bench.reviews()), "measured_by": measurer,
            "validation_fraction": settings.validation_fraction,
            "same_split_everywhere": len(splits) == 1, "results": rows}


def render(data: dict) -> list[str]:
    rows = [[r["architecture"] + (f" ({', '.join(r['roles'])})" if r.get("roles") else ""),
             r.get("kind"), r.get("heldout_accuracy"), r.get("training_seconds"),
             r.get("epochs_run"), r.get("reviews_per_second"),
             " ".join(r["error"].split())[:300] if r.get("error") else None]
            for r in data["results"]]
    first = next((r for r in data["results"] if "train_rows" in r), {})
    by = {"group": "movie_id", "review_id": "review_id"}.get(first.get("split_by"),
                                                              "movie_id, else review_id")
    groups = first.get("groups", {})
    lines = [f"Trained on `{Path(data['train_file']).name}` ({data['rows']:,} reviews), split "
             f"as `reviewflow retrain` splits it (`split_labeled`, fraction "
             f"{data['validation_fraction']} held out, by a hash of {by}; duplicate texts "
             f"removed): {first.get('train_rows', 0):,} training rows "
             f"({groups.get('train', 0):,} keys), {first.get('selection_rows', 0):,} selection "
             f"rows where early stopping picks the epoch, and {first.get('gate_rows', 0):,} gate "
             f"rows ({groups.get('gate', 0):,} keys) where the accuracy below is measured: reviews"
             " of movies no model saw or chose anything by. Every model uses the same split"
             + ("." if data["same_split_everywhere"] else " — NOT the case in this run: the "
                                                          "row counts differ, see results.json.")
             + " Scoring speed: reviews/s over all texts of the file from raw strings, after a"
               " warm-up (saved, reloaded, `predict_scores` with batch 1024, median of 3). Peers:"
               " the peers section.", ""]
    lines += md_table(["model", "kind", "gate accuracy", "training s", "epochs",
                       "scoring reviews/s", "error"], rows)
    lines += ["", "Architectures: " + "; ".join(
        f"`{r['architecture']}`: {r.get('description', '')}" for r in data["results"]) + "."]
    return lines


def main(argv: list[str]) -> None:
    from tasks.model import ARCHITECTURES

    parquet = Path(argv[0]) if argv else IMDB_PARQUET
    for name in argv[1:] or list(ARCHITECTURES):
        print(json.dumps(measure_architecture(name, parquet)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

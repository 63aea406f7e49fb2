"""Section 1, ``accuracy``: held-out accuracy, training and scoring speed of each
architecture and of scikit-learn, on the same split."""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.common import Bench, log, md_table, texts_of

TITLE = "1. Accuracy on IMDB (reviews of movies held out of train.parquet)"
SKLEARN_C = 16.0

def measure_sklearn(train_parquet: Path) -> dict:
    """scikit-learn's TfidfVectorizer(1-2 grams) + LogisticRegression on the same split:
    trained on the train part, measured on the gate part."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from benchmarks.architectures import split_figures, split_for_bench

    reviews, split = split_for_bench(train_parquet)
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        LogisticRegression(C=SKLEARN_C, max_iter=1000))
    started = time.perf_counter()
    pipeline.fit(texts_of(split.train), split.train["label"].to_numpy())
    training_seconds = time.perf_counter() - started
    predicted = pipeline.predict(texts_of(split.gate))
    texts = texts_of(reviews)
    started = time.perf_counter()
    pipeline.predict_proba(texts)
    seconds = time.perf_counter() - started
    return {"architecture": f"scikit-learn tf-idf 1-2 grams + LogisticRegression(C={SKLEARN_C:g})",
            "heldout_accuracy": round(float(np.mean(predicted == split.gate["label"])), 4),
            "training_seconds": round(training_seconds, 1),
            "reviews_per_second": round(len(texts) / seconds),
            "epochs_run": None, **split_figures(split),
            "features": len(pipeline[0].vocabulary_)}


def run(bench: Bench) -> dict:
    """Held-out accuracy, training and scoring speed of each architecture and of scikit-learn.

    Uses ``benchmarks.architectures.measure_architecture``. Order: seed, default, the
    others, scikit-learn.
    """
    from benchmarks.architectures import measure_architecture
    from tasks.model import ARCHITECTURES
    from tasks.settings import Settings
    measurer = "benchmarks.architectures.measure_architecture"

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
    log("accuracy: training scikit-learn tf-idf + LogisticRegression")
    peer = measure_sklearn(parquet)
    peer.update(kind="peer (scikit-learn)", roles=[],
                description="TfidfVectorizer(ngram_range=(1,2), sublinear_tf=True, min_df=2) "
                            f"+ LogisticRegression(C={SKLEARN_C:g}, max_iter=1000)")
    rows.append(peer)
    log(f"accuracy: {json.dumps(peer)}")
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
               " warm-up (Keras: saved, reloaded, `predict_scores` with batch 1024, median of 3;"
               " scikit-learn: `predict_proba`, once).", ""]
    lines += md_table(["model", "kind", "gate accuracy", "training s", "epochs",
                       "scoring reviews/s", "error"], rows)
    lines += ["", "Architectures: " + "; ".join(
        f"`{r['architecture']}`: {r.get('description', '')}" for r in data["results"]) + "."]
    return lines

"""Section ``peers``: reviewflow's default architecture beside fastText and scikit-learn,
trained and scored on the same split and the same texts, in English and Korean, in one
run.

For each language (IMDB ``train.parquet``; NSMC-style ``nsmc/train.parquet``) the
reviews are split as ``reviewflow retrain`` splits them (``split_labeled``, by
``movie_id``): accuracy is measured on the gate part, reviews of movies that no model
learned from or chose anything by. The contenders:

- reviewflow's default architecture, trained by the product's own training code
  (``tasks.training.candidate``: early stopping on the selection part, then the refit
  on training and selection rows when ``refit_with_selection`` is on, as retraining
  does), saved and loaded back in safe mode, scored with ``predict_scores`` at the
  settings' prediction batch;
- fastText ``train_supervised`` (word bigrams, dim 50, 10 epochs, the cores this
  process may use), from the ``fasttext-numpy2`` wheel of ``requirements-bench.lock``;
  its tokenization is plain Python (``fasttext_line``: lowercase, then runs of word
  characters and runs of other non-space characters as tokens), counted in its training
  and its scoring time;
- scikit-learn ``TfidfVectorizer`` (word 1-2 grams, sublinear tf, ``min_df=2``) +
  ``LogisticRegression``, and for Korean also its character variant (``char_wb`` 1-4
  grams, 500k features), the stronger scikit-learn model where one word carries stem,
  particles and endings.

The peers learn from the rows reviewflow's final model learned from (training, and
selection where the refit adds it). Training runs once each; scoring speed is measured
on the same texts for all (the first ``SPEED_ROWS`` reviews of the file, raw strings),
after a warm-up, in interleaved rounds (A B C A B C …, ``SCORING_ROUNDS``), so a change
of load hits every contender alike; reviews/s is the median round's, and the load
average after each round is reported. Targets: reviewflow at least as accurate as every
peer, in both languages; its scoring reviews/s at least ``PEER_SPEED_RATIO`` times the
fastest peer's. ``--quick`` uses the quick sample size (the first rows of each file).
The English figures are kept on ``Bench.peers`` for the ``gpu`` section.

    python -m benchmarks.sections.peers [en|ko ...] [--quick]

prints one JSON object per language.
"""

from __future__ import annotations

import functools
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import (
    PEER_SPEED_RATIO,
    QUICK,
    SHARED_DATA,
    Bench,
    interleaved_seconds,
    log,
    md_table,
    rate,
    render_targets,
    target,
    texts_of,
)

TITLE = "Peers in the same run: reviewflow, fastText and scikit-learn, English and Korean"
NEEDS_SHARED_DATA = True
SPEED_ROWS = 25_000        # texts every contender scores for speed (the file's first)
SCORING_ROUNDS = 3
FASTTEXT_PACKAGE = "fasttext-numpy2"
FASTTEXT_OPTIONS = {"wordNgrams": 2, "dim": 50, "epoch": 10, "lr": 0.1, "seed": 1337}
POSITIVE, NEGATIVE = "__label__1", "__label__0"
# fastText's tokens: runs of word characters, and runs of other non-space characters
# ("!!", "..."), of the lowercased text.
TOKEN = re.compile(r"\w+|[^\w\s]+")

LANGUAGES = {
    "en": {"name": "English (IMDB)", "source": SHARED_DATA / "imdb" / "train.parquet",
           "columns": {"review_id": "review_id", "text": "text", "movie_id": "group"},
           "sklearn_c": 16.0, "char_peer": False},
    "ko": {"name": "Korean (NSMC-style)", "source": SHARED_DATA / "nsmc" / "train.parquet",
           "columns": {"id": "review_id", "document": "text", "movie_id": "group"},
           "sklearn_c": 4.0, "char_peer": True},
}


@dataclass(frozen=True)
class Contender:
    """A model to measure: ``train(split, settings)`` gives the fitted model and its
    training seconds; ``score(model, texts)`` the probability that each text is positive."""

    name: str
    kind: str  # "product" (reviewflow) or "peer"
    description: str
    train: Callable[[Any, Any], tuple[Any, float]]
    score: Callable[[Any, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- reviewflow

def train_reviewflow(split, settings) -> tuple[Any, float]:
    """The default architecture, as retraining trains a candidate (no unlabeled reviews),
    saved and loaded back in safe mode like any registered version."""
    from tasks.model import TrainingParams, load_model, save_model
    from tasks.training.candidate import plan_refit, refit, train_on_split

    params = TrainingParams.from_settings(settings)
    trained = train_on_split(split, params)
    plan = plan_refit(trained, split, None, with_selection=settings.refit_with_selection)
    if plan is not None:
        trained = refit(trained, plan, params)
    with tempfile.TemporaryDirectory() as folder:
        model = load_model(save_model(trained.model, Path(folder) / "model.keras"))
    return model, trained.training_seconds


def reviewflow_contender(settings) -> Contender:
    from tasks.model import predict_scores

    batch = settings.predict_batch_size
    return Contender(
        name=f"reviewflow `{settings.architecture}` (default)", kind="product",
        description=f"the product's training code; `predict_scores`, batch {batch}",
        train=train_reviewflow, score=lambda model, texts: predict_scores(model, texts, batch))


def learned_rows(split, settings) -> pd.DataFrame:
    """The rows reviewflow's final model learns from: training, and selection with the refit."""
    if settings.refit_with_selection:
        return pd.concat([split.train, split.selection], ignore_index=True)
    return split.train


# --------------------------------------------------------------------------- fastText

def fasttext_line(text: str) -> str:
    """The text as fastText reads it: lowercased, tokens joined by single spaces (one line)."""
    return " ".join(TOKEN.findall(text.lower()))


def fasttext_missing() -> str | None:
    """Why fastText cannot be measured here, or None when it can."""
    try:
        import fasttext  # noqa: F401
    except ImportError:
        return (f"fastText not measured: the `fasttext` module ({FASTTEXT_PACKAGE}) is not "
                "installed; `make bench` installs it from requirements-bench.lock")
    return None


def train_fasttext(split, settings) -> tuple[Any, float]:
    import fasttext

    rows = learned_rows(split, settings)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.txt"
        with path.open("w", encoding="utf-8") as out:
            for text, label in zip(texts_of(rows), rows["label"].to_numpy(), strict=True):
                out.write(f"{POSITIVE if label == 1 else NEGATIVE} {fasttext_line(text)}\n")
        model = fasttext.train_supervised(input=str(path), verbose=0,
                                          thread=len(os.sched_getaffinity(0)),
                                          **FASTTEXT_OPTIONS)
    return model, time.perf_counter() - started


def score_fasttext(model, texts: np.ndarray) -> np.ndarray:
    labels, probabilities = model.predict([fasttext_line(t) for t in texts], k=1)
    top = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    positive = np.fromiter((found[0] == POSITIVE for found in labels), dtype=bool,
                           count=len(labels))
    return np.where(positive, top, 1.0 - top)


def fasttext_contender() -> Contender:
    options = ", ".join(f"{k}={v}" for k, v in FASTTEXT_OPTIONS.items())
    return Contender(name="fastText `train_supervised` (word bigrams)", kind="peer",
                     description=f"{FASTTEXT_PACKAGE}, {options}; Python tokenization "
                                 "(lowercase, word and punctuation runs) counted",
                     train=train_fasttext, score=score_fasttext)


# --------------------------------------------------------------------------- scikit-learn

def sklearn_contender(name: str, c: float, **vectorizer: Any) -> Contender:
    def train(split, settings) -> tuple[Any, float]:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        rows = learned_rows(split, settings)
        pipeline = make_pipeline(TfidfVectorizer(sublinear_tf=True, **vectorizer),
                                 LogisticRegression(C=c, max_iter=1000))
        started = time.perf_counter()
        pipeline.fit(texts_of(rows), rows["label"].to_numpy())
        return pipeline, time.perf_counter() - started

    options = ", ".join(f"{k}={v!r}" for k, v in vectorizer.items())
    return Contender(name=name, kind="peer",
                     description=f"TfidfVectorizer(sublinear_tf=True, {options}) + "
                                 f"LogisticRegression(C={c:g}, max_iter=1000); `predict_proba`",
                     train=train, score=lambda model, texts: model.predict_proba(texts)[:, 1])


def sklearn_missing() -> str | None:
    """Why scikit-learn cannot be measured here, or None when it can."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return ("scikit-learn not measured: the `sklearn` module (scikit-learn) is not "
                "installed; `make bench` installs it from requirements-bench.lock")
    return None


def sklearn_contenders(language: str) -> list[Contender]:
    c = LANGUAGES[language]["sklearn_c"]
    found = [sklearn_contender(f"scikit-learn word 1-2 gram tf-idf + LogisticRegression(C={c:g})",
                               c, analyzer="word", ngram_range=(1, 2), min_df=2)]
    if LANGUAGES[language]["char_peer"]:
        found.append(sklearn_contender(
            f"scikit-learn char_wb 1-4 gram tf-idf (500k) + LogisticRegression(C={c:g})",
            c, analyzer="char_wb", ngram_range=(1, 4), max_features=500_000))
    return found


def contenders(language: str, settings) -> tuple[list[Contender], list[dict]]:
    """reviewflow and the peers to measure for ``language``, and a row for each peer
    that cannot be measured here (with its reason)."""
    found, absent = [reviewflow_contender(settings)], []
    for missing, peers in ((fasttext_missing, [fasttext_contender()]),
                           (sklearn_missing, sklearn_contenders(language))):
        if (reason := missing()) is None:
            found += peers
        else:
            absent += [{"model": peer.name, "kind": "peer", "error": reason} for peer in peers]
    return found, absent


# --------------------------------------------------------------------------- measuring

def load_language(language: str, rows: int | None) -> pd.DataFrame:
    """review_id, text, label, group (movie_id) of the language's file; its first ``rows``."""
    spec = LANGUAGES[language]
    if not spec["source"].exists():
        raise FileNotFoundError(f"{spec['source']} not found: this section needs the shared "
                                "data beside the project root (../shared/data)")
    frame = pd.read_parquet(spec["source"], columns=[*spec["columns"], "label"])
    frame = frame.rename(columns=spec["columns"])[["review_id", "text", "label", "group"]]
    return (frame.iloc[:rows] if rows else frame).reset_index(drop=True)


def measure_language(name: str, frame: pd.DataFrame, chosen: list[Contender],
                     absent: list[dict], settings, rounds: int = SCORING_ROUNDS) -> dict:
    """Train each of ``chosen`` (reviewflow first) on ``frame``'s split, its accuracy on
    the gate part, then scoring speed on the same texts in interleaved rounds."""
    from tasks.model.decision import predicted_labels
    from tasks.training.split import split_labeled

    split = split_labeled(frame, settings.validation_fraction, settings.selection_share)
    if split.gate.empty or split.selection.empty:
        raise ValueError(f"{name}: the split of {len(frame):,} reviews left no gate or no "
                         "selection rows (too few movies); measure on more reviews")
    gate_texts, gate_labels = texts_of(split.gate), split.gate["label"].to_numpy()
    speed_texts = texts_of(frame.iloc[:SPEED_ROWS])
    rows, scorers = [], {}
    for contender in chosen:
        log(f"peers: {name}: training {contender.name} on {len(learned_rows(split, settings)):,}"
            " rows")
        model, seconds = contender.train(split, settings)
        accuracy = float(np.mean(predicted_labels(contender.score(model, gate_texts))
                                 == gate_labels))
        contender.score(model, speed_texts[:1024])  # warm-up (tracing, caches)
        scorers[contender.name] = functools.partial(contender.score, model)
        rows.append({"model": contender.name, "kind": contender.kind,
                     "description": contender.description, "accuracy": round(accuracy, 4),
                     "training_seconds": round(seconds, 1)})
        log(f"peers: {name}: {contender.name}: accuracy {accuracy:.4f}, {seconds:.1f} s")
    log(f"peers: {name}: scoring {len(speed_texts):,} texts, {rounds} interleaved rounds")
    seconds, loads = interleaved_seconds(scorers, speed_texts, rounds)
    for row in rows:
        row["scoring_seconds_rounds"] = [round(s, 3) for s in seconds[row["model"]]]
        row["reviews_per_second"] = rate(len(speed_texts), statistics.median(seconds[row["model"]]))
    add_ratios(rows)
    return {"language": name, "reviews": len(frame), "split_by": split.split_by,
            "parts": {"train": len(split.train), "selection": len(split.selection),
                      "gate": len(split.gate)},
            "gate_movies": split.groups["gate"],
            "peers_learned_from": len(learned_rows(split, settings)),
            "speed_rows": len(speed_texts), "rounds": rounds,
            "load_average_after_rounds": [round(x, 2) for x in loads],
            "results": rows + absent}


def add_ratios(rows: list[dict]) -> None:
    """Each row's accuracy, training seconds and reviews/s over reviewflow's (the first row)."""
    base = rows[0]
    for row in rows:
        for key in ("accuracy", "training_seconds", "reviews_per_second"):
            row[f"{key}_ratio"] = (round(row[key] / base[key], 3) if base[key] else None)


def measured(figures: dict) -> tuple[dict, list[dict]]:
    """reviewflow's row and the peers' rows that were measured."""
    rows = [r for r in figures["results"] if "error" not in r]
    return rows[0], [r for r in rows if r["kind"] == "peer"]


def peer_targets(languages: list[dict]) -> list[dict]:
    """The two targets, from every language's figures: reviewflow's accuracy minus the best
    peer's (points, worst language), and its reviews/s over the fastest peer's (worst
    language)."""
    margins, speeds, missing = [], [], []
    for figures in languages:
        product, peers = measured(figures)
        missing += [r["model"].split()[0] for r in figures["results"] if "error" in r]
        if peers:
            margins.append(100 * (product["accuracy"] - max(p["accuracy"] for p in peers)))
            speeds.append(product["reviews_per_second"]
                          / max(p["reviews_per_second"] for p in peers))
    where = ("in both languages" if len(languages) == 2 else
             "in " + " and ".join(f["language"] for f in languages) + " only")
    note = f" ({', '.join(sorted(set(missing)))} not measured)" if missing else ""
    return [
        target(f"reviewflow at least as accurate as every peer, {where}{note}",
               round(min(margins), 2) if margins else None, 0, True, "points"),
        target(f"scoring reviews/s at least {PEER_SPEED_RATIO} times the fastest peer's, "
               f"{where}{note}", round(min(speeds), 3) if speeds else None,
               PEER_SPEED_RATIO, True, "x"),
    ]


def run(bench: Bench) -> dict:
    """Both languages whose data is here (English always: the runner checks it)."""
    from tasks.settings import Settings

    settings = Settings()
    languages = []
    for language, spec in LANGUAGES.items():
        if not spec["source"].exists():
            log(f"peers: {spec['name']}: not run, {spec['source']} is absent")
            continue
        frame = load_language(language, bench.sizes.sample_rows)
        chosen, absent = contenders(language, settings)
        figures = measure_language(spec["name"], frame, chosen, absent, settings)
        log(f"peers: {json.dumps(figures)}")
        languages.append(figures)
    bench.peers = {"languages": languages, "quick": bench.quick}
    return {**bench.peers, "targets": peer_targets(languages)}


def render(data: dict) -> list[str]:
    lines = ["Each language's reviews split as `reviewflow retrain` splits them (by movie); "
             "accuracy on the gate part, reviews of movies no model learned from. Peers learn "
             "from the rows reviewflow's final model learned from. Scoring: the same raw texts "
             "for every model, tokenization included, after a warm-up, in interleaved rounds "
             "(A B C A B C …); reviews/s of the median round. Ratios are to reviewflow's row. "
             "fastText tokenizes in Python: lowercase, runs of word characters and runs of "
             "other non-space characters.", ""]
    for figures in data["languages"]:
        parts = figures["parts"]
        loads = ", ".join(f"{x:.2f}" for x in figures["load_average_after_rounds"])
        by = {"group": "movie_id"}.get(figures["split_by"], figures["split_by"])
        lines += [f"**{figures['language']}**: {figures['reviews']:,} reviews, split by "
                  f"{by}: {parts['train']:,} train, {parts['selection']:,} "
                  f"selection, {parts['gate']:,} gate ({figures['gate_movies']:,} movies); peers"
                  f" learned from {figures['peers_learned_from']:,} rows. Scoring speed on "
                  f"{figures['speed_rows']:,} texts, {figures['rounds']} rounds; load average "
                  f"(1 min) after each round: {loads}.", ""]
        lines += md_table(["model", "accuracy", "x reviewflow", "training s", "x reviewflow",
                           "scoring reviews/s", "x reviewflow"],
                          [[r["model"], f"{r['accuracy']:.4f}", r.get("accuracy_ratio"),
                            r.get("training_seconds"), r.get("training_seconds_ratio"),
                            r.get("reviews_per_second"), r.get("reviews_per_second_ratio")]
                           if "error" not in r else [r["model"], r["error"], None, None, None,
                                                     None, None]
                           for r in figures["results"]])
        lines.append("")
    lines += ["Models: " + "; ".join(
        dict.fromkeys(f"{r['model']}: {r['description']}"
                      for f in data["languages"] for r in f["results"] if "description" in r))
              + ".", ""]
    return lines + render_targets(data["targets"])


def main(argv: list[str]) -> None:
    from tasks.settings import Settings

    quick = "--quick" in argv
    settings = Settings()
    for language in [a for a in argv if a in LANGUAGES] or list(LANGUAGES):
        frame = load_language(language, QUICK.sample_rows if quick else None)
        chosen, absent = contenders(language, settings)
        print(json.dumps(measure_language(LANGUAGES[language]["name"], frame, chosen, absent,
                                          settings)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Section 7, ``profile``: where a scoring run spends its time, the per-file work of
``score-reviews`` stage by stage, and the slowest stage.

Runs the function the flow's ``score-shard`` task runs, ``tasks.scoring.shard.score_shard``,
on one whole file (the run's IMDB texts as one Parquet file, after a warm-up), with a
``StageClock`` that times its stages, then publishes its parts as the commit does;
without Prefect, the ledger or the archive move:

- ``hash``: the SHA-256 of the file (the ledger key);
- ``read``: ``iter_review_batches`` producing normalized Arrow batches;
- ``validate``: ``ReviewValidator.validate`` (the Great Expectations suite and the
  uniqueness check across the file);
- ``score``: ``score_batch`` (the model's prediction and the output table);
- ``monitor``: counting the drift signals (``tasks.monitoring.observe_batch``);
- ``write``: streaming the scored and rejected rows to staged Parquet parts and
  publishing them.

``model_stages`` profiles the model's own prediction the same way, per 1,000 reviews:
turning the texts into a tensor, the standardization, the n-gram split, the vocabulary
lookup (with the padding of each batch), the classifier, each timed as the difference
between graph functions that stop after it (interleaved rounds, the fastest kept).

``profile_scoring`` returns the seconds per stage; ``hot_functions`` runs the same work
under cProfile and returns the functions with the most time of their own. Run it on any
file and model with::

    python -m benchmarks.sections.profile FILE MODEL.keras [--cprofile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import PROJECT, WORK, Bench, fresh_dir, log, md_table, write_inbox_file

TITLE = "Profile of the scoring path"
NEEDS_SHARED_DATA = True
STAGES = ("hash", "read", "validate", "score", "monitor", "write")


def profile_scoring(path: Path, model, settings, out_dir: Path) -> dict:
    """Score ``path`` stage by stage as the flow does; seconds per stage and the slowest.

    ``model`` is a ``tasks.scoring.workers.ModelRef`` (loaded once per process, as on a worker),
    ``settings`` a ``tasks.settings.Settings`` (batch sizes, column names, the suite);
    outputs go under ``out_dir``.
    """
    from tasks.scoring.planning import Shard
    from tasks.scoring.shard import ScoringJob, StageClock, Worker, score_shard
    from tasks.storage.local import file_sha256, publish

    job = ScoringJob.from_settings(settings, model, None, datetime.now(UTC),
                                   out_dir / "scored", out_dir / "rejected")
    # The model and the validator as a worker has them before its first file (the flow
    # loads them before any file): their cost is start-up's, not the file's.
    loading = time.perf_counter()
    Worker(job)
    load_seconds = time.perf_counter() - loading
    clock = StageClock()
    seconds = dict.fromkeys(STAGES, 0.0)
    started = time.perf_counter()
    sha256 = file_sha256(path)
    seconds["hash"] = time.perf_counter() - started
    result = score_shard(path, sha256, Shard(), job, clock)
    if result.unreadable:
        raise ValueError(f"{path} cannot be read: {result.unreadable}")
    with clock.stage("write"):
        for part in (result.scored_part, result.rejected_part):
            if part is not None:
                publish(*part)
    seconds.update(clock.seconds)
    total = time.perf_counter() - started
    slowest = max(seconds, key=seconds.get)
    rows = result.rows_read
    return {
        "rows": rows, "rows_scored": result.rows_scored, "rows_rejected": result.rows_quarantined,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "share": {k: round(v / total, 3) if total else 0.0 for k, v in seconds.items()},
        "total_seconds": round(total, 3),
        "other_seconds": round(max(total - sum(seconds.values()), 0.0), 3),
        "load_seconds": round(load_seconds, 3),
        "reviews_per_second": round(rows / total) if total else 0,
        "slowest_stage": slowest,
    }


MODEL_STAGES = ("to tensor", "standardize", "split into n-grams",
                "vocabulary lookup and padding", "classifier")
# The stages of a word n-gram model's batch of words only, whose ids are made from
# integers (tasks.model.ngram_keys), as predict_scores makes them.
KEYED_STAGES = ("to tensor", "unspaced-script check", "standardize", "split into numbered words",
                "n-gram keys, lookup and padding", "classifier")


def model_stages(model, texts, batch_size: int, rounds: int = 3) -> dict:
    """Milliseconds per 1,000 reviews of each stage of ``model``'s prediction
    (``KEYED_STAGES`` for a word n-gram model whose ids are made from integers, else
    ``MODEL_STAGES``).

    Each prefix of the prediction (standardize; standardize and split; ... the whole
    serving function) is traced as a graph function over the same batches (the slices
    ``predict_scores`` makes); a stage's time is its prefix's less the one before.
    Empty for a model without a "vectorizer" layer whose standardization and split are
    callables.
    """
    from tasks.model.backend import tf
    from tasks.model.ngram_keys import word_ngram_ids
    from tasks.model.serving import KEYED_FROM_ROWS, serving_function, slice_order

    texts = texts[slice_order(texts)]  # sliced as predict_scores slices them
    try:
        vectorizer = model.get_layer("vectorizer")
    except ValueError:
        return {}
    config = vectorizer.get_config()
    standardize, split = config.get("standardize"), config.get("split")
    if not (callable(standardize) and callable(split)):
        return {}
    signature = [tf.TensorSpec([None], tf.string)]
    keyed = word_ngram_ids(vectorizer)
    if keyed is None:
        names = MODEL_STAGES
        prefixes = {
            "standardize": lambda t: standardize(t),
            "split into n-grams": lambda t: split(standardize(t)),
            "vocabulary lookup and padding": lambda t: vectorizer(t),
            "classifier": lambda t: model(t, training=False),
        }
    else:
        names = KEYED_STAGES

        def numbered(t):
            return keyed.words_only(t), keyed.word_numbers.lookup(
                tf.strings.split(keyed.standardize(t)).flat_values)

        prefixes = {
            "unspaced-script check": lambda t: keyed.words_only(t),
            "standardize": lambda t: (keyed.words_only(t), keyed.standardize(t)),
            "split into numbered words": numbered,
            "n-gram keys, lookup and padding": lambda t: (keyed.words_only(t), keyed.ids(t)),
            # The keyed function, even for a model not yet asked for KEYED_FROM_ROWS
            # scores in this process (the stages above are that path's).
            "classifier": serving_function(model, KEYED_FROM_ROWS),
        }
    functions = {name: tf.function(f, input_signature=signature, autograph=False)
                 for name, f in prefixes.items()}

    def timed(function) -> float:
        started = time.perf_counter()
        for start in range(0, len(texts), batch_size):
            batch = tf.constant(texts[start:start + batch_size], dtype=tf.string)
            if function is not None:
                function(batch)
        return time.perf_counter() - started

    for function in functions.values():
        function(tf.constant(texts[:batch_size], dtype=tf.string))  # tracing
    best = dict.fromkeys(["to tensor", *functions], float("inf"))
    for _ in range(rounds):
        best["to tensor"] = min(best["to tensor"], timed(None))
        for name, function in functions.items():
            best[name] = min(best[name], timed(function))
    cumulative = [best[name] for name in names]
    own = [cumulative[0]] + [max(b - a, 0.0) for a, b in zip(cumulative, cumulative[1:])]
    per_1k = {name: round(1e6 * seconds / len(texts), 1) for name, seconds in zip(names, own)}
    return {"rows": len(texts), "batch_size": batch_size, "ms_per_1000": per_1k,
            "path": "the model's layers" if keyed is None else "word n-gram ids from integers",
            "total_ms_per_1000": round(1e6 * cumulative[-1] / len(texts), 1)}


def hot_functions(path: Path, model, settings, out_dir: Path, limit: int = 12) -> list[dict]:
    """The ``limit`` functions with the most own time while scoring ``path`` under cProfile."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        profile_scoring(path, model, settings, out_dir)
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
        rows.append({"function": f"{_short(filename)}:{line}({name})", "calls": calls,
                     "own_seconds": own, "cumulative_seconds": cumulative})
    rows.sort(key=lambda r: r["own_seconds"], reverse=True)
    return [{**r, "own_seconds": round(r["own_seconds"], 3),
             "cumulative_seconds": round(r["cumulative_seconds"], 3)} for r in rows[:limit]]


def _short(filename: str) -> str:
    """A path shortened to what follows site-packages or the project root."""
    for marker in ("site-packages/", f"{PROJECT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def run(bench: Bench) -> dict:
    """Seconds per stage of the flow's per-file work on the same texts; the slowest stage."""
    from tasks.settings import Settings

    settings, reviews = Settings(), bench.reviews()
    model = bench.champion_ref()
    work = fresh_dir(WORK / "profile")
    path = write_inbox_file(reviews, work / "imdb-unlabeled.parquet")
    # Warm-up: loading the model traces it, the first validation sets up GX.
    warm = write_inbox_file(reviews.head(1_000), work / "warm-up.parquet")
    profile_scoring(warm, model, settings, work / "warm-out")
    log(f"profile: stages of the per-file work on {len(reviews):,} reviews")
    result = profile_scoring(path, model, settings, work / "out")
    log(f"profile: {json.dumps(result['seconds'])}; slowest stage: {result['slowest_stage']}")
    from benchmarks.common import texts_of

    log("profile: the model's own prediction, stage by stage")
    result["model_stages"] = model_stages(bench.load_champion_model(), texts_of(reviews),
                                          settings.predict_batch_size)
    log("profile: the same under cProfile")
    result["hot_functions"] = hot_functions(path, model, settings, work / "cprofile-out")
    return result


def render(data: dict) -> list[str]:
    lines = [f"The per-file work of `score-reviews` (`tasks.scoring.shard.score_shard`, the "
             f"function its `score-shard` task runs, then the parts published; without the "
             f"ledger and the archive move) on the same {data['rows']:,} reviews in one Parquet file, model "
             "and validator warmed up, timed per stage (`benchmarks/sections/profile.py`).", ""]
    lines += md_table(["stage", "seconds", "share"],
                      [[stage, data["seconds"][stage], f"{data['share'][stage]:.0%}"]
                       for stage in data["seconds"]]
                      + [["total", data["total_seconds"], "100%"]])
    lines += ["", f"**Slowest stage: {data['slowest_stage']}** "
                  f"({data['share'][data['slowest_stage']]:.0%} of the file's time); "
                  f"{data['reviews_per_second']:,} reviews/s over the stages."]
    stages = data.get("model_stages")
    if stages:
        path = stages.get("path", "the model's layers")
        lines += ["", f"The model's own prediction (bare `predict_scores` of the champion, "
                      f"{path}), stage by stage on the same reviews, in the slices "
                      f"`predict_scores` makes, batch {stages['batch_size']}: each "
                      "stage's time is that of a graph function stopping after it less the one "
                      "before (fastest of 3 interleaved rounds).", ""]
        total = stages["total_ms_per_1000"]
        lines += md_table(["stage", "ms per 1,000 reviews", "share"],
                          [[name, ms, f"{ms / total:.0%}" if total else None]
                           for name, ms in stages["ms_per_1000"].items()]
                          + [["total", total, "100%"]])
    if data.get("hot_functions"):
        lines += ["", "Functions with the most own time under cProfile (TensorFlow's work shows "
                      "as the Python call that waits for it):", ""]
        lines += md_table(["function", "calls", "own s", "cumulative s"],
                          [[f["function"], f["calls"], f["own_seconds"], f["cumulative_seconds"]]
                           for f in data["hot_functions"][:8]])
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path, help="a review file (CSV, JSONL, Parquet, ...)")
    parser.add_argument("model", type=Path, help="a saved model.keras")
    parser.add_argument("--cprofile", action="store_true", help="also list the hot functions")
    args = parser.parse_args(argv)

    from tasks.scoring.workers import ModelRef
    from tasks.settings import Settings

    settings, model = Settings(), ModelRef("profiled", args.model.resolve())
    with tempfile.TemporaryDirectory() as out:
        result = profile_scoring(args.file, model, settings, Path(out))
        if args.cprofile:
            result["hot_functions"] = hot_functions(args.file, model, settings,
                                                    Path(out) / "cprofile")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

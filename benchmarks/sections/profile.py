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
    from tasks.scoring.shard import ScoringJob, StageClock, score_shard
    from tasks.storage.local import file_sha256, publish

    job = ScoringJob.from_settings(settings, model, None, datetime.now(UTC),
                                   out_dir / "scored", out_dir / "rejected")
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
        "reviews_per_second": round(rows / total) if total else 0,
        "slowest_stage": slowest,
    }


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

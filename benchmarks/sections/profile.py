"""Section 7, ``profile``: seconds per stage of the real shard-scoring function on the
same texts (``benchmarks/profile_scoring.py``); the slowest stage."""

from __future__ import annotations

import json

from benchmarks.common import WORK, Bench, fresh_dir, log, md_table, write_inbox_file

TITLE = "Profile of the scoring path"

def run(bench: Bench) -> dict:
    """Seconds per stage of the flow's per-file work on the same texts; the slowest stage."""
    from benchmarks.profile_scoring import hot_functions, profile_scoring
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
             "and validator warmed up, timed per stage (`benchmarks/profile_scoring.py`).", ""]
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

"""Where a scoring run spends its time: the per-file work of ``score-reviews``, stage by stage.

Runs the function the flow's ``score-shard`` task runs, ``tasks.scoring.shard.score_shard``,
on one whole file, with a ``StageClock`` that times its stages, then publishes its parts
as the commit does; without Prefect, the ledger or the archive move:

- ``hash``: the SHA-256 of the file (the ledger key);
- ``read``: ``iter_review_batches`` producing normalized Arrow batches;
- ``validate``: ``ReviewValidator.validate`` (the Great Expectations suite and the
  uniqueness check across the file);
- ``score``: ``score_batch`` (the model's prediction and the output table);
- ``monitor``: counting the drift signals (``tasks.monitoring.observe_batch``);
- ``write``: streaming the scored and rejected rows to staged Parquet parts and
  publishing them.

``profile_scoring`` returns the seconds per stage; ``hot_functions`` runs the same work
under cProfile and returns the functions with the most time of their own. Run it on its
own with::

    python -m benchmarks.profile_scoring FILE MODEL.keras [--cprofile]
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
    for marker in ("site-packages/", "/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


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

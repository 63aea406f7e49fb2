"""Where a scoring run spends its time: the per-file work of ``score-reviews``, stage by stage.

Repeats what ``flows.score_reviews._score_locked`` does for one file, without Prefect,
the ledger or the archive move, and times each stage:

- ``hash``: the SHA-256 of the file (the ledger key);
- ``read``: ``iter_review_batches`` producing normalized Arrow batches;
- ``validate``: ``ReviewValidator.validate`` (the Great Expectations suite and the
  uniqueness check across the file);
- ``score``: ``score_batch`` (the model's prediction and the output table);
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

STAGES = ("hash", "read", "validate", "score", "write")


def profile_scoring(path: Path, model, model_version: str, settings, validator,
                    out_dir: Path) -> dict:
    """Score ``path`` stage by stage like the flow does; seconds per stage and the slowest.

    ``settings`` is a ``tasks.settings.Settings`` (batch sizes, column names),
    ``validator`` a built ``ReviewValidator``; outputs go under ``out_dir``.
    """
    from tasks.readers import iter_review_batches
    from tasks.scoring import SCORED_SCHEMA, score_batch
    from tasks.storage import StagedParquet, file_sha256
    from tasks.validation import QUARANTINE_SCHEMA, with_source

    seconds = dict.fromkeys(STAGES, 0.0)
    rows = scored_rows = rejected_rows = 0
    now = datetime.now(UTC)
    started = time.perf_counter()

    clock = time.perf_counter()
    sha256 = file_sha256(path)
    seconds["hash"] += time.perf_counter() - clock

    scored = StagedParquet(out_dir / "scored" / f"part-{sha256[:16]}.parquet", SCORED_SCHEMA)
    rejected = StagedParquet(out_dir / "rejected" / f"part-{sha256[:16]}.parquet",
                             QUARANTINE_SCHEMA)
    seen_ids: dict[str, set[str]] = {}
    batches = iter_review_batches(path, settings.columns, settings.read_batch_rows,
                                  settings.max_decompressed_bytes)
    try:
        while True:
            clock = time.perf_counter()
            batch = next(batches, None)
            seconds["read"] += time.perf_counter() - clock
            if batch is None:
                break
            clock = time.perf_counter()
            checked = validator.validate(batch, seen_ids, source_name=path.name)
            seconds["validate"] += time.perf_counter() - clock
            clock = time.perf_counter()
            output = score_batch(model, checked.valid, settings.predict_batch_size, model_version,
                                 path.name, sha256, now)
            seconds["score"] += time.perf_counter() - clock
            clock = time.perf_counter()
            scored.write(output)
            rejected.write(with_source(checked.rejected, path.name, sha256, now))
            seconds["write"] += time.perf_counter() - clock
            rows += batch.num_rows
            scored_rows += output.num_rows
            rejected_rows += checked.rejected.num_rows
        clock = time.perf_counter()
        scored.commit()
        rejected.commit()
        seconds["write"] += time.perf_counter() - clock
    except BaseException:
        scored.abort()
        rejected.abort()
        raise
    total = time.perf_counter() - started
    slowest = max(seconds, key=seconds.get)
    return {
        "rows": rows, "rows_scored": scored_rows, "rows_rejected": rejected_rows,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "share": {k: round(v / total, 3) if total else 0.0 for k, v in seconds.items()},
        "total_seconds": round(total, 3),
        "reviews_per_second": round(rows / total) if total else 0,
        "slowest_stage": slowest,
    }


def hot_functions(path: Path, model, model_version: str, settings, validator, out_dir: Path,
                  limit: int = 12) -> list[dict]:
    """The ``limit`` functions with the most own time while scoring ``path`` under cProfile."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        profile_scoring(path, model, model_version, settings, validator, out_dir)
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

    from flows.common import build_validator
    from tasks.model import load_model
    from tasks.settings import Settings

    settings = Settings()
    model, validator = load_model(args.model), build_validator(settings)
    with tempfile.TemporaryDirectory() as out:
        result = profile_scoring(args.file, model, "profiled", settings, validator, Path(out))
        if args.cprofile:
            result["hot_functions"] = hot_functions(args.file, model, "profiled", settings,
                                                    validator, Path(out) / "cprofile")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

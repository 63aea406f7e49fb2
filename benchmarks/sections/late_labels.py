"""Section 13, ``late_labels``: what the production accuracy's join costs, 1,000,000
scored rows and 100,000 late labels.

A data root is written here: ``scored/`` holds 20 parts of 50,000 rows (the four columns
the join reads, and the rest of the scored schema), scored by two model versions over
eight weeks; ``labeled/`` holds one CSV of 100,000 labeled reviews of about 1,300
characters (IMDB's mean; one in ten in Korean), 90,000 of them among the scored ids;
each version has a metrics.json and profile.json with its gate accuracy. Then a fresh
``reviewflow monitor --json`` process runs the join on it (no Prefect; the
``measure-accuracy`` flow runs the same join): its wall time and peak RSS (``ru_maxrss``),
and from its JSON the join's own seconds, the rows it read and matched and each
version's figures. Needs no shared data. ``--quick``: 100,000 scored rows and 10,000
labels. Alone: ``python -m benchmarks.sections.late_labels [--quick]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import (
    WORK,
    Bench,
    log,
    md_table,
    reviewflow_argv,
    run_measured,
    subprocess_env,
)
from tasks.layout import METRICS_FILE, PROFILE_FILE, VERSIONS_FOLDER, DataLayout

TITLE = "13. Production accuracy: late labels joined to scored rows"
NEEDS_SHARED_DATA = False
FULL = {"scored_rows": 1_000_000, "labels": 100_000}
QUICK = {"scored_rows": 100_000, "labels": 10_000}
PARTS = 20
WEEKS = 8
MATCHED_SHARE = 0.9
VERSIONS = ("20250101T000000Z-aaaaaa", "20250301T000000Z-bbbbbb")
ENGLISH = ("The film opens slowly, but the cast carries it; the second half is warm, funny and "
           "well paced, and the ending earns its tears. ")
KOREAN = "배우들의 연기가 정말 좋았고 이야기도 탄탄해서 끝까지 재미있게 봤습니다. "
REVIEW_CHARS = 1_300


def write_root(root: Path, scored_rows: int, labels: int) -> None:
    """The data root the join reads: scored/, labeled/ and the versions' records."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.scoring.rows import SCORED_SCHEMA

    layout = DataLayout(root=root).ensure()
    rng = np.random.default_rng(13)
    start = datetime(2025, 1, 6, tzinfo=UTC)
    per_part = scored_rows // PARTS
    predicted = rng.integers(0, 2, scored_rows, dtype=np.int8)
    for part in range(PARTS):
        rows = np.arange(part * per_part, (part + 1) * per_part)
        week = part * WEEKS // PARTS
        scored_at = start + timedelta(weeks=week, hours=int(part))
        version = VERSIONS[0] if week < WEEKS // 2 else VERSIONS[1]
        folder = layout.scored_partition((scored_at).strftime("%Y-%m-%d"))
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_arrays([
            pa.array([f"r{i}" for i in rows], pa.string()),
            pa.array(np.where(predicted[rows] == 1, 0.9, 0.1), pa.float32()),
            pa.array(predicted[rows], pa.int8()), pa.nulls(len(rows), pa.int8()),
            pa.repeat(pa.scalar(version), len(rows)), pa.repeat(pa.scalar(f"f{part}.csv"), len(rows)),
            pa.array(rows - part * per_part + 1, pa.int64()),
            pa.repeat(pa.scalar(f"{part:064x}"), len(rows)),
            pa.repeat(pa.scalar(scored_at, pa.timestamp("us", tz="UTC")), len(rows))],
            schema=SCORED_SCHEMA)
        pq.write_table(table, folder / f"part-{part:016x}-{version}.parquet")
    chosen = random.Random(13)
    matched_ids = chosen.sample(range(scored_rows), int(labels * MATCHED_SHARE))
    with open(layout.labeled / "verdicts.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["review_id", "text", "label"])
        for index in range(labels):
            matched = index < len(matched_ids)
            number = matched_ids[index] if matched else scored_rows + index
            base = KOREAN if index % 10 == 0 else ENGLISH
            text = (f"Review {index}. " + base * (REVIEW_CHARS // len(base) + 1))[:REVIEW_CHARS]
            truth = int(predicted[number]) if matched and chosen.random() < 0.86 else \
                chosen.randrange(2)
            writer.writerow([f"r{number}", text, truth])
    for version in VERSIONS:
        folder = layout.models / VERSIONS_FOLDER / version
        folder.mkdir(parents=True)
        (folder / METRICS_FILE).write_text(json.dumps(
            {"version": version, "validation": {"accuracy": 0.87, "rows": 5_000}}))
        (folder / PROFILE_FILE).write_text(json.dumps(
            {"by_script": {"latin": {"train_rows": 40_000, "accuracy": 0.88},
                           "hangul": {"train_rows": 5_000, "accuracy": 0.84}}}))


def run(bench: Bench) -> dict:
    sizes = QUICK if bench.quick else FULL
    work = WORK / "late_labels"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    root = work / "data"
    log(f"late_labels: writing {sizes['scored_rows']:,} scored rows and {sizes['labels']:,} "
        "late labels")
    write_root(root, **sizes)
    log("late_labels: reviewflow monitor --json")
    measured = run_measured(reviewflow_argv("monitor", "--json", "--data-dir", str(root)),
                            subprocess_env(), work / "monitor.log")
    if measured["returncode"] != 0:
        raise RuntimeError(f"reviewflow monitor failed: {measured['output'][-2000:]}")
    document = json.loads(measured["stdout"])
    late = document["late_labels"]
    log(f"late_labels: join {late['seconds']} s, command {measured['wall_seconds']} s, "
        f"peak {measured['peak_rss_mib']} MiB")
    return {**sizes, "join_seconds": late["seconds"], "wall_seconds": measured["wall_seconds"],
            "peak_rss_mib": measured["peak_rss_mib"],
            "tree_peak_rss_mib": measured["tree_peak_rss_mib"],
            "scored_rows_read": late["scored_rows_read"],
            "labeled_reviews": late["labeled_reviews"],
            "matched_reviews": late["matched_reviews"], "matched_scores": late["matched_scores"],
            "versions": [{key: found[key] for key in ("model_version", "rows", "accuracy",
                                                      "gate_accuracy")}
                         | {"weeks": len(found["weeks"])} for found in document["versions"]]}


def render(data: dict) -> list[str]:
    lines = [f"`reviewflow monitor --json` on a data root of {data['scored_rows']:,} scored rows "
             f"(20 parts, two model versions, eight weeks) and {data['labeled_reviews']:,} late "
             "labels in one CSV of reviews of about 1,300 characters (one in ten Korean), "
             f"{data['matched_reviews']:,} of them among the scored ids: the join reads the "
             "labels (every file format's reader), four columns of every scored part, keeps "
             "each version's latest score of each labeled id and counts them per week and main "
             "script. \"Join\" is the join's own time (from the command's JSON); the command "
             "adds Python's start, the registry and the picture.", ""]
    lines += md_table(["scored rows", "late labels", "matched (review, version)", "join s",
                       "command s", "peak RSS MiB"],
                      [[data["scored_rows"], data["labeled_reviews"], data["matched_scores"],
                        data["join_seconds"], data["wall_seconds"], data["peak_rss_mib"]]])
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from benchmarks.common import FULL as FULL_SIZES
    from benchmarks.common import QUICK as QUICK_SIZES

    bench = Bench(quick=args.quick, sizes=QUICK_SIZES if args.quick else FULL_SIZES)
    data = run(bench)
    print("\n".join(render(data)))


if __name__ == "__main__":
    main()

"""Section 8, ``dask``: ``score-reviews`` with the thread runner and with 1 and 2 Dask
worker processes on the same inbox."""

from __future__ import annotations

import contextlib
import os
import shutil
import time

from benchmarks.common import WORK, Bench, fresh_dir, log, md_table, rate, write_inbox_file
from tasks.layout import DataLayout

TITLE = "8. Scaling out: 1 and 2 Dask workers"

NEEDS_SHARED_DATA = True
DASK_FILES = 4  # the reviews are split into this many inbox files


def run(bench: Bench) -> dict:
    """``score-reviews`` on the same inbox with the thread runner, then on a LocalCluster of
    1 and of 2 Dask worker processes (docs/scaling-out.md).

    Each cluster is started here and its workers warmed (TensorFlow, Great Expectations
    and the model loaded, ``tasks.scoring.workers.warm``) before the flow runs against it with
    ``dask_address``, as on a long-lived cluster; start-up is timed apart.
    """
    import pyarrow.parquet as pq
    from distributed import Client, LocalCluster

    from flows.score_reviews import score_reviews
    from tasks.scoring.workers import ModelRef, warm
    from tasks.settings import Settings
    from tasks.training.registry import Registry
    from tasks.validation import load_suite_config

    reviews = bench.reviews()
    champion = bench.champion()
    settings = Settings()
    source = fresh_dir(WORK / "dask-inbox")
    per_file = -(-len(reviews) // DASK_FILES)
    files = [write_inbox_file(reviews.iloc[k * per_file:(k + 1) * per_file],
                              source / f"imdb-part-{k}.parquet") for k in range(DASK_FILES)]
    runs = []
    for runner, workers in (("threads", 1), ("dask", 1), ("dask", 2)):
        data_dir = bench.data_dir_with_champion(f"dask-{runner}-{workers}")
        layout = DataLayout(root=data_dir)
        layout.incoming.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, layout.incoming / path.name)
        label = "threads" if runner == "threads" else f"dask, {workers} worker process(es)"
        log(f"dask: score-reviews ({label}) on {len(reviews):,} reviews in {len(files)} files")
        with contextlib.ExitStack() as stack:
            start_seconds = warm_seconds = None
            address = None
            if runner == "dask":
                started = time.perf_counter()
                cluster = stack.enter_context(LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=":0"))
                client = stack.enter_context(Client(cluster))
                start_seconds = time.perf_counter() - started
                ref = ModelRef(champion["version"],
                               Registry(layout.models.resolve()).model_path(champion["version"]))
                started = time.perf_counter()
                client.run(warm, ref, load_suite_config(settings.suite_path),
                           {"max_text_chars": settings.max_text_chars})
                warm_seconds = time.perf_counter() - started
                address = cluster.scheduler_address
            started = time.perf_counter()
            summary = score_reviews(data_dir=str(data_dir), settle_seconds=0, task_runner=runner,
                                    dask_address=address)
            wall = time.perf_counter() - started
        scored = sum(pq.ParquetFile(p).metadata.num_rows
                     for p in layout.scored.rglob("*.parquet"))
        runs.append({
            "runner": runner, "workers": workers, "rows": len(reviews),
            "rows_scored": summary["rows_scored"], "rows_in_scored_dir": scored,
            "cluster_start_seconds": round(start_seconds, 2) if start_seconds else None,
            "worker_warm_up_seconds": round(warm_seconds, 2) if warm_seconds else None,
            "flow_seconds": round(wall, 2),
            "reviews_per_second_busy": summary["reviews_per_second"],
            "reviews_per_second_flow": rate(summary["rows_scored"], wall),
            "shards": summary["shards"],
            "model_loads_per_worker": sorted(w["model_loads"] for w in summary["workers"].values()),
            "worker_processes": len(summary["workers"]), "device": summary["device"],
        })
        log(f"dask: {runs[-1]['reviews_per_second_busy']:,.0f} reviews/s while scoring, "
            f"{runs[-1]['reviews_per_second_flow']:,.0f} over the flow call ({wall:.1f} s)")
    one, two = runs[1], runs[2]
    speedup = (round(two["reviews_per_second_busy"] / one["reviews_per_second_busy"], 2)
               if one["reviews_per_second_busy"] else None)
    return {"model_version": champion["version"], "architecture": champion["architecture"],
            "files": len(files), "runs": runs, "speedup_2_over_1_workers": speedup,
            "cpu_cores_usable": len(os.sched_getaffinity(0)),
            "all_rows_scored": all(r["rows_scored"] == r["rows_in_scored_dir"] == r["rows"]
                                   for r in runs)}


def render(data: dict) -> list[str]:
    lines = [f"The champion `{data['model_version']}` (`{data['architecture']}`) scoring the same "
             f"{data['runs'][0]['rows']:,} reviews, split into {data['files']} Parquet files, with "
             "`score-reviews` in this process: the default thread runner, then the Dask task "
             "runner against a LocalCluster (one thread per worker process) started and warmed "
             "beforehand (each worker imports TensorFlow and Great Expectations and loads the "
             "model: \"warm-up\"), as a long-lived cluster would be. \"While scoring\" is rows "
             "over the time files were being worked on; \"flow call\" over the whole "
             "`score_reviews` call.", ""]
    lines += md_table(
        ["runner", "worker processes", "shards", "model loads per worker", "cluster start s",
         "warm-up s", "flow call s", "reviews/s while scoring", "reviews/s flow call"],
        [[r["runner"], r["worker_processes"], r["shards"],
          ", ".join(str(n) for n in r["model_loads_per_worker"]), r["cluster_start_seconds"],
          r["worker_warm_up_seconds"], r["flow_seconds"],
          round(r["reviews_per_second_busy"]), round(r["reviews_per_second_flow"])]
         for r in data["runs"]])
    lines += ["", f"2 workers / 1 worker, while scoring: {data['speedup_2_over_1_workers']}x on "
                  f"{data['cpu_cores_usable']} usable cores. TensorFlow already uses every core "
                  "from one worker, so on one machine a second worker gains only what runs on one "
                  "core (reading, validation, writing); across machines, each worker brings its "
                  "own cores or GPU."]
    if not data.get("all_rows_scored", True):
        lines += ["", "WARNING: not every run scored every row once (see results.json)."]
    return lines

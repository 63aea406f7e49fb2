"""Section 2, ``throughput``: bare ``predict_scores`` against the whole ``score-reviews``
path, same texts, same model.

The champion (the default architecture, trained once per run by ``retrain-model``:
``Bench.champion``) scores the 25,000 IMDB texts in memory with ``predict_scores``
(median of 3 after a warm-up), then the same texts as one Parquet file in ``incoming/``
through the ``score-reviews`` flow in this process; the flow's figures are its run
summary. Targets: the whole path at 0.9 of bare or more, and 5,000 reviews/s or more.

Where the file's time goes: the same file scored once more by the function the flow's
task runs, with a ``StageClock`` (``benchmarks.sections.profile.profile_scoring``): each
stage's seconds, per 1,000 reviews, and against the wall time of the file's work.
"""

from __future__ import annotations

import time

from benchmarks.common import (
    WORK,
    Bench,
    fresh_dir,
    log,
    md_table,
    rate,
    render_targets,
    target,
    texts_of,
    write_inbox_file,
)
from tasks.layout import DataLayout

TITLE = "2. Scoring throughput: bare model against the whole `reviewflow score` path"
TARGET_FLOW_RATIO = 0.9        # whole scoring path / bare predict_scores
TARGET_FLOW_RATE = 5_000       # reviews/s through the whole path, default model, 2 CPU cores
NEEDS_SHARED_DATA = True


def run(bench: Bench) -> dict:
    """Bare ``predict_scores`` against the whole ``score-reviews`` path, same texts, same model."""
    import statistics

    from flows.score_reviews import score_reviews
    from tasks.model import compute_device, predict_scores
    from tasks.settings import Settings

    reviews, settings = bench.reviews(), Settings()
    texts, batch = texts_of(reviews), settings.predict_batch_size
    champion = bench.champion()
    model = bench.load_champion_model()
    device = compute_device()
    log(f"throughput: bare predict_scores on {len(texts):,} texts ({device}, batch {batch})")
    predict_scores(model, texts[:batch], batch)  # warm-up (tracing)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        predict_scores(model, texts, batch)
        runs.append(time.perf_counter() - started)
    bare_seconds = statistics.median(runs)
    bare_rate = rate(len(texts), bare_seconds)
    log(f"throughput: bare {bare_rate:,.0f} reviews/s (median of {len(runs)} runs)")

    data_dir = bench.data_dir_with_champion("throughput")
    inbox_file = write_inbox_file(reviews, DataLayout(root=data_dir).incoming
                                  / "imdb-unlabeled.parquet")
    log(f"throughput: score-reviews flow over {inbox_file.name} ({len(texts):,} reviews)")
    started = time.perf_counter()
    summary = score_reviews(data_dir=str(data_dir), settle_seconds=0)
    flow_wall = time.perf_counter() - started
    file_rate = float(summary["reviews_per_second"])
    file_seconds = summary["rows_scored"] / file_rate if file_rate else None
    ratio = round(file_rate / bare_rate, 3) if bare_rate else None
    log(f"throughput: flow {file_rate:,.0f} reviews/s over the file ({ratio} of bare); "
        f"end to end {flow_wall:.1f} s")
    from benchmarks.sections.profile import profile_scoring

    work = fresh_dir(WORK / "throughput-stages")  # the flow archived its copy
    stages = profile_scoring(write_inbox_file(reviews, work / "imdb-unlabeled.parquet"),
                             bench.champion_ref(), settings, work / "out")
    log(f"throughput: stages of the file's work {stages['seconds']}")
    checks = [
        target("whole scoring path / bare predict_scores (default model)", ratio,
               TARGET_FLOW_RATIO, True, "x"),
        target("whole scoring path reviews/s (default model)", file_rate, TARGET_FLOW_RATE, True,
               "reviews/s"),
    ]
    bench.throughput = {
        "model_version": champion["version"], "architecture": champion["architecture"],
        "champion_heldout_accuracy": champion["retrain_summary"]["validation_accuracy"],
        "champion_training_seconds": champion["retrain_summary"]["training_seconds"],
        "retrain_flow_wall_seconds": champion["retrain_wall_seconds"],
        "device": device, "rows": len(texts), "predict_batch_size": batch,
        "bare_seconds_runs": [round(s, 3) for s in runs],
        "bare_seconds": round(bare_seconds, 3), "bare_reviews_per_second": bare_rate,
        "flow_summary": summary,
        "flow_file_seconds": round(file_seconds, 3) if file_seconds else None,
        "flow_file_reviews_per_second": file_rate,
        "flow_wall_seconds": round(flow_wall, 3),
        "flow_wall_reviews_per_second": rate(summary["rows_scored"], flow_wall),
        "ratio_file_to_bare": ratio,
        "ratio_wall_to_bare": round(rate(summary["rows_scored"], flow_wall) / bare_rate, 3)
        if bare_rate else None,
        "all_rows_scored": summary["rows_scored"] == len(texts),
        "stages": stages,
        "targets": checks,
    }
    return bench.throughput


def render(data: dict) -> list[str]:
    rows = [
        ["bare `predict_scores` on the in-memory texts (median of 3, after a warm-up)",
         data["bare_seconds"], round(data["bare_reviews_per_second"]), 1.0],
        ["`score-reviews`: the file's work (hash, read, validate, score, write, commit, archive)",
         data["flow_file_seconds"], round(data["flow_file_reviews_per_second"]),
         data["ratio_file_to_bare"]],
        ["`score-reviews` end to end (flow call: load model, build validator, the file, artifacts)",
         data["flow_wall_seconds"], round(data["flow_wall_reviews_per_second"]),
         data["ratio_wall_to_bare"]],
    ]
    lines = [f"Champion `{data['model_version']}` (architecture `{data['architecture']}`, held-out "
             f"accuracy {data['champion_heldout_accuracy']}, trained by `retrain-model` in "
             f"{data['retrain_flow_wall_seconds']} s wall) scoring the same {data['rows']:,} texts "
             f"on {data['device']}, prediction batch {data['predict_batch_size']}. The flow reads "
             "them from one Parquet file without labels in `incoming/` and writes Parquet to "
             "`scored/`; its model is loaded fresh and its serving function traced at load, before"
             " any file (counted in the end-to-end time, not the file's). The flow ran in this"
             " process, its temporary Prefect API server already started.", ""]
    lines += md_table(["path", "seconds", "reviews/s", "ratio to bare"], rows)
    if data.get("stages"):
        lines += ["", *render_stages(data["stages"])]
    lines += [""] + render_targets(data["targets"])
    if not data.get("all_rows_scored", True):
        lines += ["", f"WARNING: the flow scored {data['flow_summary']['rows_scored']:,} of "
                      f"{data['rows']:,} rows (quarantined {data['flow_summary']['rows_quarantined']:,})."]
    return lines


# Each stage of the file's work: its key in the profile, its name in the table.
STAGE_ROWS = (("hash", "hash (the ledger key)"), ("read", "read"), ("validate", "validate"),
              ("score", "vectorize + predict"), ("monitor", "drift counts"),
              ("write", "write (parts, then publish)"))


def render_stages(stages: dict) -> list[str]:
    """The per-stage table: seconds, per 1,000 reviews, against the file's wall."""
    rows, wall = stages["rows"], stages["total_seconds"]
    table = [[label, stages["seconds"][key],
              round(1e6 * stages["seconds"][key] / rows, 1) if rows else None,
              f"{stages['seconds'][key] / wall:.0%}" if wall else None]
             for key, label in STAGE_ROWS]
    if "other_seconds" in stages:
        other = stages["other_seconds"]
        table.append(["in none of the stages above", other,
                      round(1e6 * other / rows, 1) if rows else None,
                      f"{other / wall:.0%}" if wall else None])
    table.append(["the file's work, wall", wall,
                  round(1e6 * wall / rows, 1) if rows else None, "100%"])
    loaded = (f" The model and the validator were loaded first ({stages['load_seconds']} s, "
              "as the flow does before any file), outside the file's work."
              if "load_seconds" in stages else "")
    return [f"Where the file's time goes: the same {rows:,} reviews scored once more by "
            f"`score_shard` (`benchmarks/sections/profile.py`), stage by stage.{loaded}", "",
            *md_table(["stage", "seconds", "ms per 1,000 reviews", "of the file's wall"],
                      table)]

"""Section 9, ``cli``: command-line latency and many small files (benchmarks/cli_latency.py)."""

from __future__ import annotations

from benchmarks.common import IMDB_PARQUET, WORK, Bench, md_table, target
from tasks.layout import DataLayout

TITLE = "9. Command line: latency, and many small files"
TARGET_CLI_QUICK_SECONDS = 1.0   # models list|promote|rollback
TARGET_CLI_NOTHING_SECONDS = 5.0  # score with nothing to do, no server
TARGET_SMALL_FILES_PER_SECOND = 20.0

def run(bench: Bench) -> dict:
    """Command-line latency and many small files (benchmarks/cli_latency.py)."""
    from benchmarks.cli_latency import measure

    # The small files are scored by a user's kind of champion (default architecture,
    # reference profile, full vocabulary) where the shared IMDB data is there to train it.
    models = (DataLayout(root=bench.champion()["data_dir"]).models if IMDB_PARQUET.exists()
              else None)
    data = measure(WORK / "cli", repeats=2 if bench.quick else 5,
                   small_files=100 if bench.quick else 1000, small_files_models=models)
    quick = max(data[k]["median_seconds"] for k in
                ("models list", "models promote", "models rollback"))
    nothing = max(data[k]["median_seconds"] for k in ("score, nothing ready",
                                                      "score, no champion"))
    data["targets"] = [
        target("CLI: models list/promote/rollback, slowest median", quick,
               TARGET_CLI_QUICK_SECONDS, higher_is_better=False, unit="s"),
        target("CLI: score with nothing to do (empty inbox / no champion), slowest median",
               nothing, TARGET_CLI_NOTHING_SECONDS, higher_is_better=False, unit="s"),
        target("many one-row files: files/s inside the flow",
               data["score, many one-row files"]["files_per_second_in_flow"],
               TARGET_SMALL_FILES_PER_SECOND, higher_is_better=True, unit="files/s"),
    ]
    return data


def render(data: dict) -> list[str]:
    rows = []
    for name, figures in data.items():
        if not isinstance(figures, dict) or "median_seconds" not in figures:
            continue
        rows.append([name, figures["median_seconds"], figures.get("median_flow_seconds", "-"),
                     ", ".join(f"{s:.2f}" for s in figures["runs_seconds"])])
    small = data["score, many one-row files"]
    return (md_table(["command (fresh process, no server)", "median wall s",
                      "median s inside the flow", "runs"], rows)
            + ["", f"{small['files']:,} one-row CSV files in one `reviewflow score`: "
                   f"{small['files_per_second_in_flow']} files/s inside the flow, "
                   f"{small['files_per_second_wall']} files/s wall (process start, imports and "
                   "the temporary Prefect server included), scored by "
                   + _champion_note(small.get("champion")) + ". Median of "
                   f"{data['repeats']} runs for each command ("
                   f"{max(1, data['repeats'] // 2)} for the small files)."])


def _champion_note(champion: dict | None) -> str:
    if not champion:
        return "the seed champion"
    if not champion["has_profile"]:
        return f"champion {champion['version']} (no reference profile)"
    return (f"champion {champion['version']} ({champion['architecture']}, "
            f"{champion['vocabulary_tokens']:,} vocabulary tokens, with its reference profile)")

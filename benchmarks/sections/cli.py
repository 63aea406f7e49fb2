"""Section 9, ``cli``: how fast the command line answers, and many small files.

Every figure is the wall time of fresh ``reviewflow`` processes (no server: Prefect's
temporary API per process, as a cron job runs it), the median of ``repeats`` runs:

- commands with nothing heavy to do: ``models list``, ``models promote``, ``models
  rollback``, ``score`` with nothing ready in the inbox, ``score`` on a root with no
  champion, ``retrain`` with no labeled files;
- a 20-row file, end to end, and the seconds its run spends inside the flow (the run
  summary's ``seconds``: ``score`` and ``retrain`` run with ``--json``);
- an inbox of ``small_files`` one-row CSV files: files per second inside the flow.

It needs no shared data: the champion is the seed model trained on the bundled sample.
The many small files are scored by ``small_files_models`` when given (``make bench``
passes its champion: the default architecture trained by ``retrain-model`` on IMDB, with
its reference profile and full vocabulary, as a user's champion is), else by that seed
model; the figures say which (``champion``). ``--quick``: 2 runs of each command and 100
small files. Alone: ``python -m benchmarks.sections.cli [--repeats N] [--small-files N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    IMDB_PARQUET,
    PROJECT,
    SAMPLES,
    SUMMARY_COMMANDS,
    WORK,
    Bench,
    md_table,
    reviewflow_argv,
    run_summary,
    target,
)
from tasks.layout import DataLayout
from tasks.training.registry import Registry

TITLE = "9. Command line: latency, and many small files"
NEEDS_SHARED_DATA = False
TARGET_CLI_QUICK_SECONDS = 1.0   # models list|promote|rollback
TARGET_CLI_NOTHING_SECONDS = 5.0  # score with nothing to do, no server
TARGET_SMALL_FILES_PER_SECOND = 20.0


def _env(work: Path) -> dict[str, str]:
    home = work / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REVIEWFLOW_") and k != "PREFECT_API_URL"}
    env.update({"PREFECT_HOME": str(home), "PYTHONPATH": str(PROJECT),
                "REVIEWFLOW_SETTLE_SECONDS": "0"})
    return env


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(reviewflow_argv(*argv), cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=900)
    return time.perf_counter() - started, done


def _setup(*argv: str, env: dict[str, str]) -> None:
    """A ``reviewflow`` command that prepares the figures; not timed."""
    subprocess.run(reviewflow_argv(*argv), cwd=PROJECT, env=env, check=True,
                   capture_output=True, timeout=900)


def _median(argv_for_run, env: dict[str, str], repeats: int, prepare=None,
            expect: tuple[int, ...] = (0,)) -> dict:
    walls, flows = [], []
    for _ in range(repeats):
        if prepare is not None:
            prepare()
        wall, done = _timed(argv_for_run, env)
        if done.returncode not in expect:
            raise RuntimeError(f"reviewflow {' '.join(argv_for_run)} exited {done.returncode}:"
                               f"\n{done.stderr[-2000:]}")
        walls.append(wall)
        summary = (run_summary(done.stdout, f"reviewflow {argv_for_run[0]}")
                   if argv_for_run[0] in SUMMARY_COMMANDS and done.returncode == 0 else None)
        if summary:  # None: no run started (nothing ready)
            flows.append(summary["seconds"])
    return {"median_seconds": round(statistics.median(walls), 3),
            "runs_seconds": [round(w, 3) for w in walls],
            **({"median_flow_seconds": round(statistics.median(flows), 3)} if flows else {})}


def measure(work: Path, repeats: int = 5, small_files: int = 1000,
            small_files_models: Path | None = None) -> dict:
    """The section's figures (see the module docstring)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = _env(work)
    root = work / "data"
    layout = DataLayout(root=root)
    _setup("init", str(root), env=env)
    figures: dict = {"repeats": repeats}
    data = ["--data-dir", str(root)]

    figures["score, no champion"] = _median(["score", *data], env, repeats, expect=(2,))
    figures["retrain, no labeled files"] = _median(["retrain", *data], env, repeats, expect=(2,))
    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, layout.labeled / sample.name)
    _setup("retrain", "--architecture", "seed", "--epochs", "5", *data, env=env)
    _setup("retrain", "--architecture", "seed", "--epochs", "2", *data, env=env)
    versions = sorted(p.name for p in Registry(layout.models).versions.iterdir())
    # The first version champion whatever the floor and the gate decided for these toy
    # models, so promoting the second leaves one to roll back to.
    _setup("models", "promote", versions[0], "--force", "--reason", "bench", *data, env=env)
    figures["models list"] = _median(["models", "list", *data], env, repeats)
    figures["models promote"] = _median(
        ["models", "promote", versions[-1], "--force", "--reason", "bench", *data], env, repeats)
    figures["models rollback"] = _median(
        ["models", "rollback", "--reason", "bench", *data], env, 1)
    figures["score, nothing ready"] = _median(["score", *data], env, repeats)

    incoming = layout.incoming
    counter = iter(range(10**9))

    def twenty_rows() -> None:
        run = next(counter)
        lines = [f"r{run}-{i},A film I would see again, take {run}-{i}." for i in range(20)]
        (incoming / f"twenty-{run}.csv").write_text("review_id,text\n" + "\n".join(lines) + "\n")

    _setup("models", "promote", versions[0], "--force", "--reason", "bench", *data, env=env)
    figures["score, one 20-row file"] = _median(["score", *data], env, repeats,
                                                prepare=twenty_rows)

    if small_files_models is not None:
        root = work / "small-files"
        layout = DataLayout(root=root)
        _setup("init", str(root), env=env)
        shutil.rmtree(layout.models)
        shutil.copytree(small_files_models, layout.models)
        data, incoming = ["--data-dir", str(root)], layout.incoming
    registry = Registry(layout.models)
    profile = registry.read_profile(registry.champion_version())
    champion = {"version": registry.champion_version(), "has_profile": profile is not None,
                **({"architecture": profile["architecture"],
                    "vocabulary_tokens": profile["vocabulary"]["size"]} if profile else {})}

    def many_small() -> None:
        run = next(counter)
        for i in range(small_files):
            (incoming / f"small-{run}-{i}.csv").write_text(
                f"review_id,text\ns{run}-{i},one short review number {i}\n")

    small = _median(["score", *data], env, max(1, repeats // 2), prepare=many_small)
    small["champion"] = champion
    small["files"] = small_files
    small["files_per_second_in_flow"] = round(small_files / small["median_flow_seconds"], 1)
    small["files_per_second_wall"] = round(small_files / small["median_seconds"], 1)
    figures["score, many one-row files"] = small
    return figures


def run(bench: Bench) -> dict:
    """Command-line latency and many small files (``measure``)."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sections.cli")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small-files", type=int, default=1000)
    args = parser.parse_args(argv)
    work = WORK / "cli"
    print(json.dumps(measure(work, args.repeats, args.small_files), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Section 5, ``orchestration``: what a running Prefect server saves on a one-file
scoring run.

Times ``reviewflow score --json --data-dir X`` as fresh processes, each scoring one small
new file (20 reviews of the bundled sample) with an already trained champion, in two modes:

- no server: no PREFECT_API_URL, so every process starts a temporary server of its
  own in a child process (flows/prefect_api.py): what ``reviewflow score`` from cron or
  a shell costs;
- server: PREFECT_API_URL pointing at an already running ``prefect server start``
  (what a worker's or served flow run talks to).

Each measured run is also cut into stages by the timestamps of its own log lines
(``MILESTONES``), so the report says where the seconds go, not only how many there are;
its row counts and in-flow seconds come from the run summary it prints.

Each mode gets one unmeasured warm-up run first (reported as ``*_first_run_s``; for the
no-server mode that is the run that creates the database in a fresh PREFECT_HOME), then
``repeats`` measured runs whose median is reported. Everything lives under ``workdir``;
the server listens on 127.0.0.1 only and is stopped before this returns. Needs no
shared data. Alone:

    python -m benchmarks.sections.orchestration [--workdir DIR] [--repeats 3]

prints one JSON line. From Python: ``measure_overhead(Path(dir), repeats=3) -> dict``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from benchmarks.common import (
    PROJECT,
    SAMPLES,
    WORK,
    Bench,
    fresh_dir,
    log,
    md_table,
    reviewflow_argv,
    run_summary,
)

TITLE = "5. Orchestration overhead (Prefect)"
NEEDS_SHARED_DATA = False
PREFECT = Path(sys.executable).parent / "prefect"
ROWS_PER_FILE = 20
SERVER_START_TIMEOUT = 120
RUN_TIMEOUT = 300


def _base_env(prefect_home: Path) -> dict[str, str]:
    """The caller's environment without its Prefect and reviewflow settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REVIEWFLOW_"))}
    env.update({"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "GX_ANALYTICS_ENABLED": "False", "TF_CPP_MIN_LOG_LEVEL": "2",
                "PYTHONPATH": str(PROJECT)})
    prefect_home.mkdir(parents=True, exist_ok=True)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_server(prefect_home: Path, log_path: Path):
    """A ``prefect server start`` on a free loopback port; yields its API URL.

    The server runs in its own session and is stopped (TERM, then KILL after 10 s) on
    exit, also when the body fails. Its scheduler is off: nothing else runs meanwhile.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**_base_env(prefect_home), "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port),
             "--no-ui"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server exited with {server.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"prefect server not healthy after {SERVER_START_TIMEOUT} s;"
                                       f" see {log_path}") from None
                time.sleep(0.5)
        yield url
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(server.pid, sig)
            except ProcessLookupError:
                break
            try:
                server.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


# A run's milestones, each the first log line matching the pattern (the last, for the
# file's scoring task), and what happens between the previous milestone and it. The
# first stage starts with the process, the last ends when it exits.
MILESTONES = [
    ("flow run begins", r"Beginning flow run",
     "Python, Prefect and reviewflow imports; the API answers (a temporary server starts "
     "in a child process meanwhile); the flow run is created"),
    ("device known", r"scoring on (?:CPU|GPU)",
     "TensorFlow's import finishes (begun in a background thread at start) and the device "
     "is probed"),
    ("champion loaded", r"Task run 'load-champion-[^']*' - Finished",
     "the champion is loaded and its serving function traced"),
    ("file committed", r"Task run 'score-(?:small-files|shard)-[^']*' - Finished",
     "Great Expectations validator built; the file read, validated, scored, written and "
     "committed to the ledger"),
    ("flow run finished", r"Flow run '[^']*' - Finished in state",
     "archive move, run summary, drift signals, artifacts"),
    ("process exit", None,
     "Prefect sends its last logs and events; a temporary server is stopped"),
]
_LOG_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \|")


def stage_seconds(output: str, started: float, ended: float) -> dict[str, float] | None:
    """Seconds from one milestone to the next (``MILESTONES``) of a run that started at
    ``started`` and ended at ``ended`` (epoch seconds), from its log lines' local
    timestamps; None if a milestone is missing (a different path, a failed run)."""
    day = datetime.fromtimestamp(started).replace(hour=0, minute=0, second=0, microsecond=0)
    marks, previous = {}, started
    for name, pattern, _ in MILESTONES[:-1]:
        hits = [line for line in output.splitlines() if re.search(pattern, line)]
        # A file scored in shards finishes several scoring tasks: the last one counts.
        stamp = _LOG_TIME.match(hits[-1 if name == "file committed" else 0]) if hits else None
        if stamp is None:
            return None
        hour, minute, second, milli = (int(g) for g in stamp.groups())
        at = (day + timedelta(hours=hour, minutes=minute, seconds=second,
                              milliseconds=milli)).timestamp()
        if at < started - 3600:  # the run crossed midnight
            at += 86400
        previous = marks[name] = max(at, previous)  # log times have millisecond steps
    marks[MILESTONES[-1][0]] = max(ended, previous)
    stages, previous = {}, started
    for name, _, _ in MILESTONES:
        stages[name] = round(marks[name] - previous, 3)
        previous = marks[name]
    return stages


def _median_stages(runs: list[dict[str, float] | None]) -> dict[str, float] | None:
    runs = [r for r in runs if r is not None]
    if not runs:
        return None
    return {name: round(statistics.median(r[name] for r in runs), 2) for name, _, _ in MILESTONES}


def _write_small_file(path: Path, tag: str) -> None:
    """ROWS_PER_FILE sample reviews whose ids carry ``tag``: new content, so no ledger hit."""
    with open(SAMPLES / "incoming" / "new-reviews.csv", newline="", encoding="utf-8") as source:
        rows = list(csv.DictReader(source))[:ROWS_PER_FILE]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "review_id": f"{tag}-{row['review_id']}"} for row in rows)


def _reviewflow(args: list[str], env: dict[str, str], log_path: Path,
                stages: list | None = None) -> tuple[float, dict | None]:
    """Run ``reviewflow ARGS`` as a fresh process; its wall seconds and run summary. With
    ``stages``, append the run's ``stage_seconds`` (from its log lines) to it."""
    argv = reviewflow_argv(*args)
    started_at, started = time.time(), time.perf_counter()
    done = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    seconds = time.perf_counter() - started
    if stages is not None:
        stages.append(stage_seconds(done.stderr, started_at, started_at + seconds))
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ reviewflow {' '.join(argv[3:])}  ({seconds:.2f} s, exit "
                  f"{done.returncode})\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"reviewflow {args[0]} exited with {done.returncode}; see {log_path}:\n"
                           f"{done.stderr[-2000:]}")
    return seconds, run_summary(done.stdout, f"reviewflow {args[0]}")


def _score_runs(data: Path, env: dict[str, str], mode: str, runs: int,
                log_path: Path) -> tuple[list[float], list[float], list]:
    """Wall seconds, in-flow seconds and stage seconds of ``runs`` one-file scoring runs."""
    walls, inside, stages = [], [], []
    for index in range(runs):
        _write_small_file(data / "incoming" / f"{mode}-{index}.csv", f"{mode}{index}")
        wall, summary = _reviewflow(["score", "--data-dir", str(data), "--settle-seconds", "0"],
                                    env, log_path, stages)
        if not summary or (summary["files_scored"], summary["rows_scored"]) != (1, ROWS_PER_FILE):
            raise RuntimeError(f"the {mode} run did not score its one file; see {log_path}")
        walls.append(wall)
        inside.append(summary["seconds"])
    return walls, inside, stages


def measure_overhead(workdir: Path, repeats: int = 3) -> dict:
    """Median wall seconds of one-file scoring runs without and with a running server."""
    workdir = Path(workdir).resolve()
    data, logs = workdir / "data", workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SAMPLES / "labeled", data / "labeled", dirs_exist_ok=True)
    result: dict = {"repeats": repeats, "rows_per_file": ROWS_PER_FILE}

    with local_server(workdir / "server-home", logs / "server.log") as url:
        env = {**_base_env(workdir / "client-home"), "PREFECT_API_URL": url}
        _reviewflow(["retrain", "--data-dir", str(data)], env, logs / "retrain.log")
        walls, inside, stages = _score_runs(data, env, "server", repeats + 1,
                                            logs / "server-runs.log")
    result.update(server_first_run_s=round(walls[0], 2), server_runs_s=_rounded(walls[1:]),
                  server_median_s=round(statistics.median(walls[1:]), 2),
                  server_in_flow_median_s=round(statistics.median(inside[1:]), 2),
                  server_stages_median_s=_median_stages(stages[1:]))

    # The server is gone now: these runs compete with nothing, and start from a fresh home.
    env = _base_env(workdir / "no-server-home")
    walls, inside, stages = _score_runs(data, env, "no-server", repeats + 1,
                                        logs / "no-server-runs.log")
    result.update(no_server_first_run_s=round(walls[0], 2), no_server_runs_s=_rounded(walls[1:]),
                  no_server_median_s=round(statistics.median(walls[1:]), 2),
                  no_server_in_flow_median_s=round(statistics.median(inside[1:]), 2),
                  no_server_stages_median_s=_median_stages(stages[1:]))
    result["server_saves_s"] = round(result["no_server_median_s"] - result["server_median_s"], 2)
    return result


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 2) for v in values]


def run(bench: Bench) -> dict:
    """One-file scoring runs without and with a running Prefect server (measure_overhead)."""
    workdir = fresh_dir(WORK / "overhead")
    log(f"orchestration: measure_overhead({workdir.relative_to(PROJECT)}, "
        f"repeats={bench.sizes.overhead_repeats})")
    try:
        result = measure_overhead(workdir, repeats=bench.sizes.overhead_repeats)
    except Exception as exc:
        return {"status": "not run", "reason": f"measure_overhead failed: "
                                               f"{type(exc).__name__}: {exc}"[:4000]}
    log(f"orchestration: {json.dumps(result)}")
    return {"repeats": bench.sizes.overhead_repeats, "result": result}


def render(data: dict) -> list[str]:
    result = data["result"]
    rows = []
    for mode, label in (("no_server", "no server (temporary API per process)"),
                        ("server", "running `prefect server`")):
        rows.append([label, result.get(f"{mode}_median_s"), result.get(f"{mode}_in_flow_median_s"),
                     result.get(f"{mode}_first_run_s"),
                     ", ".join(str(s) for s in result.get(f"{mode}_runs_s", []))])
    lines = [f"Wall seconds of `reviewflow score` as a fresh process scoring one new file of "
             f"{result.get('rows_per_file')} rows with a trained champion "
             "(`benchmarks/sections/orchestration.py`): median of the measured runs after one "
             "unmeasured first run per mode; \"in flow\" is the run time the flow reports.", ""]
    lines += md_table(["mode", "median wall s", "median in-flow s", "first run s",
                       "measured runs s"], rows)
    saves = result.get("server_saves_s")
    if saves is not None and saves <= 0:
        lines += ["", f"A running server saves nothing measurable on one run ({saves} s): the "
                      "temporary server starts in a child process while the command imports "
                      "(flows/prefect_api.py), so its start is off the critical path. A server "
                      "still keeps the run history, the UI and the deployments' schedules."]
    else:
        lines += ["", f"A running server saves {saves} s per run."]
    lines += _stage_lines(result)
    extra = {k: v for k, v in result.items() if not k.startswith(("server_", "no_server_"))
             and k not in ("rows_per_file", "repeats")}
    if extra:
        lines += ["", "Other figures: " + ", ".join(f"{k} = {v}" for k, v in extra.items())]
    return lines


def _stage_lines(result: dict) -> list[str]:
    """Where a run's seconds go: the stages between its log lines' milestones."""
    no_server, server = result.get("no_server_stages_median_s"), result.get("server_stages_median_s")
    if not no_server and not server:
        return []
    rows = [[f"... {name}", what, (no_server or {}).get(name, "-"), (server or {}).get(name, "-")]
            for name, _, what in MILESTONES]
    rows.append(["whole run (sum of the medians)", "",
                 round(sum(no_server.values()), 2) if no_server else "-",
                 round(sum(server.values()), 2) if server else "-"])
    return (["", "Where the seconds go: each measured run cut at its own log lines' timestamps "
             "(median per stage over the measured runs; from process start to the first "
             "milestone, then milestone to milestone, then to process exit).", ""]
            + md_table(["stage, ending at", "what happens", "no server s", "running server s"],
                       rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path,
                        help="where data, Prefect homes and logs go (default: a new temporary"
                             " directory, removed afterwards)")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per mode")
    args = parser.parse_args(argv)
    if args.workdir:
        print(json.dumps(measure_overhead(args.workdir, args.repeats)))
    else:
        with tempfile.TemporaryDirectory(prefix="reviewflow-overhead-") as workdir:
            print(json.dumps(measure_overhead(Path(workdir), args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

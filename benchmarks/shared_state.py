"""Bench section ``shared_state``: 1, 2 and 4 ``reviewflow score`` processes on one inbox,
their state in SQLite (the state folder) or in PostgreSQL: what the shared state costs.

For each state, each inbox (many small files, few large ones) and each number of
scorers, a fresh data root gets the champion's registry and the inbox; the scorers are
started together, each a fresh process with its own ``HOME``, ``TMPDIR`` and
``PREFECT_HOME`` (no Prefect server: each starts Prefect's temporary API, as a cron job
on its own host does) and no state folder setting, as in tests/test_many_scorers.py.
Each runs ``flows.cli.main(["score", ...])``, the ``reviewflow score`` command itself,
and also writes the run summary it prints to a file, for its ``seconds`` (the flow
call) and ``state_seconds`` (ledger calls, taking and releasing locks:
``tasks.state.backend.TimedState``).

Per configuration: wall seconds from the start of the first scorer to the exit of the
last, files/s and reviews/s over it, and the share of time in state operations, the
sum of ``state_seconds`` over the sum of ``seconds``. Afterwards every input row must be
in ``scored/`` exactly once (by ``review_id``), nothing quarantined, nothing left in the
inbox: otherwise ``measure`` raises, because a benchmark that scores twice measures a bug.

PostgreSQL is a throwaway cluster (tests/postgres.py) with one fresh database per
configuration, on this machine's loopback, started with ``fsync=off``.
Runnable alone on the seed model and generated text:
``python -m benchmarks.shared_state [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tasks.layout import DataLayout
from tasks.training.registry import Registry

PROJECT = Path(__file__).resolve().parents[1]
SAMPLES = PROJECT / "data" / "samples"
REVIEWFLOW = [sys.executable, "-m", "flows.cli"]
SCORER_TIMEOUT_SECONDS = 600

# One scorer: the `reviewflow score` command (flows.cli.main), which prints its summary
# as text; the dict it prints from is also written to argv[1] for the figures here.
_SCORER = """
import json, sys
import flows.cli as cli
printed = cli.print_score
def keep(summary):
    with open(sys.argv[1], "w") as out:
        json.dump(summary, out)
    printed(summary)
cli.print_score = keep
sys.exit(cli.main(sys.argv[2:]))
"""


@dataclass(frozen=True)
class Inbox:
    """``files`` review files of ``rows`` rows each, written as ``fmt`` (csv or parquet)."""

    name: str
    files: int
    rows: int
    fmt: str


FULL_INBOXES = (Inbox("small files", 400, 5, "csv"), Inbox("large files", 8, 15_000, "parquet"))
QUICK_INBOXES = (Inbox("small files", 40, 5, "csv"), Inbox("large files", 2, 2_000, "parquet"))
SCORERS = (1, 2, 4)
QUICK_SCORERS = (2,)


def generated_texts(count: int = 2_000, seed: int = 7) -> list[str]:
    """Review-like sentences, for when the shared IMDB data is absent."""
    rng = random.Random(seed)
    opening = ["This film", "The movie", "Its plot", "The acting", "The ending", "This show"]
    verdict = ["was wonderful", "was dull", "felt too long", "made me laugh", "was a mess",
               "moved me", "bored me to tears", "is worth a second look", "never lands"]
    detail = ["and the music carried it", "despite a strong cast", "from start to finish",
              "though the camera work is fine", "and I would not watch it again",
              "and the dialogue sparkles", "but the second half drags"]
    return [f"{rng.choice(opening)} {rng.choice(verdict)} {rng.choice(detail)}. "
            f"{rng.choice(opening)} {rng.choice(verdict)}, take {n}." for n in range(count)]


def write_inbox(inbox: Inbox, texts: list[str], folder: Path) -> set[str]:
    """The inbox's files in ``folder`` (texts taken in turn, every id new, so no two files
    share content); the review ids written."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    ids: set[str] = set()
    at = 0
    for k in range(inbox.files):
        rows = [(f"{inbox.fmt}{k}-{i}", texts[(at + i) % len(texts)]) for i in range(inbox.rows)]
        at += inbox.rows
        frame = pd.DataFrame(rows, columns=["review_id", "text"])
        path = folder / f"part-{k:04d}.{inbox.fmt}"
        if inbox.fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        ids.update(frame["review_id"])
    return ids


def scorer_env(base: dict[str, str], host: Path, state_url: str | None) -> dict[str, str]:
    """A scorer's environment: its own home, temporary folder and Prefect home, no
    Prefect server, no state folder; the PostgreSQL state URL when given."""
    env = {k: v for k, v in base.items()
           if not k.startswith("REVIEWFLOW_") and k != "PREFECT_API_URL"}
    for name in ("home", "tmp", "prefect"):
        (host / name).mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(host / "home"), TMPDIR=str(host / "tmp"),
               PREFECT_HOME=str(host / "prefect"), PYTHONPATH=str(PROJECT),
               REVIEWFLOW_SETTLE_SECONDS="0")
    if state_url:
        env["REVIEWFLOW_STATE_URL"] = state_url
    return env


def warm_hosts(hosts: list[Path], models: Path, work: Path) -> None:
    """Each host as after an earlier run: one ``reviewflow score`` of a one-row file on a
    root of its own. A fresh ``HOME`` and ``PREFECT_HOME`` make the first run build
    matplotlib's font cache (imported on the way to the flow) and Prefect's database,
    some 20 s that a host pays once, not per run."""
    processes = []
    for host in hosts:
        root = work / host.name
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(models, DataLayout(root=root).models)
        incoming = DataLayout(root=root).incoming
        incoming.mkdir(parents=True)
        (incoming / "warm.csv").write_text("review_id,text\nwarm-1,A fine film.\n")
        processes.append(subprocess.Popen(
            [*REVIEWFLOW, "score", "--data-dir", str(root)], cwd=PROJECT,
            env=scorer_env(os.environ, host, None), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
    for process in processes:
        if process.wait(timeout=SCORER_TIMEOUT_SECONDS) != 0:
            raise RuntimeError(f"warming a scorer's host failed (exit {process.returncode})")


def run_scorers(root: Path, hosts: list[Path], state_url: str | None, work: Path) -> dict:
    """A scorer per host, started together on ``root``; wall time to the last exit and
    each one's summary (its output and summary file in ``work``). Raises if one exits
    with an error."""
    processes = []
    started = time.perf_counter()
    outputs = [work / f"scorer-{i}" for i in range(len(hosts))]
    for host, out in zip(hosts, outputs, strict=True):
        env = scorer_env(os.environ, host, state_url)
        out.mkdir(parents=True)
        with open(out / "out.log", "wb") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-c", _SCORER, str(out / "summary.json"), "score",
                 "--data-dir", str(root)], cwd=PROJECT, env=env, stdout=log,
                stderr=subprocess.STDOUT))
    # Polled, not waited on in turn: each scorer's own exit time, whichever ends first.
    exits: list[float | None] = [None] * len(processes)
    while None in exits:
        elapsed = time.perf_counter() - started
        for i, process in enumerate(processes):
            if exits[i] is None and process.poll() is not None:
                exits[i] = elapsed
        if elapsed > SCORER_TIMEOUT_SECONDS:
            for process in processes:
                process.kill()
            raise TimeoutError(f"scorers still running after {SCORER_TIMEOUT_SECONDS} s")
        time.sleep(0.05)
    wall = max(exits)
    runs = []
    for out, process, exited in zip(outputs, processes, exits, strict=True):
        output = (out / "out.log").read_text(encoding="utf-8", errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"scorer {out.name} exited {process.returncode}:\n{output[-3000:]}")
        path = out / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else None  # None: nothing to do
        runs.append({"exited_after_seconds": round(exited, 2),
                     "flow_seconds": summary["seconds"] if summary else 0.0,
                     # process start, imports, the temporary API: all but the flow call
                     "outside_flow_seconds": round(exited - (summary["seconds"] if summary
                                                             else 0.0), 2),
                     "state_seconds": summary["state_seconds"] if summary else 0.0,
                     "files_scored": summary["files_scored"] if summary else 0,
                     "files_busy": summary["files_busy"] if summary else 0,
                     "rows_scored": summary["rows_scored"] if summary else 0})
    return {"wall_seconds": round(wall, 2), "scorers": runs}


def check_once(root: Path, expected: set[str]) -> dict:
    """Every expected id in ``scored/`` exactly once, nothing else there, nothing
    quarantined, the inbox empty."""
    from collections import Counter

    import pyarrow.parquet as pq

    layout = DataLayout(root=root)
    ids: Counter = Counter()
    for part in layout.scored.rglob("*.parquet"):
        ids.update(pq.read_table(part, columns=["review_id"]).column("review_id").to_pylist())
    quarantined = sum(pq.ParquetFile(p).metadata.num_rows
                      for p in layout.rejected_rows.rglob("*.parquet"))
    left = [p.name for p in layout.incoming.rglob("*") if p.is_file()]
    twice = sum(1 for n in ids.values() if n > 1)
    missing = len(expected - set(ids))
    extra = len(set(ids) - expected)
    return {"rows_in": len(expected), "rows_in_scored": sum(ids.values()),
            "ids_twice": twice, "ids_missing": missing, "ids_unexpected": extra,
            "rows_quarantined": quarantined, "files_left_in_inbox": len(left),
            "once": twice == missing == extra == quarantined == len(left) == 0}


@contextlib.contextmanager
def postgres_cluster(folder: Path):
    """A throwaway PostgreSQL (tests/postgres.py), in ``folder`` when the postgres user
    can reach it, else in the system's temporary folder; None with why not."""
    from tests import postgres

    why = postgres.available()
    if why is not None:
        yield None, why
        return
    reachable = os.geteuid() != 0 or all(os.stat(p).st_mode & 0o001 for p in folder.parents)
    if reachable:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.chmod(folder, 0o755)
        cluster = postgres.Cluster(folder).start()
    else:
        cluster = postgres.temporary_cluster()
    try:
        yield cluster, None
    finally:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)


def measure(work: Path, models: Path, texts: list[str], inboxes=FULL_INBOXES,
            scorers=SCORERS, log=print) -> dict:
    """The section's figures (module docstring). ``models`` is a registry folder with a
    champion, copied into each data root."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sources = {inbox.name: work / "inboxes" / inbox.name.replace(" ", "-") for inbox in inboxes}
    expected = {inbox.name: write_inbox(inbox, texts, sources[inbox.name]) for inbox in inboxes}
    registry = Registry(models)
    hosts = [work / "hosts" / f"host-{i}" for i in range(max(scorers))]
    warm_hosts(hosts, models, work / "warm-up")
    figures: dict = {"champion": registry.champion_version(),
                     "inboxes": [vars(inbox) for inbox in inboxes], "scorers": list(scorers),
                     "cpu_cores_usable": len(os.sched_getaffinity(0)), "runs": []}
    with postgres_cluster(work / "postgres") as (cluster, why):
        states = ["sqlite"] + (["postgresql"] if cluster else [])
        figures["postgresql_not_run"] = why
        for state in states:
            for inbox in inboxes:
                for n in scorers:
                    place = work / f"{state}-{sources[inbox.name].name}-{n}"
                    root = place / "data"
                    layout = DataLayout(root=root)
                    shutil.copytree(models, layout.models)
                    shutil.copytree(sources[inbox.name], layout.incoming)
                    url = (cluster.create_database(f"{state}_{sources[inbox.name].name}_{n}"
                                                   .replace("-", "_"))
                           if state == "postgresql" else None)
                    load = os.getloadavg()[0]  # other load changes every figure here
                    log(f"shared_state: {n} scorer(s), {state} state, {inbox.name} "
                        f"({inbox.files} x {inbox.rows:,} rows)")
                    run = run_scorers(root, hosts[:n], url, place)
                    check = check_once(root, expected[inbox.name])
                    flow = sum(s["flow_seconds"] for s in run["scorers"])
                    spent = sum(s["state_seconds"] for s in run["scorers"])
                    rows = inbox.files * inbox.rows
                    figures["runs"].append({
                        "state": state, "inbox": inbox.name, "scorer_count": n,
                        "files": inbox.files, "rows": rows, "load_average_1m_before": load,
                        **run,
                        "files_per_second": round(inbox.files / run["wall_seconds"], 2),
                        "reviews_per_second": round(rows / run["wall_seconds"], 1),
                        "flow_seconds_sum": round(flow, 2),
                        "state_seconds_sum": round(spent, 3),
                        "state_share": round(spent / flow, 4) if flow else None,
                        "outside_flow_seconds_mean": round(sum(
                            s["outside_flow_seconds"] for s in run["scorers"]) / n, 2),
                        "check": check})
                    last = figures["runs"][-1]
                    log(f"shared_state: {last['wall_seconds']:.1f} s wall, "
                        f"{last['files_per_second']} files/s, {last['reviews_per_second']:,.0f} "
                        f"reviews/s, state {spent:.2f} s of {flow:.1f} s in the flows; "
                        f"scored once: {check['once']}")
                    if not check["once"]:
                        raise RuntimeError(f"{n} scorer(s), {state} state, {inbox.name}: not "
                                           f"every row scored exactly once: {check}")
                    shutil.rmtree(layout.archive, ignore_errors=True)  # the big copies
    return figures


def seed_models(work: Path) -> Path:
    """A registry whose champion is the seed architecture trained on the bundled samples
    (for running without the shared data)."""
    env = scorer_env(os.environ, work / "seed-host", None)
    root = work / "seed"
    shutil.rmtree(root, ignore_errors=True)
    data = ["--data-dir", str(root)]
    subprocess.run([*REVIEWFLOW, "init", str(root)], env=env, check=True, capture_output=True)
    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, DataLayout(root=root).labeled / sample.name)
    subprocess.run([*REVIEWFLOW, "retrain", "--architecture", "seed", "--epochs", "5", *data],
                   env=env, check=True, capture_output=True, timeout=900)
    models = DataLayout(root=root).models
    if Registry(models).current_version() is None:  # the gate kept this toy model out
        version = sorted(p.name for p in Registry(models).versions.iterdir())[-1]
        subprocess.run([*REVIEWFLOW, "models", "promote", version, "--force", "--reason",
                        "bench", *data], env=env, check=True, capture_output=True)
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared_state")
    parser.add_argument("--quick", action="store_true", help="small inboxes")
    args = parser.parse_args(argv)
    work = PROJECT / "benchmarks" / ".work" / "shared-state-alone"
    work.mkdir(parents=True, exist_ok=True)
    models = seed_models(work / "champion")
    figures = measure(work / "runs", models, generated_texts(),
                      QUICK_INBOXES if args.quick else FULL_INBOXES,
                      QUICK_SCORERS if args.quick else SCORERS)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

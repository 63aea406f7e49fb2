"""What the benchmark sections share: paths, sizes, logging, targets, tables, interleaved
timing rounds, the champion trained once per run (``Bench``), running ``reviewflow`` and
reading its run summary, and running a command with its peak memory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.layout import DataLayout

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"
IMDB_PARQUET = SHARED_DATA / "imdb" / "train.parquet"
SAMPLES = PROJECT / "data" / "samples"
WORK = PROJECT / "benchmarks" / ".work"
RESULTS_JSON = PROJECT / "benchmarks" / "results.json"
BENCHMARKS_MD = PROJECT / "BENCHMARKS.md"
# The `reviewflow` program of this checkout (run with cwd=PROJECT): what the installed
# command runs, without depending on which checkout the venv was installed from.
REVIEWFLOW = (sys.executable, "-m", "flows.cli")
# The commands whose results a benchmark reads: always with --json (reviewflow_argv).
SUMMARY_COMMANDS = ("score", "retrain")

@dataclass(frozen=True)
class Sizes:
    """How much data each section uses; ``--quick`` shrinks them, the code stays the same."""

    sample_rows: int | None          # rows of train.parquet used; None = all 25,000
    memory_repeats: tuple[int, ...]  # the memory file holds the texts this many times over
    validation_rows: int
    validation_batch_rows: int
    overhead_repeats: int


FULL = Sizes(sample_rows=None, memory_repeats=(10, 40), validation_rows=100_000,
             validation_batch_rows=50_000, overhead_repeats=3)
QUICK = Sizes(sample_rows=2_000, memory_repeats=(3, 10), validation_rows=20_000,
              validation_batch_rows=10_000, overhead_repeats=1)


# reviewflow's scoring reviews/s over the fastest peer's, on the same texts: the target of
# the peers section, and of the gpu section for the champion on a GPU.
PEER_SPEED_RATIO = 1.5

# --------------------------------------------------------------------------- helpers

_T0 = time.perf_counter()


def log(message: str) -> None:
    """Progress line with the seconds since the benchmark started."""
    print(f"[bench {time.perf_counter() - _T0:7.1f}s] {message}", flush=True)


def fresh_dir(path: Path) -> Path:
    """An empty folder at ``path`` (must lie under benchmarks/.work/)."""
    if not path.resolve().is_relative_to(WORK.resolve()):
        raise ValueError(f"refusing to clear {path}: not under {WORK}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def target(name: str, value: float | None, threshold: float, higher_is_better: bool,
           unit: str = "") -> dict:
    """One target check; printed at once when missed."""
    met = value is not None and (value >= threshold if higher_is_better else value < threshold)
    check = {"target": name, "value": value, "op": ">=" if higher_is_better else "<",
             "threshold": threshold, "unit": unit, "met": met}
    if not met:
        log(f"TARGET MISSED: {name}: {value} {unit} (target {'>=' if higher_is_better else '<'}"
            f" {threshold} {unit})")
    return check


def texts_of(frame: pd.DataFrame) -> np.ndarray:
    return frame["text"].to_numpy(dtype=object)


def rate(rows: int, seconds: float) -> float:
    return round(rows / seconds, 1) if seconds > 0 else 0.0


def interleaved_seconds(scorers: dict[str, Callable[[np.ndarray], object]], texts: np.ndarray,
                        rounds: int) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds each of ``scorers`` takes over ``texts``, in ``rounds`` interleaved rounds
    (A B C A B C …: a change of load hits every one alike), and the 1-minute load average
    after each round."""
    seconds: dict[str, list[float]] = {name: [] for name in scorers}
    loads = []
    for _ in range(rounds):
        for name, score in scorers.items():
            started = time.perf_counter()
            score(texts)
            seconds[name].append(time.perf_counter() - started)
        loads.append(os.getloadavg()[0])
    return seconds, loads


def reviewflow_argv(command: str, *args: str) -> list[str]:
    """``reviewflow COMMAND ARGS`` as a child process's argv. ``score`` and ``retrain``
    get ``--json``: what a benchmark learns from them it reads from their run summary
    (``run_summary``), never from the lines they print for a person."""
    return [*REVIEWFLOW, command, *(["--json"] if command in SUMMARY_COMMANDS else []), *args]


def run_summary(stdout: str, what: str) -> dict | None:
    """The run summary a ``reviewflow score|retrain --json`` printed as its whole standard
    output (None: nothing was ready to score). ``what`` names the run in the error."""
    try:
        return json.loads(stdout)
    except ValueError:
        raise RuntimeError(f"{what} printed no run summary on stdout: {stdout[-500:]!r}") from None


def subprocess_env() -> dict[str, str]:
    """Environment for ``reviewflow`` child processes: no server, no settle delay."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    home = WORK / "prefect-home-cli"
    home.mkdir(parents=True, exist_ok=True)
    env.update({"PREFECT_HOME": str(home), "REVIEWFLOW_SETTLE_SECONDS": "0",
                "PYTHONPATH": str(PROJECT)})
    return env


class TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants every ``interval`` seconds.

    Complements ``ru_maxrss`` (one process's exact peak) with the whole tree, which
    includes Prefect's temporary API server; sampled, so it can miss a short peak.
    """

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_bytes = 0
        self._stop_event = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def _tree_rss(self) -> int:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        tree, frontier = {self.pid}, [self.pid]
        while frontier:
            parent = frontier.pop()
            for pid, ppid in parents.items():
                if ppid == parent and pid not in tree:
                    tree.add(pid)
                    frontier.append(pid)
        total = 0
        for pid in tree:
            try:
                total += int((Path("/proc") / str(pid) / "statm").read_text().split()[1])
            except (OSError, ValueError, IndexError):
                continue
        return total * self._page


# Forks and execs the command from a small process and reports the child's own rusage.
# Linux carries a process's pre-exec memory high-water mark into ru_maxrss across exec,
# so a child forked straight from this (large) benchmark process would report at least
# this process's RSS; from a fresh interpreter of ~10 MiB the figure is the command's own.
_LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"maxrss_kib": usage.ru_maxrss, "returncode": os.waitstatus_to_exitcode(status)}, out)
sys.exit(0)
"""


def run_measured(command: list[str], env: dict[str, str], log_path: Path) -> dict:
    """Run ``command`` to completion; its wall time, exit code, peak RSS, standard output
    (``stdout``) and standard error (``output``, also kept in ``log_path``).

    ``peak_rss_mib`` is the command's ``ru_maxrss`` (from ``wait4`` in a small launcher
    process): the peak of the largest single process, never a sum. ``tree_peak_rss_mib``
    is the sampled sum over the process tree (the launcher's ~10 MiB included).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    usage_path = log_path.with_suffix(".rusage.json")
    stdout_path = log_path.with_suffix(".stdout")
    usage_path.unlink(missing_ok=True)
    with open(log_path, "wb") as err, open(stdout_path, "wb") as out:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-I", "-c", _LAUNCHER, str(usage_path),
                                  *command], env=env, cwd=PROJECT, stdout=out, stderr=err)
        sampler = TreeRssSampler(child.pid)
        sampler.start()
        child.wait()
        wall = time.perf_counter() - started
        sampler.stop()
    usage = json.loads(usage_path.read_text()) if usage_path.exists() else {}
    return {"returncode": usage.get("returncode", child.returncode),
            "wall_seconds": round(wall, 2),
            "peak_rss_mib": round(usage["maxrss_kib"] / 1024, 1) if usage else None,
            "tree_peak_rss_mib": round(sampler.peak_bytes / 2**20, 1),
            "stdout": stdout_path.read_text(encoding="utf-8", errors="replace"),
            "output": log_path.read_text(encoding="utf-8", errors="replace")}


def md_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table; floats get thousands separators and sensible digits."""
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


# --------------------------------------------------------------------------- shared state

@dataclass
class Bench:
    """Sizes, the work folder and what several sections share (data, the champion)."""

    quick: bool
    sizes: Sizes
    _reviews: pd.DataFrame | None = None
    _champion: dict | None = None
    _champion_error: Exception | None = None  # training failed once: do not retry per section
    throughput: dict | None = None  # section 2's figures, once measured in this run
    peers: dict | None = None  # the peers section's figures, once measured in this run

    def labeled_parquet(self) -> Path:
        """train.parquet itself, or (``--quick``) its first rows written under .work/."""
        if not IMDB_PARQUET.exists():
            raise FileNotFoundError(f"{IMDB_PARQUET} not found: the benchmarks need the shared"
                                    " IMDB data at <project>/../shared/data/imdb/train.parquet")
        if self.sizes.sample_rows is None:
            return IMDB_PARQUET
        sample = WORK / f"imdb-sample-{self.sizes.sample_rows}.parquet"
        if not sample.exists():
            import pyarrow.parquet as pq

            columns = ["review_id", "text", "label"]
            if "movie_id" in pq.read_schema(IMDB_PARQUET).names:  # split by movie, as in full
                columns.append("movie_id")
            table = pq.read_table(IMDB_PARQUET, columns=columns)
            WORK.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.slice(0, self.sizes.sample_rows), sample)
        return sample

    def reviews(self) -> pd.DataFrame:
        """review_id, text, label of the labeled file the sections use."""
        if self._reviews is None:
            import pandas as pd

            self._reviews = pd.read_parquet(self.labeled_parquet(),
                                            columns=["review_id", "text", "label"])
        return self._reviews

    def champion(self) -> dict:
        """Train the default architecture once with ``retrain-model`` as the champion.

        The work data dir's labeled/ holds a copy of the labeled file; the flow runs in
        this process (Prefect's no-server mode: a temporary API server, started once).
        """
        if self._champion_error is not None:
            raise RuntimeError(f"training the champion failed earlier in this run: "
                               f"{self._champion_error!r}") from self._champion_error
        if self._champion is None:
            try:
                self._champion = self._train_champion()
            except Exception as exc:
                self._champion_error = exc
                raise
        return self._champion

    def _train_champion(self) -> dict:
        """retrain-model on a work data dir whose labeled/ holds the labeled file."""
        from flows.retrain_model import retrain_model
        from tasks.settings import Settings

        data = fresh_dir(WORK / "champion") / "data"
        labeled = DataLayout(root=data).labeled
        labeled.mkdir(parents=True)
        shutil.copy2(self.labeled_parquet(), labeled / "imdb-train.parquet")
        architecture = Settings().architecture
        log(f"training the champion ({architecture}) with retrain-model on "
            f"{len(self.reviews()):,} labeled reviews")
        started = time.perf_counter()
        summary = retrain_model(data_dir=str(data))
        wall = time.perf_counter() - started
        if not summary.get("promoted"):
            raise RuntimeError(f"the champion was not promoted: {summary.get('reason')}")
        log(f"champion {summary['version']}: held-out accuracy "
            f"{summary['validation_accuracy']}, flow wall {wall:.1f} s")
        return {"data_dir": data, "version": summary["version"],
                "architecture": architecture, "retrain_summary": summary,
                "retrain_wall_seconds": round(wall, 2)}

    def data_dir_with_champion(self, name: str) -> Path:
        """A fresh data dir under .work/``name`` whose registry is a copy of the champion's."""
        champion = self.champion()
        data = fresh_dir(WORK / name) / "data"
        shutil.copytree(DataLayout(root=champion["data_dir"]).models, DataLayout(root=data).models)
        return data

    def champion_ref(self):
        """The champion as a ``tasks.scoring.workers.ModelRef``: what the flow's shards score with."""
        from tasks.scoring.workers import ModelRef
        from tasks.training.registry import Registry

        champion = self.champion()
        registry = Registry(DataLayout(root=champion["data_dir"].resolve()).models)
        return ModelRef(champion["version"], registry.model_path(champion["version"]))

    def load_champion_model(self):
        from tasks.model import load_model
        from tasks.training.registry import Registry

        champion = self.champion()
        registry = Registry(DataLayout(root=champion["data_dir"]).models)
        return load_model(registry.model_path(champion["version"]))


def write_inbox_file(frame: pd.DataFrame, path: Path) -> Path:
    """The reviews without labels, as one Parquet file (what a user drops in incoming/)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"review_id": pa.array(frame["review_id"], pa.string()),
                      "text": pa.array(frame["text"], pa.string())})
    pq.write_table(table, path)
    return path


def render_targets(checks: list[dict]) -> list[str]:
    rows = [[c["target"], c["value"], f"{c['op']} {c['threshold']:,} {c['unit']}".strip(),
             "met" if c["met"] else "**MISSED**"] for c in checks]
    return md_table(["target", "measured", "wanted", "status"], rows)

"""``make bench``: accuracy, speed, memory and orchestration overhead in one run.

Runs every section below on this machine, prints progress as it goes, and writes
``BENCHMARKS.md`` (a table per section, the machine, the date, the command) and the raw
figures as ``benchmarks/results.json``:

1. ``accuracy``: held-out accuracy, training seconds and scoring speed of every named
   architecture (the seed's, the default's, the others) and of scikit-learn's tf-idf +
   logistic regression, all on the project's deterministic split of IMDB train.parquet.
2. ``throughput``: the champion (the default architecture, trained by ``retrain-model``)
   scoring the 25,000 texts bare (``predict_scores``) and through the whole
   ``score-reviews`` flow (read, validate, score, write Parquet).
3. ``memory``: peak RSS of ``reviewflow score`` as a separate process on a file of
   1,000,000 reviews (and on one of 250,000, to see whether memory grows with the file).
4. ``validation``: Great Expectations time per 100,000 rows.
5. ``orchestration``: a one-file scoring run without and with a running Prefect server
   (``deployments/measure_overhead.py``).
6. ``gpu``: section 2 on a GPU when TensorFlow sees one; otherwise says why it did not run.
7. ``profile``: seconds per stage (hash, read, validate, score, write) of the flow's
   per-file work, and the slowest stage.
8. ``dask``: ``score-reviews`` throughput with the thread runner and with 1 and 2 Dask
   worker processes on the same inbox.

Targets that are missed are printed and marked in the report; they do not fail the
run. A section that raises is reported as failed and the others still run (exit code 1).

    python -m benchmarks.run                      # everything, full size (about 20 minutes)
    python -m benchmarks.run --quick              # smoke run: 2,000 rows, 20,000 for memory
    python -m benchmarks.run --sections accuracy memory

With ``--sections``, the sections not run are carried over from the previous
``results.json`` when it was made with the same ``--quick`` setting.
Work files (data folders, Prefect homes, logs) go to ``benchmarks/.work/``, which git ignores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
IMDB_PARQUET = PROJECT.parent / "shared" / "data" / "imdb" / "train.parquet"
WORK = PROJECT / "benchmarks" / ".work"
BIN = Path(sys.executable).parent
RESULTS_JSON = PROJECT / "benchmarks" / "results.json"
BENCHMARKS_MD = PROJECT / "BENCHMARKS.md"

SECTIONS = ("accuracy", "throughput", "memory", "validation", "orchestration", "gpu", "profile",
            "dask", "cli")
# Sections that need no shared data; every other one needs IMDB_PARQUET.
WITHOUT_SHARED_DATA = ("orchestration", "gpu", "cli")
TARGET_CLI_QUICK_SECONDS = 1.0   # models list|promote|rollback
TARGET_CLI_NOTHING_SECONDS = 5.0  # score with nothing to do, no server
TARGET_SMALL_FILES_PER_SECOND = 20.0
TARGET_FLOW_RATIO = 0.9        # whole scoring path / bare predict_scores
TARGET_FLOW_RATE = 5_000       # reviews/s through the whole path, default model, 2 CPU cores
TARGET_PEAK_RSS_MIB = 2_000    # "under 2 GB", read strictly: 2,000 MiB
SKLEARN_C = 16.0


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
    """Run ``command`` to completion; its wall time, exit code, peak RSS and output.

    ``peak_rss_mib`` is the command's ``ru_maxrss`` (from ``wait4`` in a small launcher
    process): the peak of the largest single process, never a sum. ``tree_peak_rss_mib``
    is the sampled sum over the process tree (the launcher's ~10 MiB included).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    usage_path = log_path.with_suffix(".rusage.json")
    usage_path.unlink(missing_ok=True)
    with open(log_path, "wb") as out:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-I", "-c", _LAUNCHER, str(usage_path),
                                  *command], env=env, cwd=PROJECT, stdout=out,
                                 stderr=subprocess.STDOUT)
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
            "output": log_path.read_text(encoding="utf-8", errors="replace")}


def parse_score_output(output: str) -> dict:
    """Figures from the lines ``reviewflow score`` prints at the end of a run."""
    figures: dict[str, Any] = {}
    if match := re.search(r"scored (\d+) rows from (\d+) files", output):
        figures["rows_scored"], figures["files_scored"] = int(match[1]), int(match[2])
    if match := re.search(r"; (\d+) rows and (\d+) files quarantined", output):
        figures["rows_quarantined"], figures["files_quarantined"] = int(match[1]), int(match[2])
    if match := re.search(r"([0-9.]+) reviews/s while scoring; run took ([0-9.]+) s", output):
        figures["reviews_per_second"], figures["flow_seconds"] = float(match[1]), float(match[2])
    if match := re.search(r"on (CPU|GPU[^;]*);", output):
        figures["device"] = match[1]
    return figures


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

            table = pq.read_table(IMDB_PARQUET, columns=["review_id", "text", "label"])
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
        (data / "labeled").mkdir(parents=True)
        shutil.copy2(self.labeled_parquet(), data / "labeled" / "imdb-train.parquet")
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
        shutil.copytree(champion["data_dir"] / "models", data / "models")
        return data

    def load_champion_model(self):
        from tasks.model import load_model
        from tasks.registry import Registry

        champion = self.champion()
        registry = Registry(champion["data_dir"] / "models")
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


# --------------------------------------------------------------------------- 1. accuracy

def measure_sklearn(train_parquet: Path, fraction: float) -> dict:
    """scikit-learn's TfidfVectorizer(1-2 grams) + LogisticRegression on the same split."""
    import numpy as np
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tasks.split import split_labeled

    reviews = pd.read_parquet(train_parquet, columns=["review_id", "text", "label"])
    split = split_labeled(reviews, fraction)
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        LogisticRegression(C=SKLEARN_C, max_iter=1000))
    started = time.perf_counter()
    pipeline.fit(texts_of(split.train), split.train["label"].to_numpy())
    training_seconds = time.perf_counter() - started
    predicted = pipeline.predict(texts_of(split.validation))
    texts = texts_of(reviews)
    started = time.perf_counter()
    pipeline.predict_proba(texts)
    seconds = time.perf_counter() - started
    return {"architecture": f"scikit-learn tf-idf 1-2 grams + LogisticRegression(C={SKLEARN_C:g})",
            "heldout_accuracy": round(float(np.mean(predicted == split.validation["label"])), 4),
            "training_seconds": round(training_seconds, 1),
            "reviews_per_second": round(len(texts) / seconds),
            "epochs_run": None,
            "train_rows": len(split.train), "validation_rows": len(split.validation),
            "features": len(pipeline[0].vocabulary_)}


def section_accuracy(bench: Bench) -> dict:
    """Held-out accuracy, training and scoring speed of each architecture and of scikit-learn.

    Uses ``benchmarks.architectures.measure_architecture``. Order: seed, default, the
    others, scikit-learn.
    """
    from benchmarks.architectures import measure_architecture
    from tasks.model import ARCHITECTURES
    from tasks.settings import Settings
    measurer = "benchmarks.architectures.measure_architecture"

    parquet, settings = bench.labeled_parquet(), Settings()
    default = settings.architecture
    names = ["seed"] if "seed" in ARCHITECTURES else []
    names += [default] if default not in names else []
    names += sorted(n for n in ARCHITECTURES if n not in names)
    rows = []
    for name in names:
        roles = [r for r, n in (("seed", "seed"), ("default", default)) if n == name]
        log(f"accuracy: training {name} on {parquet.name}")
        try:
            row = measure_architecture(name, parquet)
        except Exception as exc:  # one architecture failing must not hide the others
            log(f"accuracy: {name} FAILED: {exc!r}")
            row = {"architecture": name, "error": f"{type(exc).__name__}: {exc}"}
        row.update(kind="reviewflow (Keras)", roles=roles,
                   description=ARCHITECTURES[name].description)
        rows.append(row)
        log(f"accuracy: {json.dumps(row)}")
    log("accuracy: training scikit-learn tf-idf + LogisticRegression")
    peer = measure_sklearn(parquet, settings.validation_fraction)
    peer.update(kind="peer (scikit-learn)", roles=[],
                description="TfidfVectorizer(ngram_range=(1,2), sublinear_tf=True, min_df=2) "
                            f"+ LogisticRegression(C={SKLEARN_C:g}, max_iter=1000)")
    rows.append(peer)
    log(f"accuracy: {json.dumps(peer)}")
    splits = {(r.get("train_rows"), r.get("validation_rows")) for r in rows if "error" not in r}
    return {"train_file": str(parquet), "rows": len(bench.reviews()), "measured_by": measurer,
            "validation_fraction": settings.validation_fraction,
            "same_split_everywhere": len(splits) == 1, "results": rows}


def render_accuracy(data: dict) -> list[str]:
    rows = [[r["architecture"] + (f" ({', '.join(r['roles'])})" if r.get("roles") else ""),
             r.get("kind"), r.get("heldout_accuracy"), r.get("training_seconds"),
             r.get("epochs_run"), r.get("reviews_per_second"),
             " ".join(r["error"].split())[:300] if r.get("error") else None]
            for r in data["results"]]
    first = next((r for r in data["results"] if "train_rows" in r), {})
    lines = [f"Trained on `{Path(data['train_file']).name}` ({data['rows']:,} reviews): "
             f"{first.get('train_rows', 0):,} training and {first.get('validation_rows', 0):,} "
             f"held-out rows from `split_labeled` (fraction {data['validation_fraction']}, by a "
             "hash of review_id; duplicate texts removed). Every model uses the same split"
             + ("." if data["same_split_everywhere"] else " — NOT the case in this run: the "
                                                          "row counts differ, see results.json.")
             + " Scoring speed: reviews/s over all texts of the file from raw strings, after a"
               " warm-up (Keras: saved, reloaded, `predict_scores` with batch 1024, median of 3;"
               " scikit-learn: `predict_proba`, once).", ""]
    lines += md_table(["model", "kind", "held-out accuracy", "training s", "epochs",
                       "scoring reviews/s", "error"], rows)
    lines += ["", "Architectures: " + "; ".join(
        f"`{r['architecture']}`: {r.get('description', '')}" for r in data["results"]) + "."]
    return lines


# --------------------------------------------------------------------------- 2. throughput

def section_throughput(bench: Bench) -> dict:
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
    inbox_file = write_inbox_file(reviews, data_dir / "incoming" / "imdb-unlabeled.parquet")
    log(f"throughput: score-reviews flow over {inbox_file.name} ({len(texts):,} reviews)")
    started = time.perf_counter()
    summary = score_reviews(data_dir=str(data_dir), settle_seconds=0)
    flow_wall = time.perf_counter() - started
    file_rate = float(summary["reviews_per_second"])
    file_seconds = summary["rows_scored"] / file_rate if file_rate else None
    ratio = round(file_rate / bare_rate, 3) if bare_rate else None
    log(f"throughput: flow {file_rate:,.0f} reviews/s over the file ({ratio} of bare); "
        f"end to end {flow_wall:.1f} s")
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
        "targets": checks,
    }
    return bench.throughput


def render_throughput(data: dict) -> list[str]:
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
    lines += [""] + render_targets(data["targets"])
    if not data.get("all_rows_scored", True):
        lines += ["", f"WARNING: the flow scored {data['flow_summary']['rows_scored']:,} of "
                      f"{data['rows']:,} rows (quarantined {data['flow_summary']['rows_quarantined']:,})."]
    return lines


# --------------------------------------------------------------------------- 3. memory

def write_repeated_file(frame: pd.DataFrame, repeats: int, path: Path) -> int:
    """The texts ``repeats`` times over with new ids, streamed to Parquet one repeat per row group."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = pa.array(frame["review_id"], pa.string())
    texts = pa.array(frame["text"], pa.string())
    schema = pa.schema([("review_id", pa.string()), ("text", pa.string())])
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")  # a dot-name: the inbox ignores it until renamed
    with pq.ParquetWriter(temp, schema) as writer:
        for k in range(repeats):
            suffixed = pc.binary_join_element_wise(ids, pa.scalar(f"r{k:03d}"), "-")
            writer.write_table(pa.table([suffixed, texts], schema=schema))
    temp.rename(path)
    return len(frame) * repeats


def section_memory(bench: Bench) -> dict:
    """Peak RSS and throughput of ``reviewflow score`` (a separate process) on big files."""
    from tasks.settings import Settings

    reviews = bench.reviews()
    runs = []
    for repeats in bench.sizes.memory_repeats:
        rows = len(reviews) * repeats
        data_dir = bench.data_dir_with_champion(f"memory-{rows}")
        inbox = data_dir / "incoming" / f"imdb-x{repeats}.parquet"
        log(f"memory: writing {rows:,} reviews to {inbox.relative_to(PROJECT)}")
        write_repeated_file(reviews, repeats, inbox)
        size_mib = inbox.stat().st_size / 2**20
        log(f"memory: reviewflow score on {rows:,} reviews ({size_mib:,.0f} MiB) in a child process")
        measured = run_measured([str(BIN / "reviewflow"), "score", "--data-dir", str(data_dir)],
                                subprocess_env(), WORK / "logs" / f"memory-{rows}.log")
        output = measured.pop("output")
        figures = parse_score_output(output)
        if measured["returncode"] != 0 or figures.get("rows_scored") != rows:
            raise RuntimeError(f"reviewflow score on {rows:,} rows exited "
                               f"{measured['returncode']} having scored "
                               f"{figures.get('rows_scored')}; output tail:\n{output[-3000:]}")
        run = {"rows": rows, "file_mib": round(size_mib, 1), "row_group_rows": len(reviews),
               **measured, **figures,
               "wall_reviews_per_second": rate(rows, measured["wall_seconds"])}
        runs.append(run)
        log(f"memory: {rows:,} rows: peak RSS {run['peak_rss_mib']:,.0f} MiB (tree "
            f"{run['tree_peak_rss_mib']:,.0f} MiB), {run.get('reviews_per_second', 0):,.0f} "
            f"reviews/s in the flow, {run['wall_seconds']:.0f} s wall")
        shutil.rmtree(data_dir / "archive", ignore_errors=True)  # the input, moved there: GBs
    largest, smallest = runs[-1], runs[0]
    growth = None
    # Within the first read batches memory grows with the batch, not the file: compare
    # only files that both span several batches.
    several_batches = smallest["rows"] >= 2 * Settings().read_batch_rows
    if several_batches and largest["rows"] > smallest["rows"]:
        growth = round((largest["peak_rss_mib"] - smallest["peak_rss_mib"])
                       / ((largest["rows"] - smallest["rows"]) / 1e6), 1)
    checks = [target(f"peak RSS scoring {largest['rows']:,} reviews", largest["peak_rss_mib"],
                     TARGET_PEAK_RSS_MIB, False, "MiB")]
    if growth is not None and growth > 100:
        log(f"memory: peak RSS grows with the file: about {growth:,.0f} MiB more per million "
            "rows, so no file-size-independent bound holds")
    return {"runs": runs, "rss_growth_mib_per_million_rows": growth, "targets": checks}


def render_memory(data: dict) -> list[str]:
    lines = ["`reviewflow score --data-dir DIR` as a child process (no server, "
             "`REVIEWFLOW_SETTLE_SECONDS=0`) on one Parquet file holding the IMDB texts repeated "
             "with new ids (one row group per repeat). Peak RSS: the child's `ru_maxrss` from "
             "`wait4` (the largest single process); tree: the sampled sum over the child and its "
             "descendants, Prefect's temporary API server included.", ""]
    rows = [[r["rows"], r["file_mib"], r["peak_rss_mib"], r["tree_peak_rss_mib"],
             round(r.get("reviews_per_second") or 0), r["wall_seconds"],
             round(r["wall_reviews_per_second"])] for r in data["runs"]]
    lines += md_table(["reviews", "file MiB", "peak RSS MiB", "tree peak RSS MiB",
                       "reviews/s (flow, file work)", "wall s (process)", "reviews/s (wall)"],
                      rows)
    if data.get("rss_growth_mib_per_million_rows") is not None:
        lines += ["", f"Peak RSS grows by {data['rss_growth_mib_per_million_rows']:,} MiB per "
                      "million rows between the two files."]
    else:
        lines += ["", "The files are too small to tell whether memory grows with the file "
                      "(each fits in a couple of read batches)."]
    return lines + [""] + render_targets(data["targets"])


# --------------------------------------------------------------------------- 4. validation

def section_validation(bench: Bench) -> dict:
    """Great Expectations time per 100,000 rows: ``ReviewValidator.validate`` on IMDB rows."""
    import pyarrow as pa

    from flows.common import build_validator
    from tasks.readers import NORMALIZED_SCHEMA
    from tasks.settings import Settings

    reviews, sizes = bench.reviews(), bench.sizes
    total, batch_rows = sizes.validation_rows, sizes.validation_batch_rows
    started = time.perf_counter()
    validator = build_validator(Settings())
    build_seconds = time.perf_counter() - started

    def batch(first_row: int, rows: int) -> pa.Table:
        index = [(first_row - 1 + i) % len(reviews) for i in range(rows)]
        repeat = [(first_row - 1 + i) // len(reviews) for i in range(rows)]
        part = reviews.iloc[index]
        labels = part["label"].astype("int8").to_numpy()
        return pa.table({
            "source_row": pa.array(range(first_row, first_row + rows), pa.int64()),
            "review_id": pa.array([f"{i}-r{k}" for i, k in zip(part["review_id"], repeat)],
                                  pa.string()),
            "text": pa.array(part["text"], pa.string()),
            "label": pa.array(labels, pa.int8()),
            "label_raw": pa.array([str(v) for v in labels], pa.string()),
            "read_error": pa.nulls(rows, pa.string()),
        }, schema=NORMALIZED_SCHEMA)

    batches = [batch(first, min(batch_rows, total - first + 1))
               for first in range(1, total + 1, batch_rows)]
    started = time.perf_counter()
    validator.validate(batch(1, 1_000), {}, source_name="warm-up")
    warmup_seconds = time.perf_counter() - started
    log(f"validation: {total:,} rows in {len(batches)} batches of {batch_rows:,}")
    seen: dict[str, set[str]] = {}
    per_batch, rejected = [], 0
    for table in batches:
        started = time.perf_counter()
        checked = validator.validate(table, seen, source_name="bench")
        per_batch.append(time.perf_counter() - started)
        rejected += checked.rejected.num_rows
    seconds = sum(per_batch)
    per_100k = seconds * 100_000 / total
    log(f"validation: {seconds:.2f} s for {total:,} rows = {per_100k:.2f} s per 100,000 rows")
    return {"rows": total, "batch_rows": batch_rows, "batches": len(batches),
            "labels_present": True, "build_validator_seconds": round(build_seconds, 2),
            "first_call_seconds_1000_rows": round(warmup_seconds, 3),
            "batch_seconds": [round(s, 3) for s in per_batch], "seconds": round(seconds, 3),
            "seconds_per_100k_rows": round(per_100k, 2),
            "rows_per_second": rate(total, seconds), "rows_rejected": rejected}


def render_validation(data: dict) -> list[str]:
    lines = [f"`ReviewValidator.validate` (the packaged suite through Great Expectations, plus "
             f"the id-uniqueness check across the file) on {data['rows']:,} IMDB rows with labels, "
             f"as `NORMALIZED_SCHEMA` batches of {data['batch_rows']:,}, after a 1,000-row warm-up.",
             ""]
    lines += md_table(["figure", "value"], [
        ["seconds per 100,000 rows", data["seconds_per_100k_rows"]],
        ["rows/s", round(data["rows_per_second"])],
        ["seconds per batch", ", ".join(f"{s:.2f}" for s in data["batch_seconds"])],
        ["building the validator (GX context, suite), s", data["build_validator_seconds"]],
        ["first call (1,000 rows), s", data["first_call_seconds_1000_rows"]],
        ["rows rejected (expected 0)", data["rows_rejected"]],
    ])
    return lines


# --------------------------------------------------------------------------- 5. orchestration

def section_orchestration(bench: Bench) -> dict:
    """One-file scoring runs without and with a running Prefect server (measure_overhead)."""
    try:
        from deployments.measure_overhead import measure_overhead
    except Exception as exc:  # absent or broken: report, do not fail the benchmark
        return {"status": "not run", "reason": f"deployments.measure_overhead could not be "
                                               f"imported: {type(exc).__name__}: {exc}"}
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


def render_orchestration(data: dict) -> list[str]:
    result = data["result"]
    rows = []
    for mode, label in (("no_server", "no server (temporary API per process)"),
                        ("server", "running `prefect server`")):
        rows.append([label, result.get(f"{mode}_median_s"), result.get(f"{mode}_in_flow_median_s"),
                     result.get(f"{mode}_first_run_s"),
                     ", ".join(str(s) for s in result.get(f"{mode}_runs_s", []))])
    lines = [f"Wall seconds of `reviewflow score` as a fresh process scoring one new file of "
             f"{result.get('rows_per_file')} rows with a trained champion "
             "(`deployments/measure_overhead.py`): median of the measured runs after one "
             "unmeasured first run per mode; \"in flow\" is the run time the flow reports.", ""]
    lines += md_table(["mode", "median wall s", "median in-flow s", "first run s",
                       "measured runs s"], rows)
    lines += ["", f"A running server saves {result.get('server_saves_s')} s per run."]
    extra = {k: v for k, v in result.items() if not k.startswith(("server_", "no_server_"))
             and k not in ("rows_per_file", "repeats")}
    if extra:
        lines += ["", "Other figures: " + ", ".join(f"{k} = {v}" for k, v in extra.items())]
    return lines


# --------------------------------------------------------------------------- 6. gpu

def section_gpu(bench: Bench) -> dict:
    """Section 2 on a GPU, when TensorFlow sees one; otherwise why it was not run."""
    from tasks.model import compute_device

    device = compute_device()
    if not device.startswith("GPU"):
        return {"status": "not run", "device": device,
                "reason": f"TensorFlow sees no GPU on this machine (compute_device() = "
                          f"{device!r}; this benchmark machine has none). On a GPU host "
                          "(`pip install .[gpu]` or the GPU worker of deployments/), "
                          "`make bench` runs section 2 there and reports it here."}
    if bench.throughput is not None and bench.throughput["device"] == device:
        log(f"gpu: section 2 already ran on {device} in this run; reporting it here")
        return {"device": device, "throughput": bench.throughput}
    log(f"gpu: {device}: running the throughput section on it")
    return {"device": device, "throughput": section_throughput(bench)}


def render_gpu(data: dict) -> list[str]:
    return [f"Device: {data['device']}.", ""] + render_throughput(data["throughput"])


# --------------------------------------------------------------------------- 7. profile

def section_profile(bench: Bench) -> dict:
    """Seconds per stage of the flow's per-file work on the same texts; the slowest stage."""
    from benchmarks.profile_scoring import hot_functions, profile_scoring
    from flows.common import build_validator
    from tasks.model import predict_scores
    from tasks.settings import Settings

    settings, reviews = Settings(), bench.reviews()
    champion = bench.champion()
    model, validator = bench.load_champion_model(), build_validator(settings)
    work = fresh_dir(WORK / "profile")
    path = write_inbox_file(reviews, work / "imdb-unlabeled.parquet")
    # Warm-up: the first prediction traces the model, the first validation sets up GX.
    predict_scores(model, texts_of(reviews)[: settings.predict_batch_size],
                   settings.predict_batch_size)
    warm = write_inbox_file(reviews.head(1_000), work / "warm-up.parquet")
    profile_scoring(warm, model, champion["version"], settings, validator, work / "warm-out")
    log(f"profile: stages of the per-file work on {len(reviews):,} reviews")
    result = profile_scoring(path, model, champion["version"], settings, validator, work / "out")
    log(f"profile: {json.dumps(result['seconds'])}; slowest stage: {result['slowest_stage']}")
    log("profile: the same under cProfile")
    result["hot_functions"] = hot_functions(path, model, champion["version"], settings,
                                            validator, work / "cprofile-out")
    return result


def render_profile(data: dict) -> list[str]:
    lines = [f"The per-file work of `score-reviews` (as in `_score_locked`, without the ledger and "
             f"archive move) on the same {data['rows']:,} reviews in one Parquet file, model "
             "and validator warmed up, timed per stage (`benchmarks/profile_scoring.py`).", ""]
    lines += md_table(["stage", "seconds", "share"],
                      [[stage, data["seconds"][stage], f"{data['share'][stage]:.0%}"]
                       for stage in data["seconds"]]
                      + [["total", data["total_seconds"], "100%"]])
    lines += ["", f"**Slowest stage: {data['slowest_stage']}** "
                  f"({data['share'][data['slowest_stage']]:.0%} of the file's time); "
                  f"{data['reviews_per_second']:,} reviews/s over the stages."]
    if data.get("hot_functions"):
        lines += ["", "Functions with the most own time under cProfile (TensorFlow's work shows "
                      "as the Python call that waits for it):", ""]
        lines += md_table(["function", "calls", "own s", "cumulative s"],
                          [[f["function"], f["calls"], f["own_seconds"], f["cumulative_seconds"]]
                           for f in data["hot_functions"][:8]])
    return lines


# --------------------------------------------------------------------------- 8. dask

DASK_FILES = 4  # the reviews are split into this many inbox files


def section_dask(bench: Bench) -> dict:
    """``score-reviews`` on the same inbox with the thread runner, then on a LocalCluster of
    1 and of 2 Dask worker processes (README, "Scaling out").

    Each cluster is started here and its workers warmed (TensorFlow, Great Expectations
    and the model loaded, ``tasks.workers.warm``) before the flow runs against it with
    ``dask_address``, as on a long-lived cluster; start-up is timed apart.
    """
    import pyarrow.parquet as pq
    from distributed import Client, LocalCluster

    from flows.score_reviews import score_reviews
    from tasks.registry import Registry
    from tasks.settings import Settings
    from tasks.validation import load_suite_config
    from tasks.workers import ModelRef, warm

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
        (data_dir / "incoming").mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, data_dir / "incoming" / path.name)
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
                               Registry(data_dir.resolve() / "models").model_path(champion["version"]))
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
                     for p in (data_dir / "scored").rglob("*.parquet"))
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


def render_dask(data: dict) -> list[str]:
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


def section_cli(bench: Bench) -> dict:
    """Command-line latency and many small files (benchmarks/cli_latency.py)."""
    from benchmarks.cli_latency import measure

    data = measure(WORK / "cli", repeats=2 if bench.quick else 5,
                   small_files=100 if bench.quick else 1000)
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


def render_cli(data: dict) -> list[str]:
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
                   "the temporary Prefect server included). Median of "
                   f"{data['repeats']} runs for each command ("
                   f"{max(1, data['repeats'] // 2)} for the small files)."])


# --------------------------------------------------------------------------- report

SECTION_FUNCTIONS: dict[str, Callable[[Bench], dict]] = {
    "accuracy": section_accuracy, "throughput": section_throughput, "memory": section_memory,
    "validation": section_validation, "orchestration": section_orchestration,
    "gpu": section_gpu, "profile": section_profile, "dask": section_dask, "cli": section_cli,
}
RENDERERS: dict[str, Callable[[dict], list[str]]] = {
    "accuracy": render_accuracy, "throughput": render_throughput, "memory": render_memory,
    "validation": render_validation, "orchestration": render_orchestration,
    "gpu": render_gpu, "profile": render_profile, "dask": render_dask, "cli": render_cli,
}
TITLES = {
    "accuracy": "1. Accuracy on IMDB (held-out part of train.parquet)",
    "throughput": "2. Scoring throughput: bare model against the whole `reviewflow score` path",
    "memory": "3. Memory: scoring a file of a million reviews",
    "validation": "4. Validation cost (Great Expectations)",
    "orchestration": "5. Orchestration overhead (Prefect)",
    "gpu": "6. GPU",
    "profile": "Profile of the scoring path",
    "dask": "8. Scaling out: 1 and 2 Dask workers",
    "cli": "9. Command line: latency, and many small files",
}


def render_targets(checks: list[dict]) -> list[str]:
    rows = [[c["target"], c["value"], f"{c['op']} {c['threshold']:,} {c['unit']}".strip(),
             "met" if c["met"] else "**MISSED**"] for c in checks]
    return md_table(["target", "measured", "wanted", "status"], rows)


def machine_info() -> dict:
    """CPU model, cores, memory, OS and versions of what the figures depend on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    from importlib import metadata

    for package in ("tensorflow", "keras", "prefect", "great_expectations", "pyarrow", "pandas",
                    "numpy", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu_model": cpu, "cpu_cores": os.cpu_count(),
            "cpu_cores_usable": len(os.sched_getaffinity(0)), "memory_gib": memory_gib,
            "os": platform.platform(), "load_average_at_start": os.getloadavg(),
            "versions": versions}


def write_reports(results: dict, results_json: Path, benchmarks_md: Path) -> None:
    """results.json and BENCHMARKS.md from the same figures."""
    results_json.parent.mkdir(parents=True, exist_ok=True)
    results_json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    machine = results["machine"]
    lines = ["# Benchmarks", "",
             f"Generated by `make bench` (`{results['command']}`) on {results['generated_at']}; "
             f"raw figures in `benchmarks/results.json`. Regenerate with `make bench`.", ""]
    if results["quick"]:
        lines += ["> **Quick smoke run (`--quick`)**: 2,000 reviews instead of 25,000 and small "
                  "memory files. The figures only show that the benchmark works; run `make bench` "
                  "for real ones.", ""]
    load = ", ".join(f"{v:.2f}" for v in machine["load_average_at_start"])
    lines += md_table(["machine", ""], [
        ["CPU", machine["cpu_model"]],
        ["cores", f"{machine['cpu_cores']} ({machine['cpu_cores_usable']} usable by the run)"],
        ["memory", f"{machine['memory_gib']} GiB"],
        ["OS", machine["os"]],
        ["load average at start", load],
        ["versions", ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)],
        ["run took", f"{results['seconds']:,.0f} s"],
    ])
    checks = [c for s in results["sections"].values() if s.get("status") == "ok"
              for c in _targets_of(s["data"])]
    if checks:
        lines += ["", "## Targets", ""] + render_targets(checks)
    for name in SECTIONS:
        section = results["sections"].get(name)
        lines += ["", f"## {TITLES[name]}", ""]
        if section is None:
            lines.append("Not run: not selected (`--sections`) and no earlier figures.")
            continue
        if section.get("carried_over"):
            lines += [f"_Carried over from the run of {section['measured_at']}._", ""]
        status = section["status"]
        if status == "ok":
            lines += RENDERERS[name](section["data"])
            lines += ["", f"_Section took {section['seconds']:,.0f} s._"]
        elif status == "not run":
            lines.append(f"Not run: {section['data'].get('reason')}")
        else:
            lines += ["**Failed** (the end of the traceback; all of it in results.json):", "",
                      "```", section.get("error", "").strip()[-2500:], "```"]
    benchmarks_md.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _targets_of(data: dict) -> list[dict]:
    found = list(data.get("targets", []))
    if "throughput" in data:  # the GPU section wraps a throughput section
        found += [{**c, "target": f"GPU: {c['target']}"} for c in data["throughput"]["targets"]]
    return found


def run_section(name: str, bench: Bench) -> dict:
    """Run one section; its figures, or how it failed. Never raises."""
    log(f"===== {TITLES[name]}")
    started = time.perf_counter()
    measured_at = datetime.now(UTC).isoformat(timespec="seconds")
    if name not in WITHOUT_SHARED_DATA and not IMDB_PARQUET.exists():
        reason = f"needs the shared IMDB reviews at {IMDB_PARQUET}, which is absent here"
        log(f"{name}: not run: {reason}")
        return {"status": "not run", "seconds": 0.0, "measured_at": measured_at,
                "data": {"reason": reason}}
    try:
        data = SECTION_FUNCTIONS[name](bench)
        status, error = data.pop("status", "ok"), None
        if status != "ok":
            log(f"{name}: not run: {data.get('reason')}")
    except Exception:
        data, status, error = {}, "failed", traceback.format_exc()[-6000:]
        log(f"{name}: FAILED\n{error}")
    seconds = time.perf_counter() - started
    log(f"{name}: {status} in {seconds:.1f} s")
    return {"status": status, "seconds": round(seconds, 1), "measured_at": measured_at,
            "data": data, **({"error": error} if error else {})}


def prepare_environment() -> None:
    """No-server Prefect with its home under .work/, quiet logs, no analytics."""
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(WORK / "prefect-home")
    os.environ.pop("PREFECT_API_URL", None)  # the in-process flows use no-server mode
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 reviews, 20,000 for memory, one overhead repeat")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these ({', '.join(SECTIONS)}); default: all")
    args = parser.parse_args(argv)
    prepare_environment()
    selected = [s for s in SECTIONS if not args.sections or s in args.sections]
    command = "python -m benchmarks.run" + ("".join(f" {a}" for a in (argv or sys.argv[1:])))
    log(f"{command}: sections {', '.join(selected)}"
        + (" (QUICK smoke run)" if args.quick else ""))
    started = time.perf_counter()
    results: dict = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "command": command, "quick": args.quick, "machine": machine_info(),
                     "environment": {k: v for k, v in os.environ.items()
                                     if k.startswith("REVIEWFLOW_")},
                     "sections": {}}
    bench = Bench(quick=args.quick, sizes=QUICK if args.quick else FULL)
    for name in selected:
        results["sections"][name] = run_section(name, bench)
    if args.sections and RESULTS_JSON.exists():
        try:
            previous = json.loads(RESULTS_JSON.read_text(encoding="utf-8"))
        except ValueError:
            previous = {}
        if previous.get("quick") == args.quick:
            for name, section in previous.get("sections", {}).items():
                if name not in results["sections"] and name in SECTIONS:
                    results["sections"][name] = {**section, "carried_over": True}
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = [c for s in results["sections"].values() if s.get("status") == "ok"
                          for c in _targets_of(s["data"])]
    # Only a full run rewrites the committed report; a quick or partial one writes beside
    # its work files (ignored by git), so it can never replace real figures.
    full = not args.quick and not args.sections
    results_json, benchmarks_md = ((RESULTS_JSON, BENCHMARKS_MD) if full else
                                   (WORK / "results.json", WORK / "BENCHMARKS.md"))
    write_reports(results, results_json, benchmarks_md)
    log(f"wrote {benchmarks_md.relative_to(PROJECT)} and {results_json.relative_to(PROJECT)} "
        f"in {results['seconds']:.0f} s")
    for check in results["targets"]:
        log(f"target {'met   ' if check['met'] else 'MISSED'}: {check['target']}: "
            f"{check['value']} {check['unit']} (wanted {check['op']} {check['threshold']:,})")
    failed = [n for n, s in results["sections"].items() if s["status"] == "failed"]
    if failed:
        log(f"sections that FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

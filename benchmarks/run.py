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
   (``benchmarks/measure_overhead.py``).
6. ``gpu``: section 2 on a GPU when TensorFlow sees one; otherwise says why it did not run.
7. ``profile``: seconds per stage (hash, read, validate, score, monitor, write) of the flow's
   per-file work, and the slowest stage.
8. ``dask``: ``score-reviews`` throughput with the thread runner and with 1 and 2 Dask
   worker processes on the same inbox.
9. ``cli``: command-line latency, and many one-row files in one run.
10. ``languages``: English (IMDB) and Korean (NSMC-style TSV) trained through
    ``retrain-model`` and scored through ``score-reviews`` on reviews of movies held out
    of training, beside scikit-learn word and char n-gram peers on the same rows, and a
    probe: the default averaged with a small CNN that reads word order.
11. ``shared_state``: 1, 2 and 4 ``reviewflow score`` processes on one inbox of small
    files and one of large files, their state in SQLite and in PostgreSQL: files/s,
    reviews/s and the share of time in state operations (``benchmarks/shared_state.py``).
12. ``object_listing``: ``list_inbox`` on an s3 inbox of 10,000 small objects on moto's
    S3 server: seconds and requests (``benchmarks/sections/object_listing.py``).

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
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from types import ModuleType

from benchmarks.common import (
    BENCHMARKS_MD,
    FULL,
    IMDB_PARQUET,
    PROJECT,
    QUICK,
    RESULTS_JSON,
    WORK,
    Bench,
    log,
)
from benchmarks.report import machine_info, targets_of, write_reports
from benchmarks.sections import (
    accuracy,
    cli,
    dask,
    gpu,
    languages,
    memory,
    object_listing,
    orchestration,
    profile,
    shared_state,
    throughput,
    validation,
)

# The sections in the order they run and are reported.
SECTION_MODULES: dict[str, ModuleType] = {
    "accuracy": accuracy, "throughput": throughput, "memory": memory, "validation": validation,
    "orchestration": orchestration, "gpu": gpu, "profile": profile, "dask": dask, "cli": cli,
    "languages": languages, "shared_state": shared_state, "object_listing": object_listing,
}
SECTIONS = tuple(SECTION_MODULES)
# Sections that need no shared data; every other one needs IMDB_PARQUET.
WITHOUT_SHARED_DATA = ("orchestration", "gpu", "cli", "shared_state", "object_listing")


def run_section(name: str, bench: Bench) -> dict:
    """Run one section; its figures, or how it failed. Never raises."""
    log(f"===== {SECTION_MODULES[name].TITLE}")
    started = time.perf_counter()
    measured_at = datetime.now(UTC).isoformat(timespec="seconds")
    if name not in WITHOUT_SHARED_DATA and not IMDB_PARQUET.exists():
        reason = f"needs the shared IMDB reviews at {IMDB_PARQUET}, which is absent here"
        log(f"{name}: not run: {reason}")
        return {"status": "not run", "seconds": 0.0, "measured_at": measured_at,
                "data": {"reason": reason}}
    try:
        data = SECTION_MODULES[name].run(bench)
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
                          for c in targets_of(s["data"])]
    # Only a full run rewrites the committed report; a quick or partial one writes beside
    # its work files (ignored by git), so it can never replace real figures.
    full = not args.quick and not args.sections
    results_json, benchmarks_md = ((RESULTS_JSON, BENCHMARKS_MD) if full else
                                   (WORK / "results.json", WORK / "BENCHMARKS.md"))
    write_reports(results, results_json, benchmarks_md, SECTION_MODULES)
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

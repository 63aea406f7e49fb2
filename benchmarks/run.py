"""``make bench``: accuracy, speed, memory and orchestration overhead in one run.

Runs the sections of ``benchmarks/sections/`` (``SECTIONS`` there lists them, in order;
``--list`` prints each one's name, title and whether it needs ``../shared/data``) on this
machine, prints progress as it goes, and writes ``BENCHMARKS.md`` (a table per section,
the machine, the date, the command) and the raw figures as ``benchmarks/results.json``.
A section that needs the shared data is reported as not run where it is absent.

Targets that are missed are printed and marked in the report; they do not fail the
run. A section that raises is reported as failed and the others still run (exit code 1).

    python -m benchmarks.run                      # everything, full size (about 20 minutes)
    python -m benchmarks.run --quick              # smoke run: 2,000 rows, 20,000 for memory
    python -m benchmarks.run --sections accuracy memory
    python -m benchmarks.run --list

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
from benchmarks.sections import SECTIONS, section_modules


def run_section(name: str, bench: Bench) -> dict:
    """Run one section; its figures, or how it failed. Never raises."""
    section = section_modules()[name]
    log(f"===== {section.TITLE}")
    started = time.perf_counter()
    measured_at = datetime.now(UTC).isoformat(timespec="seconds")
    if section.NEEDS_SHARED_DATA and not IMDB_PARQUET.exists():
        reason = f"needs the shared IMDB reviews at {IMDB_PARQUET}, which is absent here"
        log(f"{name}: not run: {reason}")
        return {"status": "not run", "seconds": 0.0, "measured_at": measured_at,
                "data": {"reason": reason}}
    try:
        data = section.run(bench)
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
    parser.add_argument("--list", action="store_true",
                        help="print the sections (name, whether it needs ../shared/data, "
                             "title) and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, section in section_modules().items():
            needs = "needs shared data" if section.NEEDS_SHARED_DATA else "no shared data"
            print(f"{name:<15} {needs:<18} {section.TITLE}")
        return 0
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

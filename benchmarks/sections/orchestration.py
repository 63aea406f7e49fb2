"""Section 5, ``orchestration``: one-file scoring runs without and with a running Prefect
server (``benchmarks/measure_overhead.py``)."""

from __future__ import annotations

import json

from benchmarks.common import PROJECT, WORK, Bench, fresh_dir, log, md_table

TITLE = "5. Orchestration overhead (Prefect)"

def run(bench: Bench) -> dict:
    """One-file scoring runs without and with a running Prefect server (measure_overhead)."""
    try:
        from benchmarks.measure_overhead import measure_overhead
    except Exception as exc:  # absent or broken: report, do not fail the benchmark
        return {"status": "not run", "reason": f"benchmarks.measure_overhead could not be "
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
             "(`benchmarks/measure_overhead.py`): median of the measured runs after one "
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
    from benchmarks.measure_overhead import MILESTONES

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

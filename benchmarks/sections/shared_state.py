"""Section 11, ``shared_state``: 1, 2 and 4 ``reviewflow score`` processes on one inbox,
their state in SQLite or in PostgreSQL (benchmarks/shared_state.py)."""

from __future__ import annotations

from benchmarks.common import IMDB_PARQUET, WORK, Bench, log, md_table
from tasks.layout import DataLayout

TITLE = "11. Shared state: 1, 2 and 4 scorers on one inbox, SQLite and PostgreSQL"


def run(bench: Bench) -> dict:
    """The run's champion and IMDB texts where the shared data is there; else the seed
    model on the bundled samples and generated text."""
    from benchmarks import shared_state

    work = WORK / "shared-state"
    if IMDB_PARQUET.exists():
        models = DataLayout(root=bench.champion()["data_dir"]).models
        texts = bench.reviews()["text"].tolist()
        source = f"IMDB `train.parquet` ({len(texts):,} texts, taken in turn)"
    else:
        models = shared_state.seed_models(WORK / "shared-state-champion")
        texts = shared_state.generated_texts()
        source = "generated review-like sentences (no shared IMDB data here)"
    data = shared_state.measure(
        work / "runs", models, texts,
        shared_state.QUICK_INBOXES if bench.quick else shared_state.FULL_INBOXES,
        shared_state.QUICK_SCORERS if bench.quick else shared_state.SCORERS, log=log)
    data["texts"] = source
    return data


def render(data: dict) -> list[str]:
    kinds = {"csv": "CSV", "parquet": "Parquet"}
    inboxes = ", ".join(f"{i['name']}: {i['files']:,} {kinds.get(i['fmt'], i['fmt'])} files of "
                        f"{i['rows']:,} rows" for i in data["inboxes"])
    lines = [f"N `reviewflow score` processes started together on one local data root, each "
             "with its own `HOME`, `TMPDIR` and `PREFECT_HOME` and no Prefect server (each "
             "starts Prefect's temporary API, as a cron job on its own host does), champion "
             f"`{data['champion']}`, texts from {data['texts']}. Inboxes: {inboxes}. State: "
             "SQLite is the state folder under the root (`state/ledger.sqlite`, `flock` "
             "locks); PostgreSQL is a throwaway local cluster (tests/postgres.py, loopback, "
             "`fsync=off`), a fresh database per row. Wall is from starting the first scorer "
             "to the last one's exit (process start, imports and the temporary API "
             "included); files/s and reviews/s are over it. State share: the scorers' "
             "`state_seconds` (ledger calls, taking and releasing locks) summed, over their "
             "flow `seconds` summed. Every row was checked in `scored/` exactly once by "
             "`review_id`, nothing quarantined, nothing left in the inbox. \"Load before\" is the "
             "machine's 1-minute load average as the row started: anything above 0 is other "
             "work sharing the cores.", ""]
    if data.get("postgresql_not_run"):
        lines += [f"PostgreSQL not run: {data['postgresql_not_run']}.", ""]
    rows = []
    for r in data["runs"]:
        scorers = r["scorers"]
        rows.append([r["state"], r["inbox"], r["scorer_count"], r["wall_seconds"],
                     r["files_per_second"], round(r["reviews_per_second"]),
                     r["outside_flow_seconds_mean"], r["flow_seconds_sum"], r["state_seconds_sum"],
                     round(1000 * r["state_seconds_sum"] / r["files"], 1),
                     f"{100 * r['state_share']:.1f} %" if r["state_share"] is not None else None,
                     " / ".join(str(s["files_scored"]) for s in scorers),
                     sum(s["files_busy"] for s in scorers),
                     "yes" if r["check"]["once"] else "**NO**",
                     r.get("load_average_1m_before")])
    lines += md_table(["state", "inbox", "scorers", "wall s", "files/s", "reviews/s",
                       "outside the flow s (mean)", "flow s (sum)", "state s (sum)",
                       "state ms per file", "state share",
                       "files scored by each", "files found busy", "every row once",
                       "load before"], rows)
    lines += ["", _reading(data)]
    return lines


def _reading(data: dict) -> str:
    """What the table shows, from its own figures."""
    runs = [r for r in data["runs"] if r["state_share"] is not None]
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    shares = " and ".join(
        f"between {100 * min(r['state_share'] for r in rows):.1f} and "
        f"{100 * max(r['state_share'] for r in rows):.1f} % with {names[state]} state"
        for state in names if (rows := [r for r in runs if r["state"] == state]))

    def per_file(state: str, inbox: str) -> str:
        found = sorted((r["scorer_count"], 1000 * r["state_seconds_sum"] / r["files"])
                       for r in data["runs"] if (r["state"], r["inbox"]) == (state, inbox))
        return " / ".join(f"{ms:.1f}" for _, ms in found)

    counts = " / ".join(str(n) for n in data["scorers"])
    small = "; ".join(f"{names[state]} {per_file(state, 'small files')} ms"
                      for state in names if any(r["state"] == state for r in runs))
    shared = [r for r in data["runs"] if r["scorer_count"] > 1]
    alone = sum(1 for r in shared if max(s["files_scored"] for s in r["scorers"]) == r["files"])
    text = (f"This machine has {data['cpu_cores_usable']} usable cores, and one scorer already "
            "keeps them busy (TensorFlow uses every core), so here more scorers do not score "
            "faster: they share the same cores, and each pays its own process start, imports "
            "and temporary API (\"outside the flow\"), which grows as the processes start "
            "together. Wall time therefore grows with the number of scorers; these rows show "
            "what sharing one inbox costs, not the speed-up of more machines, which needs each "
            "scorer on cores of its own. The state's cost: the flows spent a share of their "
            f"time in state operations {shares} (ledger calls, taking and releasing content "
            "locks, waits on the other scorers' transactions included), most on many small "
            "files, where each file's lock and ledger commit is a larger part of its work. A "
            "share that falls as scorers are added does not mean the state got cheaper: "
            "contention on the cores stretches the flows' other work. Per file, the state took "
            f"(small files, {counts} scorers) {small}.")
    if shared:
        text += (f" In {len(shared) - alone} of the {len(shared)} rows with more than one "
                 "scorer the files were shared out (\"files scored by each\"; a scorer that "
                 "starts late finds fewer left), each claiming a few files ahead (small files "
                 "in bundles of up to 128); every scorer lists the whole inbox, so the files "
                 "another scorer holds are counted as \"found busy\" and left to it.")
    return text

"""Several scorers at once on one ``s3://`` root, their state in one PostgreSQL, one of
them SIGKILLed mid-run: every row lands once (issue 30, item 4).

Real parts only: the session's PostgreSQL cluster (tests/postgres.py), moto's S3 server,
the session's Prefect server, and ``reviewflow score`` processes that share nothing
else: each has its own ``HOME``, ``TMPDIR``, ``PREFECT_HOME`` and working folder, and
no ``REVIEWFLOW_STATE_DIR``, as workers on separate hosts or in fresh containers would.
They reach the database and the bucket over loopback.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter

import pandas as pd
import psycopg
import pytest
from conftest import PROJECT, reviewflow_command

from tests.helpers import good_rows, quarantined_rows, scored_rows

SCORERS = 3
FILES = 200


def _inbox(fs, root: str) -> tuple[Counter, Counter, int]:
    """Upload ``FILES`` review files of four formats and mixed sizes; returns the ids
    expected in ``scored/`` and in quarantine (rows), and the files quarantined whole."""
    scored, rejected, unreadable = Counter(), Counter(), 0
    for n in range(FILES):
        size = 800 if n % 50 == 7 else 1 + n % 6  # a few large files among small ones
        rows = good_rows(f"f{n}", size)
        if n % 9 == 0:  # one row no check accepts
            rows.append({"review_id": f"f{n}-empty", "text": ""})
            rejected[f"f{n}-empty"] += 1
        frame = pd.DataFrame(rows)
        kind = n % 4
        if n % 67 == 5:  # a file with no text column: quarantined whole
            name, data = f"f{n}.csv", f"alpha,beta\n1,{n}\n".encode()
            unreadable += 1
        elif kind == 0:
            name, data = f"f{n}.csv", frame.to_csv(index=False).encode()
        elif kind == 1:
            name, data = f"f{n}.tsv", frame.to_csv(index=False, sep="\t").encode()
        elif kind == 2:
            name = f"f{n}.jsonl"
            data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        else:
            name = f"f{n}.csv.gz"
            data = gzip.compress(frame.to_csv(index=False).encode(), mtime=0)
        if data.startswith(b"alpha,beta"):
            rejected.subtract({f"f{n}-empty": 1} if n % 9 == 0 else {})
        else:
            scored.update(r["review_id"] for r in rows if r["text"])
        fs.pipe_file(f"{root}/incoming/{name}", data)
    return scored, +rejected, unreadable


def _host_env(base: dict, host, endpoint: str, url: str) -> dict:
    env = {k: v for k, v in base.items() if k != "REVIEWFLOW_STATE_DIR"}
    for name in ("home", "tmp", "prefect"):
        (host / name).mkdir(parents=True)
    env.update(HOME=str(host / "home"), TMPDIR=str(host / "tmp"),
               PREFECT_HOME=str(host / "prefect"), REVIEWFLOW_STATE_URL=url,
               REVIEWFLOW_STORAGE_OPTIONS=json.dumps({"endpoint_url": endpoint}),
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1")
    return env


def _scorer(root: str, env: dict, host) -> subprocess.Popen:
    return subprocess.Popen(
        reviewflow_command("score", "--data-dir", root, "--settle-seconds", "0"),
        cwd=PROJECT, env=env, stdout=open(host / "out.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT)


def _committed(url: str) -> int:
    with psycopg.connect(url) as db:
        return db.execute("SELECT COUNT(*) FROM scored_files").fetchone()[0]


@pytest.mark.timeout(900)
def test_three_scorers_and_a_sigkill_score_two_hundred_files_once(
        s3_env, trained_models, pg_cluster, subprocess_env, tmp_path):
    endpoint, fs = s3_env
    bucket = f"many-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/team"
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    expected, rejected, unreadable = _inbox(fs, root)
    url = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")

    hosts = [tmp_path / f"host{i}" for i in range(SCORERS + 1)]
    envs = [_host_env(subprocess_env, host, endpoint, url) for host in hosts]
    scorers = [_scorer(root, env, host) for env, host in zip(envs[:SCORERS], hosts)]
    victim = scorers[0]
    deadline = time.monotonic() + 600
    # SIGKILL the first scorer once the scorers are under way: files committed, more to go.
    while _committed_or_zero(url) < 10 and victim.poll() is None:
        assert time.monotonic() < deadline, "the scorers committed nothing in 10 minutes"
        time.sleep(0.2)
    if victim.poll() is None:
        os.kill(victim.pid, signal.SIGKILL)
    codes = [p.wait(timeout=600) for p in scorers]
    logs = [(h / "out.log").read_text(errors="replace") for h in hosts[:SCORERS]]
    assert codes[1:] == [0] * (SCORERS - 1), logs
    assert codes[0] in (0, -signal.SIGKILL), logs[0]

    last = _scorer(root, envs[SCORERS], hosts[SCORERS])
    assert last.wait(timeout=600) == 0, (hosts[SCORERS] / "out.log").read_text()

    local = tmp_path / "copy"
    fs.get(f"{root}/", str(local), recursive=True)
    got = Counter(scored_rows(local).column("review_id").to_pylist())
    assert got == expected  # every valid row once: none lost, none twice
    got_rejected = Counter(quarantined_rows(local).column("review_id").to_pylist())
    assert got_rejected == rejected
    assert not fs.ls(f"{root}/incoming") if fs.exists(f"{root}/incoming") else True
    archived = fs.glob(f"{root}/archive/*/*")
    quarantined = [p for p in fs.glob(f"{root}/quarantine/files/*/*")
                   if not p.endswith(".reason.json")]
    names = Counter(p.rpartition("/")[2].partition("-")[2] for p in archived)
    assert [name for name, n in names.items() if n > 1] == []  # each input archived once
    assert len(archived) == FILES - unreadable and len(quarantined) == unreadable
    assert not [p for p in fs.find(root) if p.endswith(".tmp")]  # no temporary left

    with psycopg.connect(url) as db:
        rows = db.execute("SELECT rows_scored, archived_at IS NOT NULL, scored_part"
                          " FROM scored_files").fetchall()
        assert db.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'"
                          ).fetchone()[0] == 0  # no lock left behind
    assert len(rows) == FILES - unreadable and all(archived for _, archived, _ in rows)
    assert sum(scored for scored, *_ in rows) == sum(expected.values())
    ledger_parts = {p.rpartition("/")[2] for *_, record in rows if record
                    for p in (json.loads(record) if record.startswith("[") else [record])}
    assert ledger_parts == {p.rpartition("/")[2] for p in fs.glob(f"{root}/scored/*/*.parquet")}
    for host in hosts:  # no state written on any "host"
        assert not list(host.rglob("ledger.sqlite")) and not list(host.rglob("*.lock"))


def _committed_or_zero(url: str) -> int:
    try:
        return _committed(url)
    except psycopg.errors.UndefinedTable:  # no scorer has created the schema yet
        return 0


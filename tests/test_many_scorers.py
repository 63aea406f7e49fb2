"""Several scorers at once on one ``s3://`` root, their state in one PostgreSQL, one of
them SIGKILLed mid-run: every row lands once (issue 30, item 4).

Real parts only: a PostgreSQL cluster (tests/postgres.py), moto's S3 server, the
session's Prefect server, and ``reviewflow score`` processes that share nothing else:
each has its own ``HOME``, ``TMPDIR``, ``PREFECT_HOME`` and working folder, and no
``REVIEWFLOW_STATE_DIR``, as workers on separate hosts or in fresh containers would.

How the hosts are simulated: as root, where ``ip netns`` works (tests/netns.py), each
scorer (and the run after them) runs in its own network namespace, joined to the test's
host by a veth on a bridge: its 127.0.0.1 is its own, and the database and the bucket
are reached at the host's bridge address, as a second machine on the LAN reaches them.
For that the test starts its own PostgreSQL and moto server listening on that address
(the session's listen on 127.0.0.1 only) and relays the session's Prefect API onto it;
it checks that a namespace reaches those and does not reach the host's loopback, and
that the SIGKILLed pid is the scorer itself, inside its namespace. Elsewhere (not root,
no namespaces) the scorers are separate processes on loopback with the session's
PostgreSQL and moto, and the test says so with a warning.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import pandas as pd
import psycopg
import pytest
from conftest import PROJECT, reviewflow_command

from tests import netns, postgres
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


@dataclass
class _Place:
    """Where the scorers run and what they reach there."""
    endpoint: str  # the S3 endpoint, as the scorers (and the test) reach it
    fs: object  # s3fs on it, for the test's own uploads and checks
    url: str  # the state database
    api: str  # the Prefect API
    net: netns.Network | None  # None: every scorer on the host's loopback

    def command(self, i: int, args: list[str]) -> list[str]:
        return self.net.exec(i, args) if self.net else args


@contextlib.contextmanager
def _place(request, s3_env, subprocess_env):
    """Separate network namespaces if this process can make them, else loopback."""
    why = netns.unavailable()
    if why is not None:
        message = f"scorers run on loopback, not in separate network namespaces: {why}"
        warnings.warn(message, stacklevel=1)
        print(message)
        endpoint, fs = s3_env
        url = request.getfixturevalue("pg_cluster").create_database(f"t{uuid.uuid4().hex[:12]}")
        yield _Place(endpoint, fs, url, subprocess_env["PREFECT_API_URL"], None)
        return
    if (why := postgres.available()) is not None:
        pytest.skip(why)
    import s3fs
    from moto.server import ThreadedMotoServer

    print(f"scorers run in {SCORERS + 1} network namespaces, one per host")
    with contextlib.ExitStack() as stack:  # torn down in reverse: the network last
        net = stack.enter_context(netns.hosts(SCORERS + 1))
        cluster = postgres.temporary_cluster(
            listen=(net.address,), hba=(f"host all all {net.subnet} scram-sha-256",))
        stack.callback(shutil.rmtree, cluster.folder, ignore_errors=True)
        stack.callback(cluster.stop)
        moto = ThreadedMotoServer(ip_address=net.address, port=0, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        api = urlsplit(subprocess_env["PREFECT_API_URL"])
        relay = stack.enter_context(netns.forward(net.address, (api.hostname, api.port)))
        _assert_isolated(net, s3_env[0], api, [(net.address, cluster.port),
                                               (net.address, port), (net.address, relay)])
        yield _Place(endpoint, s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True),
                     cluster.create_database(f"t{uuid.uuid4().hex[:12]}"),
                     api._replace(netloc=f"{net.address}:{relay}").geturl(), net)


def _assert_isolated(net: netns.Network, loopback_s3: str, api, served) -> None:
    """Every namespace reaches the servers on the bridge and none of the host's
    loopback-only ones (the session's moto and Prefect server), which the host reaches:
    the scorers really are cut off from 127.0.0.1 of the host."""
    session = urlsplit(loopback_s3)
    loopback = [(session.hostname, session.port), (api.hostname, api.port)]
    assert {host for host, _ in loopback} == {"127.0.0.1"}
    for target in loopback:
        socket.create_connection(target, 5).close()
    here = netns.namespace_of(os.getpid())
    for i in range(len(net.namespaces)):
        assert net.inode(i) != here
        assert net.reaches(i, served + loopback) == [True] * len(served) + [False] * 2


def _host_env(base: dict, host, place: _Place) -> dict:
    env = {k: v for k, v in base.items() if k != "REVIEWFLOW_STATE_DIR"}
    for name in ("home", "tmp", "prefect"):
        (host / name).mkdir(parents=True)
    env.update(HOME=str(host / "home"), TMPDIR=str(host / "tmp"),
               PREFECT_HOME=str(host / "prefect"), REVIEWFLOW_STATE_URL=place.url,
               REVIEWFLOW_STORAGE_OPTIONS=json.dumps({"endpoint_url": place.endpoint}),
               PREFECT_API_URL=place.api,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1")
    return env


def _scorer(place: _Place, i: int, root: str, env: dict, host) -> subprocess.Popen:
    """``reviewflow score`` on host ``i``."""
    command = reviewflow_command("score", "--data-dir", root, "--settle-seconds", "0")
    return subprocess.Popen(
        place.command(i, command),
        cwd=PROJECT, env=env, stdout=open(host / "out.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT)


def _assert_on_its_host(place: _Place, i: int, process: subprocess.Popen) -> None:
    """The pid is the scorer itself (``ip netns exec`` exec'd it, no wrapper left to
    take a signal in its place), in namespace ``i``."""
    if place.net is None or process.poll() is not None:
        return
    with open(f"/proc/{process.pid}/cmdline", "rb") as cmdline:
        assert b"flows.cli" in cmdline.read().split(b"\0")
    assert netns.namespace_of(process.pid) == place.net.inode(i)


def _committed(url: str) -> int:
    with psycopg.connect(url) as db:
        return db.execute("SELECT COUNT(*) FROM scored_files").fetchone()[0]


@pytest.mark.timeout(900)
def test_three_scorers_and_a_sigkill_score_two_hundred_files_once(
        s3_env, trained_models, subprocess_env, tmp_path, request):
    with _place(request, s3_env, subprocess_env) as place:
        _three_scorers_and_a_sigkill(place, trained_models, subprocess_env, tmp_path)


def _three_scorers_and_a_sigkill(place: _Place, trained_models, subprocess_env, tmp_path):
    fs, url = place.fs, place.url
    bucket = f"many-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/team"
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    expected, rejected, unreadable = _inbox(fs, root)

    hosts = [tmp_path / f"host{i}" for i in range(SCORERS + 1)]
    envs = [_host_env(subprocess_env, host, place) for host in hosts]
    scorers = []
    try:
        scorers += [_scorer(place, i, root, envs[i], hosts[i]) for i in range(SCORERS)]
        victim = scorers[0]
        deadline = time.monotonic() + 600
        # SIGKILL the first scorer once the scorers are under way: files committed, more to go.
        while _committed_or_zero(url) < 10 and victim.poll() is None:
            assert time.monotonic() < deadline, "the scorers committed nothing in 10 minutes"
            time.sleep(0.2)
        for i, scorer in enumerate(scorers):
            _assert_on_its_host(place, i, scorer)
        if victim.poll() is None:
            os.kill(victim.pid, signal.SIGKILL)
            print(f"SIGKILLed scorer pid {victim.pid} with {_committed(url)} files committed")
        codes = [p.wait(timeout=600) for p in scorers]
        logs = [(h / "out.log").read_text(errors="replace") for h in hosts[:SCORERS]]
        assert codes[1:] == [0] * (SCORERS - 1), logs
        assert codes[0] in (0, -signal.SIGKILL), logs[0]

        scorers.append(_scorer(place, SCORERS, root, envs[SCORERS], hosts[SCORERS]))
        assert scorers[-1].wait(timeout=600) == 0, (hosts[SCORERS] / "out.log").read_text()
    finally:  # a failed test leaves no scorer running (nor one keeping a namespace alive)
        for scorer in scorers:
            if scorer.poll() is None:
                scorer.kill()
                scorer.wait()

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
    assert postgres.advisory_locks_left(url) == 0  # no lock left behind, the killed run's too
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


"""A Prefect server that asks for a password, and a ``reviewflow`` command that sends a
wrong one or none (deployments/README.md, "What each failure looks like").

The server leaves its health route open (load balancers probe it), so the command's
check that its API answers (flows/prefect_api.py ``check_api``) passed, and the first
flow then ended in Prefect's traceback of a 401. Now ``check_credentials`` asks what
Prefect's client asks first, with the same header, and the command stops with one
``reviewflow:`` line and exit 4 before anything is read or moved; with the right
string the same command runs.

The same for a server whose own database (PostgreSQL) is down: ``/ready`` answers 503.

A real ``prefect server start`` with ``PREFECT_SERVER_API_AUTH_STRING``
(tests/prefect_server.py) and real ``reviewflow score`` and ``retrain`` processes.
"""

from __future__ import annotations

import subprocess

import pytest
from conftest import PROJECT, reviewflow_command

from tests.helpers import good_rows, layout_of, scored_parts, write_csv
from tests.prefect_server import PrefectServer

AUTH = "reviewflow-ops:op-failure-secret-5T"
COMMAND_TIMEOUT = 600

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(reviewflow_command(*args), cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def the_line(done: subprocess.CompletedProcess, code: int) -> str:
    """The command's one ``reviewflow:`` line, its last on standard error; no traceback."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    ours = [line for line in lines if line.startswith("reviewflow:")]
    assert len(ours) == 1 and lines[-1] == ours[0], done.stderr
    return ours[0]


def test_a_wrong_or_missing_prefect_auth_string_is_one_line_and_exit_4(
        labeled_root, subprocess_env, tmp_path):
    scoring_root = labeled_root  # a champion to score with, labeled files to retrain on
    write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 3))
    before = {p.name: p.read_bytes() for p in layout_of(scoring_root).incoming.iterdir()}
    (tmp_path / "server-files").mkdir()  # apart from the data root the fixture made there
    server = PrefectServer(tmp_path / "server-files", auth_string=AUTH)
    env = {k: v for k, v in subprocess_env.items() if k != "PREFECT_API_AUTH_STRING"}
    env.update(PREFECT_API_URL=server.api_url, REVIEWFLOW_SETTLE_SECONDS="0")
    try:
        server.start()
        done = run(dict(env, PREFECT_API_AUTH_STRING="reviewflow-ops:not-it-2W"),
                   "score", "--data-dir", str(scoring_root))
        wrong = the_line(done, 4)
        assert "answered 401 Unauthorized" in wrong and "is not the server's" in wrong, wrong
        assert "not-it-2W" not in done.stderr + done.stdout  # the string is not echoed
        missing = the_line(run(env, "retrain", "--data-dir", str(scoring_root)), 4)
        assert "PREFECT_API_AUTH_STRING is not set" in missing, missing
        assert {p.name: p.read_bytes() for p in layout_of(scoring_root).incoming.iterdir()} == before
        assert not scored_parts(scoring_root)
        # With the server's string the same command runs: the check lets it through.
        done = run(dict(env, PREFECT_API_AUTH_STRING=AUTH), "score", "--data-dir",
                   str(scoring_root))
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    assert len(scored_parts(scoring_root)) == 1
    print(wrong, missing, sep="\n")


def test_a_prefect_server_whose_database_is_down_is_one_line_and_exit_4(
        scoring_root, subprocess_env, tmp_path):
    """Prefect's server on PostgreSQL, that PostgreSQL stopped: ``/health`` still answers,
    ``/ready`` answers 503 (Prefect's readiness check), and the command says so in one
    line instead of Prefect's traceback of a 500 from the first flow."""
    import shutil

    from tests import postgres

    if (why := postgres.available()) is not None:
        pytest.skip(why)
    write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 3))
    cluster = postgres.temporary_cluster()
    try:
        database = cluster.create_database("prefect").replace(
            "postgresql://", "postgresql+asyncpg://", 1)
        (tmp_path / "server-files").mkdir()
        server = PrefectServer(tmp_path / "server-files", database_url=database,
                               auth_string=AUTH)
        try:
            server.start()
            cluster.stop()
            env = dict(subprocess_env, PREFECT_API_URL=server.api_url,
                       PREFECT_API_AUTH_STRING=AUTH, REVIEWFLOW_SETTLE_SECONDS="0")
            line = the_line(run(env, "score", "--data-dir", str(scoring_root)), 4)
        finally:
            server.stop()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)
    assert "not ready (503 from /ready)" in line and "its database" in line, line
    assert not scored_parts(scoring_root) and (layout_of(scoring_root).incoming / "a.csv").exists()
    print(line)

"""``make postgres``: the throwaway PostgreSQL of ``deployments/local_postgres.py`` (the
cluster the tests and the benchmarks start too), run as the Makefile runs it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import PROJECT

from deployments import local_postgres
from tests import postgres


def test_make_postgres_serves_a_cluster_until_it_is_stopped():
    recipe = re.search(r"^postgres:.*\n((?:\t.*\n)+)", (PROJECT / "Makefile").read_text(),
                       re.MULTILINE)
    assert recipe and "-m deployments.local_postgres $(CURDIR)/.postgres" in recipe[1]
    if (why := local_postgres.available()) is not None:
        pytest.skip(why)
    import psycopg

    parent = Path(tempfile.mkdtemp(prefix="reviewflow-pg-make-"))
    os.chmod(parent, 0o755)  # as root the postgres user must reach the folder
    folder, log = parent / "postgres", parent / "out.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "deployments.local_postgres",
                                   str(folder)], cwd=PROJECT, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + local_postgres.READY_SECONDS + 60
        while "is ready" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        said = log.read_text()
        url = re.search(r"export REVIEWFLOW_STATE_URL=(\S+)", said)[1]
        port = int((folder / "port").read_text())
        assert url == f"postgresql://{local_postgres.USER}@127.0.0.1:{port}/postgres"
        with psycopg.connect(url, password=local_postgres.PASSWORD) as db:
            assert db.execute("SELECT 1").fetchone() == (1,)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=90) == 0, log.read_text()
        assert (folder / "data" / "PG_VERSION").exists()  # kept for the next start
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(parent, ignore_errors=True)


def test_waiting_for_the_other_sessions_sees_one_end_after_the_first_look(pg_cluster):
    """``tests.postgres.advisory_locks_left`` waits for the other clients' sessions to
    end: one alive at its first look and closed after it is seen gone, and its advisory
    lock with it (PostgreSQL answers pg_stat_activity from one snapshot per transaction,
    so the waiting looks each in a transaction of its own)."""
    url = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")
    other = psycopg.connect(url, autocommit=True)
    other.execute("SELECT pg_advisory_lock(7)")

    def close_after_the_first_look() -> None:
        with psycopg.connect(url, autocommit=True) as watcher:
            deadline = time.monotonic() + 60
            while not watcher.execute(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND query LIKE '%%pg_stat_activity%%'"
                    ).fetchone()[0] and time.monotonic() < deadline:
                time.sleep(0.02)
        other.close()

    closer = threading.Thread(target=close_after_the_first_look)
    closer.start()
    try:
        assert postgres.advisory_locks_left(url, deadline_s=30) == 0
    finally:
        closer.join()
        other.close()

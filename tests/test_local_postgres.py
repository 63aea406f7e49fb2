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
import time
from pathlib import Path

import pytest
from conftest import PROJECT

from deployments import local_postgres


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

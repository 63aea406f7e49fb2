"""A Prefect server that asks for a password, as deployments/README.md runs it for other hosts.

1. ``prefect server start`` with ``PREFECT_SERVER_API_AUTH_STRING`` (tests/prefect_server.py):
   an API request without the string, or with a wrong one, gets 401; with it, 200. The
   health probe stays open (Prefect exempts it, and the harness waits on it);
2. the operator's commands with ``PREFECT_API_AUTH_STRING``: ``prefect work-pool create``
   makes a process pool, ``prefect worker start`` polls it, and a deployment of the tiny
   flow below runs on that worker to Completed. The flow run is the worker's subprocess
   and reports its own states, so it, too, got the string (from the worker's
   environment);
3. ``make server`` refuses to bind a non-loopback ``API_HOST`` when no auth string is set:
   one line, a non-zero exit, nothing started (it stops while make reads the Makefile).

The flow is defined here, not taken from flows/: a run that imports TensorFlow and Great
Expectations would add half a minute and show nothing more about the password.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prefect import flow

from tests.helpers import free_port
from tests.prefect_server import PREFECT, PROJECT, PrefectServer

AUTH = "reviewflow-ops:pf-auth-secret-9Z"
POOL = "auth-check"
RUN_TIMEOUT = 240
MAKE_TIMEOUT = 30

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def prefect_harness():
    """This module brings its own server; skip the suite's in-process test harness."""
    yield


@flow(name="auth-check")
def auth_check() -> str:
    return "ran"


def api_status(api_url: str, authorization: str | None) -> int:
    """HTTP status of a read of the flows (a POST filter, as Prefect's own clients send)."""
    request = urllib.request.Request(f"{api_url}/flows/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def basic(auth_string: str) -> str:
    return "Basic " + base64.b64encode(auth_string.encode()).decode()


def test_server_with_auth_string_refuses_strangers_and_runs_a_workers_deployment(tmp_path):
    server = PrefectServer(tmp_path, auth_string=AUTH)
    try:
        server.start()  # waits on /api/health, which answers without the string
        assert api_status(server.api_url, None) == 401
        assert api_status(server.api_url, basic("reviewflow-ops:wrong")) == 401
        assert api_status(server.api_url, basic(AUTH)) == 200

        server.prefect("pool", "work-pool", "create", POOL, "--type", "process")
        worker = server.processes.start(
            "worker", [PREFECT, "worker", "start", "--pool", POOL],
            PREFECT_WORKER_QUERY_SECONDS="1")
        with server.client() as client:
            deployment_id = client.create_deployment(
                flow_id=client.create_flow_from_name("auth-check"), name="with-password",
                work_pool_name=POOL, entrypoint="tests/test_prefect_auth.py:auth_check",
                pull_steps=[{"prefect.deployments.steps.set_working_directory":
                             {"directory": str(PROJECT)}}])
            flow_run = client.create_flow_run_from_deployment(deployment_id)
            deadline = time.monotonic() + RUN_TIMEOUT
            while not (flow_run := client.read_flow_run(flow_run.id)).state.is_final():
                if worker.poll() is not None:
                    pytest.fail(f"the worker exited with {worker.returncode}:\n"
                                f"{server.processes.tail('worker')}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the run is {flow_run.state.type} after {RUN_TIMEOUT} s:\n"
                                f"{server.processes.tails()}")
                time.sleep(1)
        assert flow_run.state.is_completed(), (
            f"the run ended {flow_run.state.type}: {flow_run.state.message}\n"
            f"{server.processes.tails()}")
        assert flow_run.work_pool_name == POOL
    finally:
        server.stop()
    # An HTTP 401 as httpx and Prefect print it (a bare "401" also occurs in ids and times).
    assert "401 Unauthorized" not in server.processes.tail("worker", chars=1_000_000)


def make_server(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``make server ARGS`` with no Prefect settings but ``env``. In a session of its own,
    killed whole if it outlives MAKE_TIMEOUT: should the guard ever let a server start,
    the test fails instead of leaving one behind."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("PREFECT_") or k == "PREFECT_HOME"}
    command = ["make", "--no-print-directory", "server", *args]
    process = subprocess.Popen(command, cwd=PROJECT, env={**clean, **env}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=MAKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{' '.join(command)} still ran after {MAKE_TIMEOUT} s")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_server_refuses_other_hosts_without_an_auth_string():
    port = free_port()
    refused = make_server("API_HOST=0.0.0.0", f"API_PORT={port}")
    assert refused.returncode != 0
    lines = (refused.stdout + refused.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "API_HOST=0.0.0.0" in lines[0] and "PREFECT_SERVER_API_AUTH_STRING" in lines[0]
    assert port_is_free(port)

    # With the string (or on loopback) the same target goes ahead: shown by a dry run,
    # which prints the commands without starting anything.
    allowed = make_server("-n", "API_HOST=0.0.0.0", f"API_PORT={port}",
                          PREFECT_SERVER_API_AUTH_STRING=AUTH)
    assert allowed.returncode == 0, allowed.stderr
    assert f"prefect server start --host 0.0.0.0 --port {port}" in allowed.stdout
    assert AUTH not in allowed.stdout
    assert make_server("-n", "API_HOST=127.0.0.1").returncode == 0

    # A postgresql:// URL without the asyncpg driver is refused the same way, in one line.
    plain = make_server(
        "-n", PREFECT_API_DATABASE_CONNECTION_URL="postgresql://prefect@127.0.0.1/prefect")
    assert plain.returncode != 0
    assert "postgresql+asyncpg://" in plain.stderr and len(plain.stderr.splitlines()) == 1

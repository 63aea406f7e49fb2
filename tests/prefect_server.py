"""A real ``prefect server start`` and other long-running Prefect processes for tests.

Shared by the stack smoke test (``test_prefect_stack.py``) and the end-to-end tests
(``test_deployments_e2e.py``, ``test_multi_host_e2e.py``, ``test_prefect_auth.py``).
Every process runs in a session of its own, with an explicit environment (nothing
from the caller's Prefect or reviewflow settings leaks in) that carries a marker; ``Processes.stop_all`` stops the process groups (TERM, then KILL)
and then kills any process still carrying the marker (workers start flow runs in
sessions of their own), so nothing outlives a test, also when it fails.
``what_prefect_keeps`` reads back what the API holds of a command's flow run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.helpers import free_port

PROJECT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))

SERVER_START_TIMEOUT = 120
COMMAND_TIMEOUT = 120
STOP_GRACE = 10


class Processes:
    """Long-running subprocesses in their own sessions, each logging to a file."""

    def __init__(self, logs: Path, env: dict[str, str], marker: str):
        self.logs, self.env, self.marker = logs, env, marker
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], **env: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(command, cwd=PROJECT, env={**self.env, **env},
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.started[name] = process
        return process

    def run(self, name: str, command: list[str], **env: str) -> str:
        """Run a command to completion within COMMAND_TIMEOUT; fail with its output.

        Returns what it printed.
        """
        self.start(name, command, **env)
        self.finish(name)
        return self.tail(name, chars=100_000)

    def finish(self, name: str) -> None:
        """Wait up to COMMAND_TIMEOUT for a started command; fail unless it exits 0."""
        process = self.started[name]
        try:
            returncode = process.wait(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} did not finish in {COMMAND_TIMEOUT} s:\n{self.tail(name)}")
        if returncode != 0:
            pytest.fail(f"{name} exited with {returncode}:\n{self.tail(name)}")

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def tails(self) -> str:
        return "\n".join(f"---- {name}.log ----\n{self.tail(name, 2500)}" for name in self.started)

    def stop_all(self, last: tuple[str, ...] = ("server",)) -> None:
        """Stop everything: the processes named in ``last`` after all the others.

        Workers go first, while the server can still answer their goodbye (a worker
        whose server is gone lingers in its shutdown). Each wave gets TERM, then KILL
        for whatever is left after STOP_GRACE s; finally processes still carrying the
        marker (flow runs, which the workers start in sessions of their own) are killed.
        """
        first = [p for name, p in self.started.items() if name not in last]
        then = [p for name, p in self.started.items() if name in last]
        for wave in (first, then):
            _stop_group_wave(wave)
        for pid in pids_with_marker(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _stop_group_wave(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        _signal_group(process.pid, signal.SIGKILL)  # also children left in the group
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session: the group id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass


def pids_with_marker(marker: str) -> list[int]:
    """Processes whose environment carries this test's marker (flow runs included)."""
    needle = f"REVIEWFLOW_E2E_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def wait_for_server(url: str, server: subprocess.Popen, processes: Processes) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited with {server.returncode}:\n"
                        f"{processes.tail('server')}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {SERVER_START_TIMEOUT} s:\n"
                f"{processes.tail('server')}")


class PrefectServer:
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME.

    Started with every service Prefect starts by default, the scheduler included:
    these tests exist to see the parts an operator relies on. ``processes`` starts the
    commands and workers that talk to it, with ``PREFECT_API_URL`` already set.

    ``database_url`` (a ``postgresql+asyncpg://`` URL) puts the server's database there
    instead of SQLite in its home; only the server's environment holds it. With
    ``auth_string`` (``user:password``) the server asks for it
    (``PREFECT_SERVER_API_AUTH_STRING``) and ``processes`` and ``client`` send it
    (``PREFECT_API_AUTH_STRING``).
    """

    def __init__(self, tmp_path: Path, *, database_url: str | None = None,
                 auth_string: str | None = None):
        home, logs = tmp_path / "prefect-home", tmp_path / "logs"
        home.mkdir()
        logs.mkdir()
        self.api_url = f"http://127.0.0.1:{free_port()}/api"
        self.marker = uuid.uuid4().hex
        # No TF_CPP_MIN_LOG_LEVEL (the suite's own is dropped too): workers and their
        # flow runs get the level tasks.model.backend sets, as an operator's do.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PREFECT_", "REVIEWFLOW_")) and k != "TF_CPP_MIN_LOG_LEVEL"}
        env.update({
            "PREFECT_HOME": str(home), "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "INFO",
            "GX_ANALYTICS_ENABLED": "False",
            "REVIEWFLOW_E2E_MARKER": self.marker,
            "COLUMNS": "250",  # rich tables of the `ls` commands, not cut to 80 columns
        })
        self.auth_string = auth_string
        self.server_env: dict[str, str] = {}
        if database_url is not None:
            self.server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        if auth_string is not None:
            env["PREFECT_API_AUTH_STRING"] = auth_string
            self.server_env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
        self.processes = Processes(logs, env, self.marker)

    def start(self) -> None:
        port = self.api_url.rsplit(":", 1)[1].split("/")[0]
        server = self.processes.start(
            "server", [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port,
                       "--no-ui"], **self.server_env)
        wait_for_server(self.api_url, server, self.processes)

    def prefect(self, name: str, *args: str, **env: str) -> str:
        """Run ``prefect ARGS`` against this server; fail unless it exits 0. Returns its output."""
        return self.processes.run(name, [PREFECT, *args], **env)

    def server_log(self) -> str:
        return self.processes.tail("server", chars=10_000_000)

    def stop(self) -> None:
        self.processes.stop_all()
        assert not pids_with_marker(self.marker), "processes outlived the teardown"

    def client(self):
        """A synchronous Prefect client for this server (use as a context manager)."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url, auth_string=self.auth_string)


# What TensorFlow's CUDA probe prints on a host without a GPU when its log level lets it
# (tasks/native_logs.py): "failed call to cuInit" and the absl lines around it.
CUDA_PROBE = ("cuInit", "cuda drivers", "CUDA error", "E0000", "absl::InitializeLog")


def worker_output(processes: Processes) -> dict[str, str]:
    """Each worker's log (``worker-…``): what it and the flow runs it started printed."""
    return {name: processes.tail(name, chars=10_000_000) for name in processes.started
            if name.startswith("worker-")}


def cuda_probe_lines(processes: Processes) -> list[str]:
    """The lines of the workers' logs that are TensorFlow's CUDA probe: none, on an
    operator's host without a GPU."""
    return [line for log in worker_output(processes).values() for line in log.splitlines()
            if any(mark in line for mark in CUDA_PROBE)]


def runs_of(client, deployment) -> list:
    """The flow runs of ``deployment``, through a client of ``PrefectServer.client``."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def wait_for_upcoming_runs(server: PrefectServer, client, deployments, timeout: float = 60
                           ) -> None:
    """Until the scheduler has filled in upcoming auto-scheduled runs for each deployment
    (it does within seconds of a deploy)."""
    deadline = time.monotonic() + timeout
    while not all(any(run.auto_scheduled and run.state_type.value == "SCHEDULED"
                      for run in runs_of(client, deployment)) for deployment in deployments):
        assert time.monotonic() < deadline, (
            f"no upcoming auto-scheduled runs:\n{server.processes.tail('server')}")
        time.sleep(1)


def scheduler_errors(server_log: str) -> list[str]:
    """Lines of a server log that show the scheduler failing.

    Only the scheduler's: on a busy 2-core host SQLite can answer "database is locked"
    to a worker's heartbeat, which the server logs as an ERROR and recovers from on the
    next heartbeat; that is noise here, not the break this looks for.
    """
    lines = server_log.splitlines()
    return [line for line in lines
            if ("| ERROR" in line and "schedul" in line.lower())
            or "InvalidRequestError" in line or "schedule_deployments" in line]


def what_prefect_keeps(stderr: str) -> str:
    """The flow run of a command's output as the Prefect API keeps it: its parameters,
    artifacts (the run summary among them) and logs, as one JSON text."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    run_id = stderr.split("/runs/flow-run/")[1].split()[0]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
        logs = client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    assert artifacts and logs  # the summary and the run's log are there to be searched
    return json.dumps([run.model_dump(mode="json"), [a.model_dump(mode="json") for a in artifacts],
                       [entry.model_dump(mode="json") for entry in logs]])

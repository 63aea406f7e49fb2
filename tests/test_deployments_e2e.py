"""End to end: deployments/prefect.yaml on a real Prefect server with real process workers.

One test, in the order an operator works (deployments/README.md):

1. ``prefect server start`` on 127.0.0.1 (a free port) with a temporary PREFECT_HOME;
   the scheduler service is off so no scheduled run races the runs started here;
2. ``prefect work-pool create ... --type process`` for both pools;
3. ``prefect deploy --all --prefect-file deployments/prefect.yaml`` with
   REVIEWFLOW_DATA_DIR set to a temporary data root (the yaml templates it into the
   ``data_dir`` parameter), alongside one ``prefect worker start`` per pool;
4. the sample labeled and incoming files copied into that root, then
   ``run_deployment('retrain-model/nightly')`` and ``run_deployment('score-reviews/scheduled')``
   through the API, each waited for with a timeout;
5. checks: both runs Completed on their pools, the registry has a champion whose
   ``model.keras`` exists, ``scored/`` holds the 120 sample rows.

Everything started here runs in its own session and carries a marker in its
environment; the teardown stops the workers' and then the server's process groups
(TERM, then KILL) and kills any process still carrying the marker (the workers start
flow runs in sessions of their own), so nothing outlives the test, also when it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SAMPLES = PROJECT / "data" / "samples"
PREFECT = str(Path(sys.executable).with_name("prefect"))
# `prefect deploy` goes through the workaround in deployments/__init__.py (FastAPI pin).
PREFECT_WITH_WORKAROUND = [sys.executable, "-c", "import deployments; deployments.prefect_cli()"]
POOLS = {"reviewflow-scoring": "score-reviews/scheduled",
         "reviewflow-training": "retrain-model/nightly"}

SERVER_START_TIMEOUT = 120
COMMAND_TIMEOUT = 120
RUN_TIMEOUT = 300
STOP_GRACE = 10

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def prefect_harness():
    """This module brings its own server; skip the suite's in-process test harness."""
    yield


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

    def run(self, name: str, command: list[str], **env: str) -> None:
        """Run a command to completion within COMMAND_TIMEOUT; fail with its output."""
        self.start(name, command, **env)
        self.finish(name)

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
        for pid in _pids_with_marker(self.marker):
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


def _pids_with_marker(marker: str) -> list[int]:
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


def copy_samples(kind: str, target: Path) -> None:
    """Copy sample files with an hour-old mtime: the deployment's settle_seconds is 60."""
    target.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600
    for sample in sorted((SAMPLES / kind).iterdir()):
        copied = target / sample.name
        shutil.copy2(sample, copied)
        os.utime(copied, (old, old))


def run_and_wait(api_url: str, name: str, processes: Processes):
    """Start a run of deployment ``name`` through the API and wait for a final state."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        flow_run = run_deployment(name, timeout=RUN_TIMEOUT, poll_interval=1)
    state = flow_run.state
    assert state is not None and state.is_final(), (
        f"{name} not finished after {RUN_TIMEOUT} s (state {state and state.type}):\n"
        f"{processes.tails()}")
    assert state.is_completed(), (
        f"{name} ended {state.type}: {state.message}\n{processes.tails()}")
    return flow_run


def read_deployment(api_url: str, name: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            return client.read_deployment_by_name(name)


def test_yaml_deployments_run_on_process_workers(tmp_path):
    data = tmp_path / "data"
    home = tmp_path / "prefect-home"
    logs = tmp_path / "logs"
    home.mkdir()
    logs.mkdir()
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    marker = uuid.uuid4().hex
    # Explicit environment for every subprocess: nothing from the caller's Prefect or
    # reviewflow settings leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REVIEWFLOW_"))}
    env.update({
        "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "INFO",
        "GX_ANALYTICS_ENABLED": "False", "TF_CPP_MIN_LOG_LEVEL": "2",
        "REVIEWFLOW_E2E_MARKER": marker,
    })
    processes = Processes(logs, env, marker)
    try:
        server = processes.start(
            "server", [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port),
                       "--no-ui"],
            # No scheduled runs: only the runs this test starts may touch the data root.
            PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
            PREFECT_SERVER_LOGGING_LEVEL="WARNING")
        copy_samples("labeled", data / "labeled")
        copy_samples("incoming", data / "incoming")
        wait_for_server(api_url, server, processes)

        for pool in POOLS:
            processes.start(f"pool-{pool}", [PREFECT, "work-pool", "create", pool,
                                             "--type", "process"])
        for pool in POOLS:
            processes.finish(f"pool-{pool}")

        # Workers start while the deployments are made; they poll every second.
        for pool in POOLS:
            processes.start(f"worker-{pool}", [PREFECT, "worker", "start", "--pool", pool],
                            PREFECT_WORKER_QUERY_SECONDS="1")
        processes.run("deploy", [*PREFECT_WITH_WORKAROUND, "--no-prompt", "deploy", "--all",
                                 "--prefect-file", "deployments/prefect.yaml"],
                      REVIEWFLOW_DATA_DIR=str(data))

        scoring = read_deployment(api_url, "score-reviews/scheduled")
        training = read_deployment(api_url, "retrain-model/nightly")
        assert scoring.work_pool_name == "reviewflow-scoring"
        assert training.work_pool_name == "reviewflow-training"
        assert scoring.parameters["data_dir"] == str(data)
        assert training.parameters["data_dir"] == str(data)
        assert scoring.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                       {"directory": str(PROJECT)}}]
        assert [s.schedule.interval.total_seconds() for s in scoring.schedules] == [900]
        assert [s.schedule.cron for s in training.schedules] == ["30 2 * * *"]
        assert training.global_concurrency_limit.limit == 1

        retrain_run = run_and_wait(api_url, "retrain-model/nightly", processes)
        score_run = run_and_wait(api_url, "score-reviews/scheduled", processes)
        assert retrain_run.work_pool_name == "reviewflow-training"
        assert score_run.work_pool_name == "reviewflow-scoring"
    finally:
        processes.stop_all()

    assert not _pids_with_marker(marker), "processes outlived the teardown"
    champion = json.loads((data / "models" / "champion.json").read_text())
    assert (data / "models" / "versions" / champion["version"] / "model.keras").is_file()

    import pyarrow.dataset as ds

    scored = ds.dataset(data / "scored", format="parquet", partitioning="hive").to_table()
    assert scored.num_rows == 120
    assert set(scored.column("model_version").to_pylist()) == {champion["version"]}
    assert not [p for p in (data / "incoming").iterdir() if p.is_file()], "inputs not archived"

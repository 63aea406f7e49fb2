"""End to end: deployments/prefect.yaml on a real Prefect server with real process workers,
its scheduler on, as an operator runs it (deployments/README.md).

1. ``prefect server start`` on 127.0.0.1 (a free port) with a temporary PREFECT_HOME and
   every service Prefect starts by default, the scheduler included (looping every 5 s);
2. ``prefect work-pool create ... --type process`` for both pools, one
   ``prefect worker start`` per pool;
3. plain ``prefect deploy --all --prefect-file deployments/prefect.yaml`` with
   REVIEWFLOW_DATA_DIR set to a temporary data root (the yaml templates it into the
   ``data_dir`` parameter); both deployments then show upcoming auto-scheduled runs;
4. the sample labeled files copied in and ``retrain-model/nightly`` run through the API
   (a champion is needed before anything can be scored);
5. the sample incoming files copied in (settled: an hour old) and a 60 s interval
   schedule, anchored 15 s ahead, added to ``score-reviews/scheduled`` with ``prefect deployment schedule
   create``; nobody starts a scoring run: the scheduler does, the worker runs it;
6. checks: that auto-scheduled run Completed on the scoring pool, ``scored/`` holds the
   120 sample rows from the champion, the server's log holds no error, and neither
   worker (nor a flow run it started) printed TensorFlow's CUDA probe.

Everything started here is stopped by the teardown (``tests/prefect_server.py``), also
when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import scored_rows
from tests.prefect_server import (
    PREFECT,
    PROJECT,
    PrefectServer,
    cuda_probe_lines,
    runs_of,
    scheduler_errors,
    wait_for_upcoming_runs,
    worker_output,
)

SAMPLES = PROJECT / "data" / "samples"
POOLS = {"reviewflow-scoring": "score-reviews/scheduled",
         "reviewflow-training": "retrain-model/nightly"}

RUN_TIMEOUT = 300
SCHEDULED_RUN_TIMEOUT = 300  # a 60 s interval: the next slot, then the run itself
ANCHOR_AHEAD_SECONDS = 15  # the first slot: time for the scheduler to see the schedule
SCHEDULER_LOOP_SECONDS = 5

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def prefect_harness():
    """This module brings its own server; skip the suite's in-process test harness."""
    yield


def copy_samples(kind: str, target: Path) -> None:
    """Copy sample files with an hour-old mtime: the deployment's settle_seconds is 60."""
    target.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600
    for sample in sorted((SAMPLES / kind).iterdir()):
        copied = target / sample.name
        shutil.copy2(sample, copied)
        os.utime(copied, (old, old))


def run_and_wait(server: PrefectServer, name: str):
    """Start a run of deployment ``name`` through the API and wait for a final state."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        flow_run = run_deployment(name, timeout=RUN_TIMEOUT, poll_interval=1)
    state = flow_run.state
    assert state is not None and state.is_final(), (
        f"{name} not finished after {RUN_TIMEOUT} s (state {state and state.type}):\n"
        f"{server.processes.tails()}")
    assert state.is_completed(), (
        f"{name} ended {state.type}: {state.message}\n{server.processes.tails()}")
    return flow_run


def wait_for_completed_auto_scheduled_run(server: PrefectServer, deployment):
    """The first run of ``deployment`` that the scheduler made and that Completed."""
    deadline = time.monotonic() + SCHEDULED_RUN_TIMEOUT
    with server.client() as client:
        while time.monotonic() < deadline:
            done = [run for run in runs_of(client, deployment)
                    if run.auto_scheduled and run.state_type.value == "COMPLETED"]
            if done:
                return done[0]
            time.sleep(2)
        states = [(run.name, run.auto_scheduled, run.state_type.value)
                  for run in runs_of(client, deployment)]
    pytest.fail(f"no auto-scheduled run of {deployment.name} completed in "
                f"{SCHEDULED_RUN_TIMEOUT} s; runs: {states}\n{server.processes.tails()}")


def test_yaml_deployments_run_on_schedule_on_process_workers(tmp_path):
    data = tmp_path / "data"
    server = PrefectServer(tmp_path)
    # The scheduler still runs as for an operator, only more often than its 60 s default:
    # a schedule added to a deployment (step 5) is seen at the scheduler's next loop, and
    # the anchored first slot below is then never missed.
    server.server_env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(SCHEDULER_LOOP_SECONDS)
    try:
        server.start()
        for pool in POOLS:
            server.prefect(f"pool-{pool}", "work-pool", "create", pool, "--type", "process")
        # Workers start while the deployments are made; they poll every second.
        for pool in POOLS:
            server.processes.start(f"worker-{pool}",
                                   [PREFECT, "worker", "start", "--pool", pool],
                                   PREFECT_WORKER_QUERY_SECONDS="1")
        server.prefect("deploy", "--no-prompt", "deploy", "--all",
                       "--prefect-file", "deployments/prefect.yaml",
                       REVIEWFLOW_DATA_DIR=str(data))

        with server.client() as client:
            scoring = client.read_deployment_by_name("score-reviews/scheduled")
            training = client.read_deployment_by_name("retrain-model/nightly")
            assert scoring.work_pool_name == "reviewflow-scoring"
            assert training.work_pool_name == "reviewflow-training"
            assert scoring.parameters["data_dir"] == str(data)
            assert training.parameters["data_dir"] == str(data)
            assert scoring.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                           {"directory": str(PROJECT)}}]
            assert [s.schedule.interval.total_seconds() for s in scoring.schedules] == [900]
            assert [s.schedule.cron for s in training.schedules] == ["30 2 * * *"]
            assert training.global_concurrency_limit.limit == 1
            wait_for_upcoming_runs(server, client, (scoring, training))

        copy_samples("labeled", data / "labeled")
        retrain_run = run_and_wait(server, "retrain-model/nightly")
        assert retrain_run.work_pool_name == "reviewflow-training"

        copy_samples("incoming", data / "incoming")
        # Anchored a little ahead, so the first slot is seconds away rather than up to a
        # minute; a slot the scheduler misses on a busy host only means the next one.
        anchor = datetime.now(UTC) + timedelta(seconds=ANCHOR_AHEAD_SECONDS)
        began = time.monotonic()
        server.prefect("schedule", "deployment", "schedule", "create",
                       "score-reviews/scheduled", "--interval", "60",
                       "--anchor-date", anchor.isoformat())
        score_run = wait_for_completed_auto_scheduled_run(server, scoring)
        print(f"the auto-scheduled scoring run completed {time.monotonic() - began:.0f} s "
              "after its schedule was made")
        assert score_run.work_pool_name == "reviewflow-scoring"
        with server.client() as client:
            scoring_runs = runs_of(client, scoring)
        # Nobody started a scoring run: every one of them came from the scheduler.
        assert all(run.auto_scheduled for run in scoring_runs)
    finally:
        server.stop()

    assert scheduler_errors(server.server_log()) == []
    # The flow runs' output is in the workers' logs, and none is the CUDA probe.
    assert "scoring on " in "".join(worker_output(server.processes).values())
    assert cuda_probe_lines(server.processes) == []
    champion = json.loads((data / "models" / "champion.json").read_text())
    assert (data / "models" / "versions" / champion["version"] / "model.keras").is_file()

    scored = scored_rows(data)
    assert scored.num_rows == 120
    assert set(scored.column("model_version").to_pylist()) == {champion["version"]}
    assert not [p for p in (data / "incoming").iterdir() if p.is_file()], "inputs not archived"

"""The temporary Prefect API of a command run without a server (flows/prefect_api.py).

These tests run ``reviewflow score`` the way a user does without ``make server``: no
PREFECT_API_URL, a Prefect home of their own, so the command starts its own temporary
API server (real uvicorn, real database migrations).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT, reviewflow_command

from flows.prefect_api import DEFAULT_STARTUP_SECONDS, TIMEOUT_VARIABLE, startup_seconds
from tests.helpers import layout_of, scored_parts

SERVER_APP = "prefect.server.api.server:create_app"


def processes_using(prefect_home: Path) -> list[int]:
    """Ids of the live processes whose environment names this Prefect home."""
    marker = f"PREFECT_HOME={prefect_home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


@pytest.fixture
def no_server_env(tmp_path):
    """Environment of a user with no Prefect server: the command starts its own.

    Whatever a failing test leaves running under this Prefect home is killed after it.
    """
    home = tmp_path / "prefect-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REVIEWFLOW_") and k not in ("PREFECT_API_URL", TIMEOUT_VARIABLE)}
    env.update(PREFECT_HOME=str(home), PREFECT_LOGGING_LEVEL="INFO",
               REVIEWFLOW_SETTLE_SECONDS="0")
    yield env
    for pid in processes_using(home):
        os.kill(pid, signal.SIGKILL)


def make_inbox(root: Path) -> None:
    for f in range(2):
        rows = "".join(f"f{f}-{i},The film was a delight take {i}.\n" for i in range(20))
        (layout_of(root).incoming / f"batch-{f}.csv").write_text("review_id,text\n" + rows)


def test_the_default_wait_is_long_and_the_users_setting_wins(monkeypatch):
    from prefect.settings import Settings

    monkeypatch.delenv(TIMEOUT_VARIABLE, raising=False)
    assert startup_seconds(Settings()) == DEFAULT_STARTUP_SECONDS >= 120  # Prefect's is 20
    monkeypatch.setenv(TIMEOUT_VARIABLE, "45")
    assert startup_seconds(Settings()) == 45


def test_an_api_that_does_not_start_in_time_is_one_line_and_exit_4(scoring_root, no_server_env):
    """A start slower than the user's timeout (1 s: uvicorn alone takes longer to import):
    exit code 4, one line that names both ways out, no traceback, inputs untouched and
    the half-started server gone."""
    make_inbox(scoring_root)
    env = dict(no_server_env, **{TIMEOUT_VARIABLE: "1"})
    line = score_expecting_exit_4(scoring_root, env)
    assert "did not answer within 1 s" in line
    assert "make server" in line and "PREFECT_API_URL=" in line
    assert f"{TIMEOUT_VARIABLE}=" in line
    assert processes_using(Path(env["PREFECT_HOME"])) == []


def score_expecting_exit_4(scoring_root: Path, env: dict) -> str:
    """Run ``reviewflow score`` on the two-file inbox; it must exit 4 with one
    "reviewflow:" line and no traceback, leaving the inbox as it was. Returns the line."""
    process = subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root)),
                             cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    output = process.stdout + process.stderr
    assert process.returncode == 4, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in process.stderr.splitlines() if line.startswith("reviewflow:")]
    assert len(lines) == 1, output[-3000:]
    assert sorted(p.name for p in layout_of(scoring_root).incoming.iterdir()) == [
        "batch-0.csv", "batch-1.csv"]
    assert not scored_parts(scoring_root)
    return lines[0]


def test_a_server_that_is_down_is_one_line_and_exit_4(scoring_root, no_server_env):
    """PREFECT_API_URL names a port where nothing listens (the user's server is down):
    after the short wait for a server still starting, exit code 4 and one line saying
    which URL and what to do; no traceback, inputs untouched."""
    import socket

    make_inbox(scoring_root)
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(no_server_env, PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    line = score_expecting_exit_4(scoring_root, env)
    assert f"127.0.0.1:{port}/api" in line and "did not answer" in line
    assert "make server" in line and "unset PREFECT_API_URL" in line


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_run_killed_with_sigkill_leaves_no_process_behind(scoring_root, no_server_env):
    """SIGKILL at the failpoint after the ledger commit: the temporary server the run
    started dies with it, so the run's output pipes close and nothing is left running."""
    make_inbox(scoring_root)
    env = dict(no_server_env, REVIEWFLOW_FAILPOINT="score:ledger-committed")
    process = subprocess.Popen(reviewflow_command("score", "--data-dir", str(scoring_root)),
                               cwd=PROJECT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        # An orphaned server would hold the pipe open and this would time out.
        output, _ = process.communicate(timeout=480)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the run's output never ended: a process it started still holds its "
                    f"pipes: {processes_using(Path(env['PREFECT_HOME']))}")
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    assert "Starting temporary server" in output, output[-3000:]  # there was one to leave
    deadline = time.monotonic() + 30
    while (left := processes_using(Path(env["PREFECT_HOME"]))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"left running after the kill: {left}"
    # The run got as far as the failpoint: both small files (one bundle, one ledger
    # transaction) committed, neither archived yet.
    assert len(scored_parts(scoring_root)) == 2
    assert not list(layout_of(scoring_root).archive.rglob("*.csv"))


def test_a_run_without_a_server_scores_and_prints_no_library_noise(scoring_root, no_server_env):
    """The plain command in a user's shell (no server, no TF_CPP_MIN_LOG_LEVEL): it
    starts its own temporary API, scores both files, and what it prints is the run's
    own: no TensorFlow start-up lines, no CUDA probe, no telemetry errors; the device
    is named. The server it started is gone afterwards."""
    make_inbox(scoring_root)
    env = {k: v for k, v in no_server_env.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root)),
                             cwd=PROJECT, env=env, capture_output=True, text=True, timeout=480)
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-3000:]
    assert "scored 40 rows from 2 files" in process.stdout, output[-3000:]
    assert "Starting temporary server on http://127.0.0.1:" in output
    assert "scoring on CPU" in output or "scoring on GPU" in output
    for noise in ("absl::InitializeLog", "I0000", "W0000", "E0000", "cuInit", "cuda drivers",
                  "telemetry", "ERROR", "Traceback"):
        assert noise not in output, f"{noise!r} printed:\n{output[-3000:]}"
    assert processes_using(Path(env["PREFECT_HOME"])) == []

"""What an operator sees when a worker's object store or database is wrong
(deployments/README.md): one ``reviewflow:`` line naming what could not be reached and
what to check, exit 1, no traceback, nothing moved.

The database that is down, and one lost mid-run, are tested in
tests/test_state_pg_kills.py; a Prefect server that asks for a password in
tests/test_prefect_auth.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import uuid

import pytest
from conftest import PROJECT, reviewflow_command

from tests.helpers import good_rows, layout_of


def closed_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(reviewflow_command(*args), cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=300)


def one_line(done: subprocess.CompletedProcess) -> str:
    said = (done.stdout + done.stderr).strip()
    assert "Traceback" not in said, said[-3000:]
    lines = [line for line in said.splitlines() if line.startswith("reviewflow:")]
    assert len(lines) == 1, said[-3000:]
    return lines[0]


@pytest.mark.parametrize("command", [["score"], ["retrain"], ["models", "list"]])
def test_an_unreachable_bucket_is_one_line_and_exit_1(command, subprocess_env, tmp_path):
    port = closed_port()
    env = {**subprocess_env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "REVIEWFLOW_STATE_DIR": str(tmp_path / "state"),
           "REVIEWFLOW_STORAGE_OPTIONS": json.dumps({"endpoint_url": f"http://127.0.0.1:{port}"})}
    done = run([*command, "--data-dir", "s3://reviews/team"], env)
    assert done.returncode == 1, done.stderr[-3000:]
    line = one_line(done)
    assert "cannot reach the object store of s3://reviews/team" in line
    assert f"127.0.0.1:{port}" in line and "endpoint_url" in line


def test_a_wrong_database_password_is_one_line_and_exit_1(pg_cluster, scoring_root,
                                                          subprocess_env):
    from tests.postgres import PASSWORD

    url = pg_cluster.create_database(f"wrong_{uuid.uuid4().hex[:8]}")
    wrong = url.replace(f":{PASSWORD}@", ":not-the-password@")
    (layout_of(scoring_root).incoming / "a.csv").write_text(
        "review_id,text\n" + "".join(f"{r['review_id']},{r['text']}\n"
                                     for r in good_rows("a", 3)))
    done = run(["score", "--data-dir", str(scoring_root), "--settle-seconds", "0"],
               {**subprocess_env, "REVIEWFLOW_STATE_URL": wrong})
    assert done.returncode == 1, done.stderr[-3000:]
    line = one_line(done)
    assert "refused the login" in line and "password authentication failed" in line
    assert "not-the-password" not in done.stdout + done.stderr
    assert (layout_of(scoring_root).incoming / "a.csv").exists()  # nothing moved


def test_a_missing_bucket_is_one_line_and_exit_1(s3_endpoint, subprocess_env, tmp_path):
    env = {**subprocess_env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "REVIEWFLOW_STATE_DIR": str(tmp_path / "state"),
           "REVIEWFLOW_STORAGE_OPTIONS": json.dumps({"endpoint_url": s3_endpoint})}
    done = run(["score", "--data-dir", "s3://no-such-bucket-here/team"], env)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "the bucket s3://no-such-bucket-here of the data root" in one_line(done)

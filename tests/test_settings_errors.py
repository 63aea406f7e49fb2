"""A setting with a value it cannot take stops a command in one line naming the setting
and why, exit 2, never with pydantic's traceback (whose text repeats values given)."""

from __future__ import annotations

import subprocess

import pytest
from conftest import PROJECT, reviewflow_command

# A state URL in the environment of each: not one of them may repeat it.
STATE_URL = "postgresql://rf:Lq7Vw-Zx9Tk@db/state"


@pytest.mark.parametrize("command, env, named", [
    (["models", "list", "--data-dir", "s3://reviews/team"], {"REVIEWFLOW_STATE_URL": ""},
     "REVIEWFLOW_STATE_DIR"),  # a URL root with neither a state folder nor a state URL
    (["score"], {"REVIEWFLOW_READ_BATCH_ROWS": "0"}, "REVIEWFLOW_READ_BATCH_ROWS"),
    (["retrain"], {"REVIEWFLOW_TASK_RUNNER": "ray"}, "REVIEWFLOW_TASK_RUNNER"),
])
def test_a_setting_that_cannot_be_taken_is_one_line(command, env, named, data_dir,
                                                   subprocess_env):
    args = command if "--data-dir" in command else [*command, "--data-dir", str(data_dir)]
    done = subprocess.run(reviewflow_command(*args), cwd=PROJECT,
                          env={**subprocess_env, "REVIEWFLOW_STATE_URL": STATE_URL, **env},
                          capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("reviewflow: ") and named in lines[0], lines[0]
    assert "Lq7Vw" not in done.stdout + done.stderr

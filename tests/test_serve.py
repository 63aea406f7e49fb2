"""deployments/serve.py: its data root comes from the settings, as every command's does, and
its deployments carry deployments/prefect.yaml's parameters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from conftest import PROJECT

from deployments.serve import PREFECT_YAML, build_deployments, data_dir_from_settings


def test_the_data_root_is_the_settings_one(tmp_path, monkeypatch):
    assert data_dir_from_settings() == PROJECT / "data"  # none set: the project's
    monkeypatch.chdir(tmp_path)  # the runs start elsewhere: a folder is made absolute
    monkeypatch.setenv("REVIEWFLOW_DATA_DIR", "reviews")
    assert data_dir_from_settings() == tmp_path.resolve() / "reviews"
    monkeypatch.setenv("REVIEWFLOW_DATA_DIR", "~/reviews")
    assert data_dir_from_settings() == Path.home().resolve() / "reviews"
    # A bucket stays a URL, with the state the settings name for it.
    monkeypatch.setenv("REVIEWFLOW_DATA_DIR", "s3://reviews/team/")
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state"))
    assert data_dir_from_settings() == "s3://reviews/team"


def test_a_setting_it_cannot_take_stops_it_in_one_line(subprocess_env):
    # Run as documented; PYTHONPATH: this checkout's packages, not an installed copy's.
    done = subprocess.run([sys.executable, "deployments/serve.py"], cwd=PROJECT,
                          env={**subprocess_env, "PYTHONPATH": str(PROJECT),
                               "REVIEWFLOW_READ_BATCH_ROWS": "0"},
                          capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("reviewflow: REVIEWFLOW_READ_BATCH_ROWS"), lines[0]


def test_each_deployment_takes_the_yaml_parameters_and_the_data_root(tmp_path):
    specs = {spec["name"]: spec for spec in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    served = {deployment.name: deployment for deployment in build_deployments(tmp_path)}
    assert set(served) == {f"{name}-served" for name in specs}
    for name, spec in specs.items():
        assert served[f"{name}-served"].parameters == {**spec["parameters"],
                                                       "data_dir": str(tmp_path)}

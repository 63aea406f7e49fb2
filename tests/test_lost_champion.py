"""Every command that reads the champion stops when the registry lost it (issue 37).

A registry that had a champion and lost its pointer (champion.json deleted, or naming
a version whose model is gone) is not a registry before its first champion: a
retraining must not promote its candidate as the first champion there, a rollback must
not answer that there is no earlier champion, and ``reviewflow demo`` must not train a
new one over it. Each stops before it changes anything, in one line with exit 2 naming
the repair (``reviewflow models promote VERSION --reason …``), through the command and
through the flow (its run's state read back from Prefect's server), on a local root
and on an s3:// one. The repair itself still works.
"""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from conftest import SAMPLES
from prefect import get_client
from prefect.client.schemas.objects import StateType

from tasks.layout import CHAMPION_FILE, MODEL_FILE, VERSIONS_FOLDER
from tasks.storage.objects import as_location
from tasks.training.registry import Registry
from tests.helpers import layout_of

REPAIR = "reviewflow models promote VERSION --reason"


def cli(capsys, *args: str) -> tuple[int, list[str]]:
    """``reviewflow ARGS``: its exit code and the lines it wrote to stderr."""
    from flows.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    return stopped.value.code, capsys.readouterr().err.strip().splitlines()


def retrain_state(root: str) -> StateType:
    """The state Prefect's server recorded for one retrain-model run on ``root``."""
    from flows.retrain_model import retrain_model

    state = retrain_model(data_dir=root, epochs=1, return_state=True)
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).state.type


def damage(registry: Registry, how: str) -> str:
    """Lose the champion ``how``; returns the version that was champion."""
    champion = registry.champion_version()
    if how == "pointer removed":
        registry.pointer.unlink()
    else:  # the model of the version champion.json names
        (registry.versions / champion / MODEL_FILE).unlink()
    return champion


@pytest.mark.parametrize("how", ["pointer removed", "model removed"])
def test_a_retraining_on_a_registry_that_lost_its_champion_stops(labeled_root, capsys, how):
    registry = Registry(layout_of(labeled_root).models)
    champion = damage(registry, how)
    versions, history = registry.list_versions(), registry.read_history()
    assert retrain_state(str(labeled_root)) == StateType.FAILED
    code, lines = cli(capsys, "retrain", "--epochs", "1", "--data-dir", str(labeled_root))
    assert code == 2 and len(lines) == 1 and REPAIR in lines[0], lines
    assert CHAMPION_FILE in lines[0] and (champion in lines[0] or how == "model removed")
    # Nothing trained, published or promoted.
    assert registry.list_versions() == versions and registry.read_history() == history
    assert registry.current_version() == (None if how == "pointer removed" else champion)


def test_a_rollback_and_the_demo_on_a_registry_that_lost_its_champion_stop(labeled_root,
                                                                           capsys):
    registry = Registry(layout_of(labeled_root).models)
    champion = damage(registry, "pointer removed")
    code, lines = cli(capsys, "models", "rollback", "--reason", "a test",
                      "--data-dir", str(labeled_root))
    assert code == 2 and len(lines) == 1 and REPAIR in lines[0] and champion in lines[0], lines
    code, lines = cli(capsys, "demo", "--data-dir", str(labeled_root))
    assert code == 2 and len(lines) == 1 and REPAIR in lines[0], lines
    assert [v["version"] for v in registry.list_versions()] == [champion]  # nothing trained
    assert not list(layout_of(labeled_root).scored.rglob("*.parquet"))
    # The repair the line names.
    code = _promote(capsys, labeled_root, champion)
    assert code == 0 and registry.champion_version() == champion


def _promote(capsys, root, version: str) -> int:
    from flows.cli import main

    code = main(["models", "promote", version, "--reason", "champion.json was lost",
                 "--data-dir", str(root)])
    assert capsys.readouterr().out.strip() == f"champion is now {version}"
    return code


def test_on_s3_a_retraining_and_a_rollback_on_a_lost_champion_stop(
        s3_env, trained_models, tmp_path, monkeypatch, capsys):
    endpoint, fs = s3_env
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint}))
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state"))
    bucket = f"lost-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/reviews"
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    labeled = tmp_path / "labeled"
    shutil.copytree(SAMPLES / "labeled", labeled)
    fs.put(str(labeled), f"{root}/labeled", recursive=True)
    registry = Registry(as_location(f"{root}/models", {"endpoint_url": endpoint}))
    champion = registry.champion_version()
    fs.rm_file(f"{root}/models/{CHAMPION_FILE}")
    fs.invalidate_cache()
    versions = fs.ls(f"{root}/models/{VERSIONS_FOLDER}")

    assert retrain_state(root) == StateType.FAILED
    code, lines = cli(capsys, "retrain", "--epochs", "1", "--data-dir", root)
    assert code == 2 and len(lines) == 1 and REPAIR in lines[0] and champion in lines[0], lines
    code, lines = cli(capsys, "models", "rollback", "--reason", "a test", "--data-dir", root)
    assert code == 2 and len(lines) == 1 and REPAIR in lines[0] and champion in lines[0], lines
    fs.invalidate_cache()
    assert fs.ls(f"{root}/models/{VERSIONS_FOLDER}") == versions
    assert not fs.exists(f"{root}/models/{CHAMPION_FILE}")
    assert _promote(capsys, root, champion) == 0
    assert registry.champion_version() == champion

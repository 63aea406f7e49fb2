"""Changes of the champion pointer that race each other: a retraining's promotion against
`models promote` and `models rollback` run meanwhile, and two rollbacks at once.

Real processes, real locks: a pause point (``tasks.failpoints``) holds one process at
the moment that matters while the test runs another `reviewflow` command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PROJECT, SAMPLES, reviewflow_command

from tasks.training.registry import Registry
from tests.helpers import add_version, layout_of

PAUSE_SECONDS = 300  # how long the test waits for a process to reach its pause point


def start(argv: list[str], env: dict, log: Path, pause: str | None = None,
          pause_dir: Path | None = None) -> subprocess.Popen:
    env = dict(env)
    if pause:
        pause_dir.mkdir()
        env.update(REVIEWFLOW_PAUSEPOINT=pause, REVIEWFLOW_PAUSEPOINT_DIR=str(pause_dir))
    with open(log, "w") as out:
        return subprocess.Popen(reviewflow_command(*argv), cwd=PROJECT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_paused(process: subprocess.Popen, pause_dir: Path, log: Path) -> None:
    deadline = time.monotonic() + PAUSE_SECONDS
    while not (pause_dir / "reached").exists():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the process never reached its pause point"
        time.sleep(0.05)


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> int:
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        print(log.read_text()[-3000:])


def history(root: Path) -> list[dict]:
    return Registry(layout_of(root).models).read_history()


@pytest.fixture
def champion_with_history(scoring_root) -> Path:
    """Champion A (the sample's seed model, previous champion B); the sample's labeled
    files; a retraining on them with the ngram architecture beats A by far (1.0 against
    0.68 on the sample's gate rows)."""
    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, scoring_root / "labeled" / sample.name)
    registry = Registry(layout_of(scoring_root).models)
    first = registry.champion_version()
    registry.promote_by_hand(add_version(scoring_root, "manual-b"), "test")
    registry.promote_by_hand(first, "test")  # previous: [A, B]
    return scoring_root


@pytest.mark.parametrize("change", ["promote", "rollback"])
def test_a_champion_changed_during_a_retraining_is_not_overwritten(
        champion_with_history, subprocess_env, tmp_path, change):
    """`models promote B` (or `models rollback` to B) between a retraining's comparison
    against A and its pointer move stays: the candidate does not replace B, and the
    history says the candidate was compared against A, not that it replaced B."""
    root = champion_with_history
    registry = Registry(layout_of(root).models)
    a = registry.champion_version()
    env = dict(subprocess_env, REVIEWFLOW_ARCHITECTURE="ngram", REVIEWFLOW_EPOCHS="5")
    log, pause = tmp_path / "retrain.log", tmp_path / "pause"
    retraining = start(["retrain", "--data-dir", str(root), "--force"], env, log,
                       "retrain:decided", pause)
    try:
        wait_paused(retraining, pause, log)
        argv = (["models", "promote", "manual-b", "--reason", "chosen by hand"]
                if change == "promote" else ["models", "rollback", "--reason", "back to B"])
        changed = subprocess.run(reviewflow_command(*argv, "--data-dir", str(root)),
                                 cwd=PROJECT, env=subprocess_env, capture_output=True,
                                 text=True, timeout=120)
        assert changed.returncode == 0, changed.stderr
        (pause / "go").touch()
    finally:
        code = finish(retraining, log)
    assert code == 0, log.read_text()[-3000:]
    assert registry.champion_version() == "manual-b"
    assert json.loads((layout_of(root).models / "champion.json").read_text())["version"] == "manual-b"
    manual, last = history(root)[-2:]
    assert manual["event"] == ("manual promotion" if change == "promote" else "rollback")
    assert (manual["version"], manual["replaced"]) == ("manual-b", a)
    candidate = last["version"]
    assert last["event"] == "not promoted" and candidate not in (a, "manual-b")
    assert last["compared_against"] == a and last["champion"] == "manual-b"
    assert f"champion changed from {a} to manual-b" in last["reason"]
    assert "1.0000" in last["reason"]  # the figures it was decided on, against A
    decision = registry.read_version(candidate)["decision"]
    assert decision["promote"] is False and decision["reason"] == last["reason"]
    status = {row["version"]: row["status"] for row in registry.list_versions()}
    assert status[candidate] == "not promoted" and status["manual-b"] == "champion"
    said = log.read_text()
    assert f"candidate {candidate}: held-out accuracy 1.0000" in said
    assert f"{candidate}: held-out accuracy 1.0000 on " in said and "; not promoted\n" in said
    assert f"\nreason: {last['reason']}" in said
    # By hand it is one command away, without --force: it was not judged worse.
    promoted = subprocess.run(reviewflow_command(
        "models", "promote", candidate, "--reason", "retrained, checked", "--data-dir",
        str(root)), cwd=PROJECT, env=subprocess_env, capture_output=True, text=True,
        timeout=120)
    assert promoted.returncode == 0, promoted.stderr
    assert registry.champion_version() == candidate


def test_two_rollbacks_at_once_go_back_two_champions(champion_with_history, subprocess_env,
                                                     tmp_path):
    """Champion A after B after A: two rollbacks at once go back twice, to B and then to
    A, each recorded with what it replaced. Without a lock both read the same pointer
    and both wrote B, and the history showed two rollbacks from A to B."""
    root = champion_with_history
    registry = Registry(layout_of(root).models)
    a = registry.champion_version()
    assert registry.champion()["previous"] == [a, "manual-b"]
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    holding, waiting = tmp_path / "holding", tmp_path / "waiting"
    first = start(["models", "rollback", "--reason", "one", "--data-dir", str(root)],
                  subprocess_env, first_log, "registry:pointer-read", holding)
    second = None
    try:
        wait_paused(first, holding, first_log)  # it has read the pointer, not replaced it
        # The second pauses when it finds the pointer locked (with no lock it finds
        # nothing to wait for and runs on).
        second = start(["models", "rollback", "--reason", "two", "--data-dir", str(root)],
                       subprocess_env, second_log, "registry:pointer-busy", waiting)
        deadline = time.monotonic() + PAUSE_SECONDS
        while second.poll() is None and not (waiting / "reached").exists():
            assert time.monotonic() < deadline, "the second rollback neither ran nor waited"
            time.sleep(0.05)
        (holding / "go").touch()
        assert finish(first, first_log) == 0
        (waiting / "go").touch()
        assert finish(second, second_log) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    rollbacks = [(e["replaced"], e["version"], e["reason"]) for e in history(root)
                 if e["event"] == "rollback"]
    assert sorted(rollbacks[-2:]) == sorted([(a, "manual-b", "one"), ("manual-b", a, "two")])
    assert rollbacks[-2][:2] == (a, "manual-b") and rollbacks[-1][:2] == ("manual-b", a)
    assert registry.champion_version() == a and registry.champion()["previous"] == []

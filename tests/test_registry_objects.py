"""The model registry on object storage (issue 31, item 1): retraining, promotion and
rollback with the data root on ``s3://`` (moto's S3 server), the locks in the run state:
the local state folder, or PostgreSQL with a state URL.

Kill tests stop a promotion with SIGKILL at each of its steps on object storage
(``tasks.training.registry_files.ObjectFiles.publish`` and the pointer change) and check
what a scorer on another host would then see: a champion that is a whole version, no
half version among the versions, and after the next change a registry with no leftover
and a history that lost no event.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import PROJECT, SAMPLES, reviewflow_command

from tasks.layout import (
    CARD_FILE,
    CURVES_FILE,
    DECISION_FILE,
    HISTORY_EVENTS_FOLDER,
    METRICS_FILE,
    MODEL_FILE,
    PROFILE_FILE,
    RELIABILITY_FILE,
    STAGING_FOLDER,
    VERSIONS_FOLDER,
)
from tasks.storage.objects import as_location
from tasks.training.registry import Registry
from tests.helpers import layout_of, scored_rows

VERSION_FILES = {MODEL_FILE, METRICS_FILE, DECISION_FILE, CURVES_FILE, PROFILE_FILE}
# Written with every version a retraining makes (the sample champion predates them).
REPORT_FILES = {RELIABILITY_FILE, CARD_FILE}

# The steps of a promotion on object storage, in order (tasks.training.registry and
# tasks.training.registry_files): staged locally; uploaded under .staging/; the record
# copied into versions/, not the model; the model copied (the version exists);
# published (its uploads removed); the pointer replaced, its history event not written.
STEPS = ["retrain:staged", "registry:uploaded", "registry:record-copied",
         "registry:model-copied", "retrain:published", "registry:pointer-written"]

# A promotion without training: stage a copy of a published version's files as a new
# version, then conclude it as a retraining does (clean_staging first, as the flow does).
PROMOTE_A_COPY = """
import shutil, sys
from pathlib import Path
from tasks.layout import DataLayout
from tasks.settings import Settings
from tasks.state.backend import open_state
from tasks.training.registry import Registry

layout = DataLayout.of(settings := Settings(data_dir=sys.argv[1]))
state = open_state(settings.state_url, layout)
registry = Registry(layout.models, state)
print("cleaned", registry.clean_staging(), flush=True)
current = registry.current_version()
version = registry.new_version()
folder = registry.stage(version)
for file in Path(sys.argv[2]).iterdir():
    shutil.copy2(file, folder / file.name)
print("staged", version, flush=True)
print(registry.conclude_training(version, True, "kill test", current))
"""


@pytest.fixture(params=["state-folder", "postgresql"])
def s3_root(request, s3_env, trained_models, tmp_path, monkeypatch):
    """A data root in a fresh bucket holding the sample champion and labeled files."""
    endpoint, fs = s3_env
    bucket = f"registry-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/team/reviews"
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    for sample in sorted((SAMPLES / "labeled").iterdir()):
        fs.put_file(str(sample), f"{root}/labeled/{sample.name}")
    env = {"REVIEWFLOW_STORAGE_OPTIONS": json.dumps({"endpoint_url": endpoint})}
    if request.param == "postgresql":
        env["REVIEWFLOW_STATE_URL"] = request.getfixturevalue("pg_cluster").create_database(
            f"registry_{uuid.uuid4().hex[:8]}")
    else:
        env["REVIEWFLOW_STATE_DIR"] = str(tmp_path / "state")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    registry = Registry(as_location(f"{root}/models", {"endpoint_url": endpoint}))
    return SimpleNamespace(root=root, fs=fs, env=env, registry=registry,
                           champion=registry.champion_version(),
                           local_version=trained_models / VERSIONS_FOLDER
                           / Registry(trained_models).champion_version())


def objects_under(fs, prefix: str) -> list[str]:
    fs.invalidate_cache()
    return sorted(fs.find(prefix))


def assert_whole(s3) -> None:
    """What a scorer on another host relies on: the champion and every listed version
    complete, and no folder under versions/ that is not a whole version."""
    registry = s3.registry
    champion = registry.champion_version()  # raises if it names a missing version
    assert registry.read_version(champion).get("metrics")
    for row in registry.list_versions():
        files = {p.rsplit("/", 1)[1] for p in
                 objects_under(s3.fs, f"{s3.root}/models/{VERSIONS_FOLDER}/{row['version']}")}
        assert VERSION_FILES <= files, (row["version"], files)


def env_for(s3, base: dict) -> dict:
    """A subprocess's environment: the test's data root, state and S3 credentials."""
    return {**base, **s3.env, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def test_a_retraining_on_s3_promotes_a_whole_version_that_the_next_scoring_run_uses(
        s3_root, tmp_path, capsys):
    from flows.cli import main
    from flows.retrain_model import retrain_model
    from flows.score_reviews import score_reviews

    s3, before = s3_root, s3_root.champion
    summary = retrain_model(data_dir=s3.root, architecture="ngram", epochs=5, force=True)
    assert summary["promoted"], summary
    new = summary["version"]
    assert s3.registry.champion_version() == new
    assert json.loads(s3.fs.cat_file(f"{s3.root}/models/champion.json"))["version"] == new
    assert_whole(s3)
    assert objects_under(s3.fs, f"{s3.root}/models/{STAGING_FOLDER}") == []
    staging = Registry(s3.registry.root, object()).staging  # this host's local staging
    assert not staging.exists() or not any(staging.iterdir())

    # The history: the sample's history.jsonl first, then one object per event.
    history = s3.registry.read_history()
    assert history[-1]["event"] == "promoted" and history[-1]["version"] == new
    assert history[-1]["replaced"] == before
    # The same data again: nothing new to learn, recorded (under the pointer lock).
    again = retrain_model(data_dir=s3.root, architecture="ngram", epochs=5)
    assert again.get("nothing_new") and again["latest_version"] == new
    assert s3.registry.read_history()[-1]["event"] == "nothing new to learn"
    events = objects_under(s3.fs, f"{s3.root}/models/{HISTORY_EVENTS_FOLDER}")
    assert len(events) == 2

    # Rollback and promotion by hand, through the command line; each one more event.
    main(["models", "rollback", "--reason", "back", "--data-dir", s3.root])
    assert s3.registry.champion_version() == before
    main(["models", "promote", new, "--reason", "again", "--data-dir", s3.root])
    assert s3.registry.champion_version() == new
    main(["models", "list", "--data-dir", s3.root])
    listed = capsys.readouterr().out
    assert f"* {new}  champion" in listed and f"  {before}  former champion" in listed
    # The model card was uploaded with the version; --verbose links it and its slices.
    folder = f"{s3.root}/models/{VERSIONS_FOLDER}/{new}"
    assert REPORT_FILES <= {p.rsplit("/", 1)[1] for p in objects_under(s3.fs, folder)}
    card = s3.fs.cat_file(f"{folder}/{CARD_FILE}").decode()
    assert card.startswith(f"# Model card: {new}") and f"]({CURVES_FILE})" in card
    main(["models", "list", "--verbose", "--data-dir", s3.root])
    listed = capsys.readouterr().out
    assert f"    model card: {folder}/{CARD_FILE}" in listed
    assert "    slice Latin-script " in listed
    assert [(e["event"], e["version"]) for e in s3.registry.read_history()[-3:]] == [
        ("nothing new to learn", new), ("rollback", before), ("manual promotion", new)]
    assert len(objects_under(s3.fs, f"{s3.root}/models/{HISTORY_EVENTS_FOLDER}")) == 4

    # A scoring run (another host's: nothing of this one's is needed) uses the champion.
    s3.fs.put_file(str(SAMPLES / "incoming" / "new-reviews.csv"),
                   f"{s3.root}/incoming/new-reviews.csv")
    scored = score_reviews(data_dir=s3.root, settle_seconds=0)
    assert scored["files_scored"] == 1 and scored["model_version"] == new
    versions = set(scored_rows(s3.root, filesystem=s3.fs).column("model_version").to_pylist())
    assert versions == {new}


@pytest.mark.parametrize("s3_root", ["postgresql"], indirect=True)
@pytest.mark.parametrize("step", STEPS)
def test_a_promotion_killed_at_each_step_on_s3_leaves_a_whole_champion(
        s3_root, subprocess_env, step, tmp_path):
    s3 = s3_root
    env = env_for(s3, subprocess_env)
    command = [sys.executable, "-c", PROMOTE_A_COPY, s3.root, str(s3.local_version)]
    earlier = len(s3.registry.read_history())
    killed = subprocess.run(command, cwd=PROJECT, env={**env, "REVIEWFLOW_FAILPOINT": step},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    first = killed.stdout.split("staged ", 1)[1].split()[0]

    # What any host sees now: the old champion, or (pointer replaced) the new one whole.
    champion = s3.registry.champion_version()
    assert champion == (first if step == "registry:pointer-written" else s3.champion)
    assert_whole(s3)
    assert s3.registry.exists(first) == (STEPS.index(step) >= STEPS.index(
        "registry:model-copied"))

    # The next change cleans what was left and loses no event.
    done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    second = done.stdout.split("staged ", 1)[1].split()[0]
    cleaned = json.loads(done.stdout.split("cleaned ", 1)[1].splitlines()[0].replace("'", '"'))
    if STEPS.index(step) <= STEPS.index("registry:model-copied"):
        assert first in cleaned  # its local folder or its uploads
    assert s3.registry.champion_version() == second
    assert_whole(s3)
    assert objects_under(s3.fs, f"{s3.root}/models/{STAGING_FOLDER}") == []
    versions = {p.rsplit("/", 2)[1] for p in
                objects_under(s3.fs, f"{s3.root}/models/{VERSIONS_FOLDER}")}
    assert versions == {row["version"] for row in s3.registry.list_versions()}
    promoted = [e for e in s3.registry.read_history()[earlier:] if e["event"] == "promoted"]
    expected = [first, second] if step == "registry:pointer-written" else [second]
    assert [e["version"] for e in promoted] == expected
    if step == "registry:pointer-written":  # recorded by the change after it, from the pointer
        assert promoted[0].get("recorded_late") is True
        assert promoted[1]["replaced"] == first


@pytest.mark.parametrize("s3_root", ["postgresql"], indirect=True)
def test_a_retraining_killed_on_s3_is_cleaned_up_by_the_next(s3_root, subprocess_env):
    """The real command, killed while it copies the new version into versions/."""
    from flows.retrain_model import retrain_model

    s3 = s3_root
    env = {**env_for(s3, subprocess_env), "REVIEWFLOW_FAILPOINT":
           "registry:record-copied", "REVIEWFLOW_ARCHITECTURE": "seed", "REVIEWFLOW_EPOCHS": "3"}
    killed = subprocess.run(reviewflow_command("retrain", "--data-dir", s3.root, "--force"),
                            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=400)
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    assert s3.registry.champion_version() == s3.champion
    assert objects_under(s3.fs, f"{s3.root}/models/{STAGING_FOLDER}") != []
    assert_whole(s3)
    summary = retrain_model(data_dir=s3.root, architecture="ngram", epochs=5, force=True)
    assert summary["promoted"] and s3.registry.champion_version() == summary["version"]
    assert objects_under(s3.fs, f"{s3.root}/models/{STAGING_FOLDER}") == []
    assert_whole(s3)


def test_two_promotions_at_once_on_s3_take_turns_and_both_are_in_the_history(
        s3_root, subprocess_env, tmp_path):
    """The pointer lock is the run state's: the second promotion waits for the first
    (it finds the lock held), then replaces what the first wrote."""
    s3 = s3_root
    env = env_for(s3, subprocess_env)
    other = "hand-made"
    s3.fs.copy(f"{s3.root}/models/{VERSIONS_FOLDER}/{s3.champion}",
               f"{s3.root}/models/{VERSIONS_FOLDER}/{other}", recursive=True)
    holding, waiting = tmp_path / "holding", tmp_path / "waiting"
    holding.mkdir()
    waiting.mkdir()

    def start(version: str, pause: str, folder: Path, log: Path) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen(
                reviewflow_command("models", "promote", version, "--force", "--reason",
                                   f"to {version}", "--data-dir", s3.root),
                cwd=PROJECT, env={**env, "REVIEWFLOW_PAUSEPOINT": pause,
                                  "REVIEWFLOW_PAUSEPOINT_DIR": str(folder)},
                stdout=out, stderr=subprocess.STDOUT)

    def wait_for(path: Path, process: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + 300
        while not path.exists():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"never reached {path.parent.name}"
            time.sleep(0.05)

    first = start(other, "registry:pointer-read", holding, tmp_path / "first.log")
    second = None
    try:
        wait_for(holding / "reached", first, tmp_path / "first.log")
        second = start(s3.champion, "registry:pointer-busy", waiting, tmp_path / "second.log")
        wait_for(waiting / "reached", second, tmp_path / "second.log")
        (holding / "go").touch()
        assert first.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()[-3000:]
        (waiting / "go").touch()
        assert second.wait(timeout=120) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    manual = [(e["version"], e["replaced"]) for e in s3.registry.read_history()
              if e["event"] == "manual promotion"]
    assert manual == [(other, s3.champion), (s3.champion, other)]
    assert s3.registry.champion_version() == s3.champion
    assert s3.registry.champion()["previous"][-1] == other


@pytest.mark.parametrize("s3_root", ["state-folder"], indirect=True)
def test_changing_a_registry_on_s3_without_the_run_state_is_refused(s3_root):
    from tasks.errors import RegistryError

    with pytest.raises(RegistryError, match="needs the run state"):
        s3_root.registry.rollback("no lock")


def test_a_local_promotion_killed_between_pointer_and_history_is_recorded_by_the_next(
        scoring_root, subprocess_env):
    """The same repair on a local registry (history.jsonl)."""
    registry = Registry(layout_of(scoring_root).models)
    champion = registry.champion_version()
    command = [sys.executable, "-c", PROMOTE_A_COPY, str(scoring_root),
               str(registry.versions / champion)]
    env = {k: v for k, v in subprocess_env.items() if not k.startswith("REVIEWFLOW_")}
    killed = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=300,
                            env={**env, "REVIEWFLOW_FAILPOINT": "registry:pointer-written"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    first = killed.stdout.split("staged ", 1)[1].split()[0]
    assert registry.champion_version() == first
    assert registry.read_history()[-1]["version"] != first  # its event was cut off
    done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    late, last = registry.read_history()[-2:]
    assert (late["event"], late["version"], late["recorded_late"]) == ("promoted", first, True)
    assert last["event"] == "promoted" and last["replaced"] == first

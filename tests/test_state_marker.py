"""One run state per data root (issue 37, item 2): every command that reads or writes the
run state or takes one of its locks opens it through ``tasks.state.backend.open_state``,
which checks the root's marker (``.reviewflow-state.json``) and refuses another state
in one line, exit 2. Real commands (``python -m flows.cli``), a real PostgreSQL, moto's
S3 server, the session's trained champion; the lost rollback of the issue replayed with
a rollback paused while it holds the database's pointer lock."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from conftest import PROJECT, reviewflow_command

from tasks.errors import StateMismatchError
from tasks.layout import STATE_MARKER_FILE, DataLayout
from tasks.storage.objects import as_location
from tests import postgres
from tests.helpers import add_version, good_rows, layout_of, write_csv

# Each command that opens the run state, as a user types it (the version to promote is
# made by the test).
COMMANDS = {
    "promote": ["models", "promote", "v-copy", "--reason", "by hand", "--force"],
    "rollback": ["models", "rollback", "--reason", "back"],
    "retrain": ["retrain", "--force"],
    "score": ["score", "--settle-seconds", "0"],
}


def _run(args: list[str], env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(reviewflow_command(*args), cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _assert_refused(done: subprocess.CompletedProcess, *named: str) -> None:
    """Exit 2 and one line, naming both states, without a password."""
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reviewflow: "), done.stderr[-3000:]
    assert "is scored with the run state" in lines[0] and STATE_MARKER_FILE in lines[0]
    for name in named:
        assert name in lines[0], (name, lines[0])
    assert postgres.PASSWORD not in done.stdout + done.stderr


def _snapshot(layout: DataLayout) -> dict:
    """What a refused command must leave as it was: the pointer, the history and the inbox."""
    from tasks.training.registry import Registry

    registry = Registry(layout.models)
    return {"champion": registry.pointer.read_bytes(), "history": registry.read_history(),
            "versions": sorted(p.name for p in registry.versions.iterdir()),
            "incoming": sorted(p.name for p in layout.incoming.iterdir())}


@pytest.mark.parametrize("first", ["postgresql", "state-folder"])
def test_every_command_on_a_local_root_is_refused_with_another_state(
        first, labeled_root, pg_cluster, subprocess_env):
    from tasks.state.backend import open_state

    layout = DataLayout(root=labeled_root)
    add_version(labeled_root, "v-copy")
    write_csv(layout.incoming / "a.csv", good_rows("a", 3))
    url = pg_cluster.create_database(f"m{uuid.uuid4().hex[:12]}")
    # The root's first user names its state; every command then comes with the other.
    open_state(url if first == "postgresql" else None, layout).close()
    marker = json.loads((labeled_root / STATE_MARKER_FILE).read_text())
    assert marker["state_id"].startswith("pg-") == (first == "postgresql")
    env = {**subprocess_env, "PGPASSWORD": postgres.PASSWORD}
    other = [] if first == "postgresql" else ["--state-url", url.replace(
        f":{postgres.PASSWORD}@", "@")]
    before = _snapshot(layout)
    for name, args in COMMANDS.items():
        done = _run([*args, "--data-dir", str(labeled_root), *other], env)
        _assert_refused(done, marker["state_id"], "127.0.0.1" if first == "postgresql"
                        else str(layout.state))
        assert "Traceback" not in done.stderr, name
    assert _snapshot(layout) == before
    assert json.loads((labeled_root / STATE_MARKER_FILE).read_text()) == marker

    # The flows themselves (a deployment's runs) open the state the same way.
    from flows.retrain_model import retrain_model
    from flows.score_reviews import score_reviews

    given = {} if first == "postgresql" else {"state_url": url}
    with pytest.raises(StateMismatchError):
        score_reviews(data_dir=str(labeled_root), settle_seconds=0, **given)
    with pytest.raises(StateMismatchError):
        retrain_model(data_dir=str(labeled_root), force=True, **given)
    assert _snapshot(layout) == before


def test_a_root_scored_with_its_own_state_folder_is_refused_to_a_database(
        scoring_root, pg_cluster, subprocess_env):
    """A root scored on one machine (its own state/) and a command that comes with a
    state URL without migrating: it would score again every file the folder committed."""
    from tests.helpers import score

    write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 3))
    assert score(scoring_root)["rows_scored"] == 3
    url = pg_cluster.create_database(f"m{uuid.uuid4().hex[:12]}")
    write_csv(layout_of(scoring_root).incoming / "b.csv", good_rows("b", 2))
    done = _run(["score", "--data-dir", str(scoring_root), "--state-url", url,
                 "--settle-seconds", "0"], subprocess_env)
    _assert_refused(done, str(scoring_root / "state"), "state migrate")
    assert (layout_of(scoring_root).incoming / "b.csv").exists()


@pytest.fixture
def s3_registry(s3_env, trained_models, tmp_path, monkeypatch, pg_cluster, subprocess_env):
    """An s3:// root whose run state is a PostgreSQL database (its marker says so), its
    champion ``v-copy`` promoted over the sample's champion, which a rollback goes back
    to; the environment of a command with that state."""
    from tasks.settings import Settings
    from tasks.training.registry import Registry, open_registry

    endpoint, fs = s3_env
    bucket = f"marker-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/team/reviews"
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    first = Registry(trained_models).champion_version()
    fs.copy(f"{root}/models/versions/{first}", f"{root}/models/versions/v-copy",
            recursive=True)
    options = json.dumps({"endpoint_url": endpoint})
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", options)
    url = pg_cluster.create_database(f"m{uuid.uuid4().hex[:12]}")
    settings = Settings(data_dir=root, state_url=url)
    with open_registry(DataLayout.of(settings), url) as registry:  # the root's first user
        registry.promote_by_hand("v-copy", "a copy to roll back from", force=True)
    env = {**subprocess_env, "REVIEWFLOW_STORAGE_OPTIONS": options,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "REVIEWFLOW_DATA_DIR": root}
    registry = Registry(as_location(f"{root}/models", {"endpoint_url": endpoint}))
    return {"root": root, "fs": fs, "url": url, "env": env, "registry": registry,
            "first": first, "folder": tmp_path / "state"}


def test_every_command_on_an_s3_root_is_refused_with_another_state(s3_registry):
    s3 = s3_registry
    fs, root = s3["fs"], s3["root"]
    upload = s3["folder"].parent / "a.csv"
    write_csv(upload, good_rows("a", 3))
    fs.put_file(str(upload), f"{root}/incoming/a.csv")
    pointer = fs.cat_file(f"{root}/models/champion.json")
    marker = json.loads(fs.cat_file(f"{root}/{STATE_MARKER_FILE}"))
    assert marker["state_id"].startswith("pg-")
    # A local state folder: what the s3 root's own error message suggests to set.
    folder_env = {**s3["env"], "REVIEWFLOW_STATE_DIR": str(s3["folder"])}
    for args in COMMANDS.values():
        _assert_refused(_run(args, folder_env), marker["state_id"], str(s3["folder"]))
    assert fs.cat_file(f"{root}/models/champion.json") == pointer
    assert fs.exists(f"{root}/incoming/a.csv")
    assert not (s3["folder"] / "locks").exists()  # no lock was taken there

    # The other way round: a root whose state is a folder, a command with a database.
    from tasks.settings import Settings
    from tasks.state.backend import open_state

    fs.rm_file(f"{root}/{STATE_MARKER_FILE}")  # the database retired
    open_state(None, DataLayout.of(Settings(data_dir=root, state_dir=s3["folder"]))).close()
    database_env = {**s3["env"], "REVIEWFLOW_STATE_URL": s3["url"]}
    for args in COMMANDS.values():
        _assert_refused(_run(args, database_env), str(s3["folder"]), "127.0.0.1")
    assert fs.cat_file(f"{root}/models/champion.json") == pointer


def test_two_rollbacks_with_different_states_cannot_both_go_back(s3_registry, tmp_path):
    """The lost rollback: one rollback holds the database's pointer lock (paused after it
    read the pointer); one with a local state folder is refused, instead of taking a
    lock file of its own and going back from the same champion. The champion ends one
    step back, with one rollback in the history."""
    s3 = s3_registry
    registry, first = s3["registry"], s3["first"]
    assert registry.champion_version() == "v-copy"
    pause = tmp_path / "pause"
    pause.mkdir()
    database_env = {**s3["env"], "REVIEWFLOW_STATE_URL": s3["url"],
                    "REVIEWFLOW_PAUSEPOINT": "registry:pointer-read",
                    "REVIEWFLOW_PAUSEPOINT_DIR": str(pause)}
    holder = subprocess.Popen(reviewflow_command(*COMMANDS["rollback"]), cwd=PROJECT,
                              env=database_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (pause / "reached").exists():
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline, "the rollback never reached the pointer"
            time.sleep(0.1)
        folder_env = {**s3["env"], "REVIEWFLOW_STATE_DIR": str(s3["folder"])}
        _assert_refused(_run(COMMANDS["rollback"], folder_env), "127.0.0.1",
                        str(s3["folder"]))
    finally:
        (pause / "go").touch()
        out, err = holder.communicate(timeout=300)
    assert holder.returncode == 0, err[-3000:]
    assert out.strip() == f"rolled back; champion is now {first}"
    assert registry.champion_version() == first
    events = [entry["event"] for entry in registry.read_history()]
    assert events.count("rollback") == 1, events

"""No temporary a killed run leaves survives the next run, and no row is lost to the kill.

Each test SIGKILLs a ``reviewflow`` process right after one kind of temporary is written
(tasks.failpoints: ``storage:written`` for a one-shot write, ``storage:staged`` for a
part staged for its commit), runs the next command, and checks that nothing named like
a temporary is left anywhere under the data root and that every row is in ``scored/``
once (and each scored file's row in ``monitoring/`` once). Local roots and moto's S3
server. The sweeps' own rule, that a live writer's temporary is never removed, is
checked directly at the end, with each kind of run state.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROJECT, reviewflow_command
from test_data_root_hazards import inbox_on_tmpfs  # noqa: F401 - a fixture used below

from tasks.layout import CHAMPION_FILE, DataLayout, kept_name, part_name
from tasks.state.backend import RunState, SQLiteState
from tasks.state.leftovers import sweep_scoring_leftovers
from tasks.storage.local import atomic_path, is_temporary, remove_dead_temporaries
from tasks.storage.objects import as_location
from tasks.training.registry import Registry
from tests.helpers import (
    add_version,
    good_rows,
    layout_of,
    monitoring_rows,
    quarantined_files,
    quarantined_rows,
    score,
    scored_rows,
)

FILES = {"a.csv": good_rows("a", 30), "b.csv": good_rows("b", 20)}


def csv_bytes(rows: list[dict]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected_ids(*names: str) -> Counter:
    return Counter(r["review_id"] for name in names for r in FILES[name])


class Root:
    """A data root with the session's champion, local or under a fresh S3 bucket, and
    the environment a ``reviewflow`` process needs to use it."""

    def __init__(self, kind: str, request, tmp_path: Path, monkeypatch):
        trained = request.getfixturevalue("trained_models")
        self.env = dict(request.getfixturevalue("subprocess_env"))
        self.fs, self.options = None, {}
        if kind == "local":
            self.url = str(request.getfixturevalue("scoring_root"))
            return
        endpoint, self.fs = request.getfixturevalue("s3_env")
        bucket = f"left-{uuid.uuid4().hex[:8]}"
        self.fs.mkdir(bucket)
        self.url = f"s3://{bucket}/team"
        self.fs.put(str(trained), f"{self.url}/models", recursive=True)
        self.options = {"endpoint_url": endpoint}
        settings = {"REVIEWFLOW_STATE_DIR": str(tmp_path / "state"),
                    "REVIEWFLOW_STORAGE_OPTIONS": json.dumps(self.options)}
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        self.env.update(settings, AWS_ACCESS_KEY_ID="testing",
                        AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")

    def put(self, name: str, data: bytes) -> None:
        if self.fs is None:
            (layout_of(self.url).incoming / name).write_bytes(data)
        else:
            self.fs.pipe_file(f"{self.url}/incoming/{name}", data)

    def names(self) -> list[str]:
        """Every file under the root (links too), relative to it."""
        if self.fs is None:
            return [str(p.relative_to(self.url)) for p in Path(self.url).rglob("*")
                    if not p.is_dir() or p.is_symlink()]
        self.fs.invalidate_cache()
        base = self.url.split("://", 1)[1] + "/"
        return [key[len(base):] for key in self.fs.find(self.url)]

    def temporaries(self) -> list[str]:
        return [name for name in self.names() if is_temporary(name.rsplit("/", 1)[-1])]

    def champion(self) -> str:
        return Registry(as_location(f"{self.url}/models", self.options)).champion_version()

    def readable(self, tmp_path: Path) -> Path:
        """The root itself, or a local copy of the bucket's prefix for pyarrow to read."""
        if self.fs is None:
            return Path(self.url)
        copy = tmp_path / "copy"
        self.fs.get(f"{self.url}/", str(copy), recursive=True)
        return copy

    def killed(self, failpoint: str, file: str, *command: str, **settings: str) -> None:
        """Run ``reviewflow score`` (or ``command``) on this root until it SIGKILLs
        itself at ``failpoint`` on ``file`` (the first time it is reached: ``""``)."""
        env = dict(self.env, REVIEWFLOW_FAILPOINT=failpoint, REVIEWFLOW_SETTLE_SECONDS="0",
                   REVIEWFLOW_READ_BATCH_ROWS="10", **settings)
        if file:
            env["REVIEWFLOW_FAILPOINT_FILE"] = file
        process = subprocess.run(
            reviewflow_command(*(command or ("score",)), "--data-dir", self.url), cwd=PROJECT,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        assert process.returncode == -signal.SIGKILL, process.stdout[-3000:]


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path, monkeypatch) -> Root:
    return Root(request.param, request, tmp_path, monkeypatch)


@pytest.fixture
def local_root(request, tmp_path, monkeypatch) -> Root:
    return Root("local", request, tmp_path, monkeypatch)


def fill_inbox(root: Root) -> None:
    for name, rows in FILES.items():
        root.put(name, csv_bytes(rows))


# ------------------------------------------------------------ the monitoring row (the report)

def test_a_run_killed_after_writing_a_monitoring_row_leaves_no_temporary_and_loses_no_row(
        root, tmp_path):
    """Killed once a.csv's monitoring row is written: the next run leaves no temporary,
    every row is scored once, and each file has its one monitoring row. The row of a
    file is written with its parts, before its commit, so the next run redoes it."""
    fill_inbox(root)
    root.killed("storage:written", part_name(sha(csv_bytes(FILES["a.csv"])), root.champion()))
    if root.fs is None:  # locally the row is a temporary (on S3 one PUT, whole)
        assert any(n.startswith("monitoring/") for n in root.temporaries()), root.names()
    summary = score(root.url)
    readable = root.readable(tmp_path)
    monitored = monitoring_rows(readable).to_pylist()
    assert sorted((r["source_file"], r["rows"]) for r in monitored) == [("a.csv", 30),
                                                                       ("b.csv", 20)]
    assert Counter(scored_rows(readable).column("review_id").to_pylist()) == expected_ids(
        "a.csv", "b.csv")
    assert summary["files_scored"] == 2, summary
    assert root.temporaries() == []


@pytest.mark.parametrize("then", ["a new champion", "a later day"])
def test_a_monitoring_row_no_commit_backs_is_removed_when_the_file_is_committed(
        local_root, then):
    """Killed after a.csv's row and parts were published, before its commit; then a new
    champion scores it, or the same one on a later day (the killed run's row and parts
    moved to an older day's folders): a.csv ends with one row, by the model that
    committed it, in the committing run's folder."""
    data = csv_bytes(FILES["a.csv"])
    local_root.put("a.csv", data)
    first = local_root.champion()
    local_root.killed("score:parts-published", "")
    layout = DataLayout(root=Path(local_root.url))
    assert len(list(layout.monitoring.glob("*/*.parquet"))) == 1
    if then == "a new champion":
        Registry(layout.models).promote_by_hand(add_version(layout.root, "next"), "test")
    else:
        for folder in (layout.monitoring, layout.scored):
            (today,) = [p for p in folder.iterdir() if p.is_dir()]
            today.rename(today.with_name(today.name.split("=")[0] + "=2020-01-01"))
    summary = score(local_root.url)
    assert summary["files_scored"] == 1, summary
    monitored = monitoring_rows(local_root.url).to_pylist()
    assert [(r["source_file"], r["model_version"]) for r in monitored] == [
        ("a.csv", "next" if then == "a new champion" else first)]
    assert monitored[0]["run_date"] != "2020-01-01"
    assert Counter(scored_rows(local_root.url).column("review_id").to_pylist()) == \
        expected_ids("a.csv")


# ------------------------------------------------------------ staged parts no run commits

def test_a_file_that_killed_its_run_and_is_then_quarantined_leaves_no_temporary(
        root, tmp_path, monkeypatch):
    """Killed with a.csv's scored part staged (a temporary on both kinds of root), then
    quarantined by the next run (max_claim_deaths 1), which never commits that content
    and so never sweeps its parts: the start of the run removes them."""
    root.put("a.csv", csv_bytes(FILES["a.csv"]))
    root.killed("storage:staged", part_name(sha(csv_bytes(FILES["a.csv"])), root.champion()))
    assert root.temporaries(), root.names()
    root.put("b.csv", csv_bytes(FILES["b.csv"]))
    monkeypatch.setenv("REVIEWFLOW_MAX_CLAIM_DEATHS", "1")
    summary = score(root.url)
    assert summary["files_quarantined"] == 1 and summary["files_scored"] == 1, summary
    assert root.temporaries() == []
    readable = root.readable(tmp_path)
    assert Counter(scored_rows(readable).column("review_id").to_pylist()) == expected_ids("b.csv")
    assert "died" in quarantined_files(readable)["a.csv"]["reason"]


def test_a_file_changed_after_its_run_was_killed_leaves_no_temporary_of_its_old_content(
        local_root):
    """Killed with a.csv's parts staged (one of them its rejected row); then its
    uploader, still writing, appends to the claimed file: the next run scores the new
    content and never commits the old one, whose temporaries it removes."""
    rows = [*FILES["a.csv"], {"review_id": "a-empty", "text": ""}]
    local_root.put("a.csv", csv_bytes(rows))
    local_root.killed("storage:staged",
                      part_name(sha(csv_bytes(rows)), local_root.champion()))
    assert len(local_root.temporaries()) == 2, local_root.names()
    (claimed,) = Path(local_root.url, "incoming", ".claimed").glob("*/a.csv")
    with open(claimed, "a") as appending:
        appending.write("a-late,A late and lovely film.\n")
    summary = score(local_root.url)
    assert summary["files_scored"] == 1 and summary["rows_scored"] == 31, summary
    assert local_root.temporaries() == []
    assert quarantined_rows(local_root.url, ["review_id"]).column(
        "review_id").to_pylist() == ["a-empty"]


# ------------------------------------------------------------ one-shot writes

def test_a_run_killed_after_writing_a_reason_file_leaves_no_temporary(local_root):
    """Killed once the reason of a quarantined notes.txt is written, before its rename."""
    fill_inbox(local_root)
    local_root.put("notes.txt", b"not reviews")
    local_root.killed("storage:written", "notes.txt.reason.json")
    assert [n.split("/")[0] for n in local_root.temporaries()] == ["quarantine"]
    summary = score(local_root.url)
    assert summary["files_scored"] == 2, summary
    assert local_root.temporaries() == []
    assert Counter(scored_rows(local_root.url).column("review_id").to_pylist()) == \
        expected_ids("a.csv", "b.csv")


def test_a_promotion_killed_after_writing_the_pointer_leaves_no_temporary(local_root):
    """Killed once the new champion.json is written, before its rename: the champion is
    the one before, and the next run removes the temporary."""
    before = local_root.champion()
    add_version(Path(local_root.url), "next")
    local_root.killed("storage:written", CHAMPION_FILE, "models", "promote", "next",
                      "--reason", "a test")
    assert [n.split("/")[0] for n in local_root.temporaries()] == ["models"]
    assert local_root.champion() == before
    fill_inbox(local_root)
    assert score(local_root.url)["files_scored"] == 2
    assert local_root.temporaries() == []


def test_a_copy_across_file_systems_killed_before_its_link_leaves_no_temporary(
        local_root, inbox_on_tmpfs):  # noqa: F811 - the fixture imported above
    """An inbox on another file system is archived by a copy: killed once the copy is
    whole under its temporary name, the next run archives the file once and leaves no
    temporary."""
    data = csv_bytes(FILES["a.csv"])
    (inbox_on_tmpfs / "a.csv").write_bytes(data)
    local_root.killed("storage:written", kept_name(sha(data), "a.csv"))
    assert [n.split("/")[0] for n in local_root.temporaries()] == ["archive"]
    summary = score(local_root.url)
    assert summary["files_already_scored"] == 1, summary
    assert local_root.temporaries() == []
    assert len(list(Path(local_root.url, "archive").rglob("*a.csv"))) == 1
    assert scored_rows(local_root.url).num_rows == 30


# ------------------------------------------------------------ the retraining's rejected rows

def test_a_retraining_killed_with_its_rejected_rows_staged_leaves_no_temporary(
        labeled_root, local_root):
    """Killed while the rejected rows of a labeled file are staged: the next retraining,
    the only writer of quarantine/training/, removes the temporary."""
    from flows.retrain_model import retrain_model

    labeled = Path(local_root.url, "labeled")
    rows = [{"review_id": f"l{i}", "text": f"A {'fine' if i % 2 else 'dull'} film, take {i}.",
             "label": i % 2} for i in range(40)] + [{"review_id": "l-empty", "text": "",
                                                      "label": 1}]
    data = csv_bytes(rows)
    (labeled / "l.csv").write_bytes(data)
    local_root.killed("storage:staged", part_name(sha(data)), "retrain", "--epochs", "1")
    assert [n.split("/")[:2] for n in local_root.temporaries()] == [["quarantine", "training"]]
    retrain_model(data_dir=local_root.url, epochs=1)
    assert local_root.temporaries() == []
    assert quarantined_rows(local_root.url, ["review_id"], of="training").column(
        "review_id").to_pylist() == ["l-empty"]


# ------------------------------------------------------------ the sweeps' rules

def test_a_live_writers_temporary_is_never_swept_and_a_dead_ones_is(tmp_path):
    folder = tmp_path / "day"
    folder.mkdir()
    dead = folder / ".x.parquet.0123abcd.tmp"
    dead.write_bytes(b"left by a writer that was killed")
    with atomic_path(folder / "row.json") as live:
        live.write_text("{}")
        assert remove_dead_temporaries(folder) == []  # a writer is mid-write here
        assert live.exists() and dead.exists()
    assert (folder / "row.json").read_text() == "{}"
    assert remove_dead_temporaries(folder) == [dead]
    assert sorted(p.name for p in folder.iterdir()) == ["row.json"]


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request, tmp_path) -> RunState:
    if request.param == "sqlite":
        yield SQLiteState.for_layout(DataLayout(root=tmp_path / "data"))
        return
    from tasks.state.postgres import PostgresState

    cluster = request.getfixturevalue("pg_cluster")
    opened = PostgresState(cluster.create_database(f"t{uuid.uuid4().hex[:12]}"))
    yield opened
    opened.close()


def test_staged_temporaries_are_swept_only_once_their_content_is_free(tmp_path, state):
    layout = DataLayout(root=tmp_path / "data").ensure()
    content = sha(b"a file")
    staged = layout.scored_partition("2026-01-02") / f".{part_name(content, 'v1')}.0123abcd.tmp"
    rejected = layout.rejected_partition("2026-01-01") / f".{part_name(content)}.89abcdef.tmp"
    other = layout.scored_partition("2026-01-02") / f".{part_name(sha(b'b'), 'v1')}.00000000.tmp"
    for temporary in (staged, rejected, other):
        temporary.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(b"PAR1")
    with state.content_lock(content):  # a live run works on that content
        assert sweep_scoring_leftovers(layout, state) == [other]
    assert staged.exists() and rejected.exists() and not other.exists()
    assert sorted(sweep_scoring_leftovers(layout, state)) == sorted([staged, rejected])
    assert not staged.exists() and not rejected.exists()


def test_a_released_claim_leaves_no_folder_behind_a_temporary_of_its_count(scoring_root):
    from tasks.state.inbox import claim, note_begun, release_claim_folder

    inbox = layout_of(scoring_root).incoming
    (inbox / "a.csv").write_bytes(csv_bytes(FILES["a.csv"]))
    claimed = claim(inbox / "a.csv")
    (claimed.parent / ".attempts.0123abcd.tmp").write_text("2\n")  # a killed writer's
    note_begun(claimed, 3)
    assert sorted(p.name for p in claimed.parent.iterdir()) == [
        ".attempts", ".attempts.0123abcd.tmp", "a.csv"]  # the count written in place
    os.unlink(claimed)
    release_claim_folder(claimed)
    assert list(inbox.iterdir()) == []

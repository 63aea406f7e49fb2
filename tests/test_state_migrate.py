"""``reviewflow state migrate`` (issue 37, item 4): the README's recipe run as written, in
bash, with only its placeholders replaced (the bucket, the database, the password, the
old state folder), on a local root and on an s3:// root (moto); then ``reviewflow
score`` with the state URL scores only what is new. A migrate killed before it moves
the marker is finished by a rerun; one without a source says so in one line."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import PROJECT, reviewflow_command

from tasks.layout import STATE_MARKER_FILE
from tests import postgres
from tests.helpers import good_rows, layout_of, score, scored_rows, write_csv

# The placeholders of the README's recipe, and the line a test cannot run (a worker).
BUCKET, DATABASE = "s3://reviews/team", "postgresql://reviewflow@db:5432/reviewflow"
PASSWORD_LINE, OLD_STATE = "PGPASSWORD=…", "/var/lib/reviewflow/state"
WORKER = "prefect worker start"


def readme_recipe() -> list[str]:
    """The command lines of the README's "Scaling out" block, as written."""
    text = (PROJECT / "README.md").read_text()
    section = text.split("## Scaling out", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def run_recipe(root: str, old_state: Path, url: str, env: dict,
               then: str | None = None) -> subprocess.CompletedProcess:
    """The recipe in bash, its placeholders replaced; ``reviewflow`` is this checkout's
    CLI. Its worker line is left out; ``then`` (a command line) runs after it."""
    lines = readme_recipe()
    text = "\n".join(lines)
    for placeholder in (BUCKET, DATABASE, PASSWORD_LINE, OLD_STATE, WORKER):
        assert placeholder in text, f"the README's recipe lacks {placeholder!r}"
    bare = url.replace(f":{postgres.PASSWORD}@", "@")
    script = [f'reviewflow() {{ {shlex.quote(sys.executable)} -m flows.cli "$@"; }}',
              "set -e"]
    for line in lines:
        if line.startswith(WORKER):
            continue
        script.append(line.replace(BUCKET, root).replace(DATABASE, bare)
                      .replace(PASSWORD_LINE, f"PGPASSWORD={shlex.quote(postgres.PASSWORD)}")
                      .replace(OLD_STATE, shlex.quote(str(old_state))))
    if then:
        script.append(then)
    return subprocess.run(["bash", "-c", "\n".join(script)], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)


def _ledger(url: str) -> list[tuple]:
    with psycopg.connect(url) as db:
        return db.execute("SELECT source_file, rows_read FROM scored_files"
                          " ORDER BY source_file").fetchall()


def _drop(put, names_rows: dict[str, int], prefix: str = "") -> None:
    for name, rows in names_rows.items():
        put(f"{prefix}{name}.csv", good_rows(name, rows))


def _check_scores_only_what_is_new(done: subprocess.CompletedProcess, url: str) -> None:
    """``reviewflow score`` after the migrate: the three contents scored before are
    known to the database (archived as already scored), only d.csv is scored."""
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scored 6 rows from 1 files" in done.stdout, done.stdout
    assert "3 files already scored" in done.stdout, done.stdout
    assert [name for name, _ in _ledger(url)] == ["a.csv", "b.csv", "c.csv", "d.csv"]


def test_the_readme_recipe_migrates_a_local_root(scoring_root, pg_cluster, subprocess_env):
    incoming = layout_of(scoring_root).incoming
    _drop(lambda name, rows: write_csv(incoming / name, rows), {"a": 3, "b": 4, "c": 5})
    assert score(scoring_root)["rows_scored"] == 12  # one machine, its own state/
    url = pg_cluster.create_database(f"g{uuid.uuid4().hex[:12]}")
    done = run_recipe(str(scoring_root), scoring_root / "state", url, subprocess_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("copied 3 scored files"), done.stdout
    assert postgres.PASSWORD not in done.stdout + done.stderr
    assert json.loads((scoring_root / STATE_MARKER_FILE).read_text())["state_id"].startswith(
        "pg-")

    # The same contents again under other names, and one new file.
    _drop(lambda name, rows: write_csv(incoming / name, rows), {"a": 3, "b": 4, "c": 5},
          prefix="again-")
    write_csv(incoming / "d.csv", good_rows("d", 6))
    done = run_recipe(str(scoring_root), scoring_root / "state", url, subprocess_env,
                      then="reviewflow score --settle-seconds 0")
    _check_scores_only_what_is_new(done, url)
    assert scored_rows(scoring_root).num_rows == 18

    # The old state is refused from now on; migrate again (its source by default): no-op.
    old = subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root)),
                         cwd=PROJECT, env=subprocess_env, capture_output=True, text=True,
                         timeout=600)
    assert old.returncode == 2 and "is scored with the run state" in old.stderr, old.stderr
    again = subprocess.run(reviewflow_command("state", "migrate", "--data-dir",
                                              str(scoring_root), "--to", url),
                           cwd=PROJECT, env=subprocess_env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("copied 0 scored files") and "(3 and 0 were" in again.stdout


def test_the_readme_recipe_migrates_an_s3_root(s3_env, trained_models, tmp_path, monkeypatch,
                                               pg_cluster, subprocess_env):
    endpoint, fs = s3_env
    bucket = f"migrate-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/team"
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    upload = tmp_path / "upload"
    upload.mkdir()

    def put(name: str, rows: list[dict]) -> None:
        fs.put_file(str(write_csv(upload / name, rows)), f"{root}/incoming/{name}")

    _drop(put, {"a": 3, "b": 4, "c": 5})
    old_state = tmp_path / "old-state"  # the state folder of the one machine until now
    options = json.dumps({"endpoint_url": endpoint})
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", options)
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(old_state))
    assert score(root)["rows_scored"] == 12
    monkeypatch.delenv("REVIEWFLOW_STATE_DIR")
    url = pg_cluster.create_database(f"g{uuid.uuid4().hex[:12]}")
    env = {**subprocess_env, "REVIEWFLOW_STORAGE_OPTIONS": options,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    done = run_recipe(root, old_state, url, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("copied 3 scored files"), done.stdout
    assert postgres.PASSWORD not in done.stdout + done.stderr

    _drop(put, {"a": 3, "b": 4, "c": 5}, prefix="again-")
    put("d.csv", good_rows("d", 6))
    done = run_recipe(root, old_state, url, env, then="reviewflow score --settle-seconds 0")
    _check_scores_only_what_is_new(done, url)
    assert scored_rows(root, filesystem=fs).num_rows == 18
    old = subprocess.run(reviewflow_command("score", "--data-dir", root),
                         cwd=PROJECT, env={**env, "REVIEWFLOW_STATE_DIR": str(old_state)},
                         capture_output=True, text=True, timeout=600)
    assert old.returncode == 2 and "is scored with the run state" in old.stderr, old.stderr


def test_a_migrate_killed_before_it_moves_the_marker_is_finished_by_a_rerun(
        scoring_root, pg_cluster, subprocess_env):
    incoming = layout_of(scoring_root).incoming
    _drop(lambda name, rows: write_csv(incoming / name, rows), {"a": 3, "b": 4})
    assert score(scoring_root)["rows_scored"] == 7
    url = pg_cluster.create_database(f"g{uuid.uuid4().hex[:12]}")
    marker = (scoring_root / STATE_MARKER_FILE).read_text()
    migrate = reviewflow_command("state", "migrate", "--data-dir", str(scoring_root),
                                 "--to", url)
    killed = subprocess.run(migrate, cwd=PROJECT, env={
        **subprocess_env, "REVIEWFLOW_FAILPOINT": "migrate:copied"}, capture_output=True,
        text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr
    assert len(_ledger(url)) == 2  # copied, and
    assert (scoring_root / STATE_MARKER_FILE).read_text() == marker  # the folder's still
    write_csv(incoming / "c.csv", good_rows("c", 5))
    early = subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root),
                                              "--state-url", url),
                           cwd=PROJECT, env=subprocess_env, capture_output=True, text=True,
                           timeout=600)
    assert early.returncode == 2 and "state migrate" in early.stderr, early.stderr
    assert (incoming / "c.csv").exists()

    rerun = subprocess.run(migrate, cwd=PROJECT, env=subprocess_env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith("copied 0 scored files") and "(2 and 0 were" in rerun.stdout
    assert json.loads((scoring_root / STATE_MARKER_FILE).read_text())["state_id"].startswith(
        "pg-")
    summary = score(scoring_root, state_url=url)
    assert summary["files_scored"] == 1 and summary["rows_scored"] == 5
    assert len(_ledger(url)) == 3


@pytest.mark.parametrize("case", ["s3 root, no state folder", "no ledger", "another state"])
def test_a_migrate_without_its_source_says_so_in_one_line(case, s3_env, scoring_root,
                                                          tmp_path, pg_cluster, subprocess_env):
    url = pg_cluster.create_database(f"g{uuid.uuid4().hex[:12]}")
    env = {**subprocess_env, "REVIEWFLOW_STATE_URL": url}
    if case == "s3 root, no state folder":  # the README's environment, no --from-state-dir
        endpoint, fs = s3_env
        bucket = f"migrate-{uuid.uuid4().hex[:8]}"
        fs.mkdir(bucket)
        env.update(REVIEWFLOW_DATA_DIR=f"s3://{bucket}/team", AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   REVIEWFLOW_STORAGE_OPTIONS=json.dumps({"endpoint_url": endpoint}))
        args, expected = [], "--from-state-dir"
    elif case == "no ledger":
        args, expected = ["--data-dir", str(scoring_root), "--from-state-dir",
                          str(tmp_path / "empty")], "no SQLite ledger"
    else:  # the root is scored with a state folder elsewhere; migrate from its own
        write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 3))
        assert score(scoring_root)["rows_scored"] == 3
        (scoring_root / STATE_MARKER_FILE).write_text(json.dumps(
            {"state_id": "0" * 32, "state_dir": "/srv/other-state", "host": "elsewhere"}))
        args, expected = ["--data-dir", str(scoring_root)], "/srv/other-state"
    done = subprocess.run(reviewflow_command("state", "migrate", *args, "--to", url),
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr
    assert postgres.PASSWORD not in done.stdout + done.stderr
    with psycopg.connect(url) as db:  # nothing copied
        if db.execute("SELECT to_regclass('scored_files')").fetchone()[0] is not None:
            assert db.execute("SELECT count(*) FROM scored_files").fetchone()[0] == 0

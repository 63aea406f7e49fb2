"""Scoring runs whose state is in PostgreSQL (``state_url`` / ``--state-url`` /
``REVIEWFLOW_STATE_URL``): a real cluster (tests/postgres.py), real Prefect, the
session's trained champion, Parquet read back. The state folder gets no ledger and no
lock; a rerun scores nothing new; a database that is down stops the command with one
line, exit 1, before the inbox is touched; ``reviewflow state migrate`` carries a
SQLite ledger over so nothing it committed is scored again."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import psycopg
import pytest
from conftest import PROJECT, reviewflow_command

from flows.score_reviews import score_reviews
from tests import postgres
from tests.helpers import good_rows, layout_of, scored_parts, scored_rows, write_csv


def _fresh(cluster) -> str:
    return cluster.create_database(f"t{uuid.uuid4().hex[:12]}")


def _inbox(root, names=("a", "b", "c")) -> dict[str, bytes]:
    for i, name in enumerate(names):
        write_csv(layout_of(root).incoming / f"{name}.csv", good_rows(name, 3 + i))
    return {p.name: p.read_bytes() for p in layout_of(root).incoming.glob("*.csv")}


def _ledger_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as db:
        return db.execute("SELECT source_file, rows_read, archived_at IS NOT NULL"
                          " FROM scored_files ORDER BY source_file").fetchall()


def test_a_run_keeps_its_state_in_postgresql_and_a_rerun_scores_nothing_new(
        scoring_root, pg_cluster):
    url = _fresh(pg_cluster)
    inbox = _inbox(scoring_root)
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0, state_url=url)
    assert summary["rows_scored"] == 3 + 4 + 5
    assert sorted(scored_rows(scoring_root).column("review_id").to_pylist()) == sorted(
        f"{n}-{i}" for n, k in (("a", 3), ("b", 4), ("c", 5)) for i in range(k))
    assert _ledger_rows(url) == [("a.csv", 3, True), ("b.csv", 4, True), ("c.csv", 5, True)]
    state = scoring_root / "state"
    assert not (state / "ledger.sqlite").exists()
    assert not any((state / "locks").glob("*.lock")) if (state / "locks").exists() else True
    assert postgres.PASSWORD not in json.dumps(summary, default=str)

    for name, data in inbox.items():  # the same contents again
        (layout_of(scoring_root).incoming / f"again-{name}").write_bytes(data)
    again = score_reviews(data_dir=str(scoring_root), settle_seconds=0, state_url=url)
    assert again["rows_scored"] == 0
    assert again["files_already_scored"] == 3 and again["files_scored"] == 0
    assert scored_rows(scoring_root).num_rows == 12
    assert len(_ledger_rows(url)) == 3
    with psycopg.connect(url) as db:  # no lock left behind
        assert db.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'"
                          ).fetchone()[0] == 0


def test_a_database_that_is_down_stops_the_command_before_the_inbox(scoring_root,
                                                                    subprocess_env):
    inbox = _inbox(scoring_root)
    port = postgres.free_port()
    url = f"postgresql://reviewflow:{postgres.PASSWORD}@127.0.0.1:{port}/state"
    for how in (["--state-url", url], []):
        env = dict(subprocess_env, **({} if how else {"REVIEWFLOW_STATE_URL": url}))
        done = subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root), *how),
                              cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"127.0.0.1:{port}/state" in lines[0], done.stderr
        assert postgres.PASSWORD not in done.stderr + done.stdout
    assert {p.name: p.read_bytes() for p in layout_of(scoring_root).incoming.glob("*.csv")} == inbox
    assert not scored_parts(scoring_root)
    assert not any(layout_of(scoring_root).archive.rglob("*.csv"))


def test_migrating_the_sqlite_ledger_scores_nothing_it_committed(
        scoring_root, pg_cluster, subprocess_env):
    inbox = _inbox(scoring_root)
    assert score_reviews(data_dir=str(scoring_root), settle_seconds=0)["rows_scored"] == 12
    url = _fresh(pg_cluster)
    bare = url.replace(f":{postgres.PASSWORD}@", "@")
    env = dict(subprocess_env, PGPASSWORD=postgres.PASSWORD)
    outputs = []
    for _ in range(2):
        done = subprocess.run(reviewflow_command("state", "migrate", "--data-dir",
                                                 str(scoring_root), "--to", bare),
                              cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert postgres.PASSWORD not in done.stdout + done.stderr
        outputs.append(done.stdout)
    assert outputs[0].startswith("copied 3 scored files") and "(0 and 0 were" in outputs[0]
    assert outputs[1].startswith("copied 0 scored files") and "(3 and 0 were" in outputs[1]
    shutil.rmtree(scoring_root / "state")  # the root's state is the database: SQLite's is not read
    for name, data in inbox.items():
        (layout_of(scoring_root).incoming / name).write_bytes(data)
    again = score_reviews(data_dir=str(scoring_root), settle_seconds=0, state_url=url)
    assert again["rows_scored"] == 0
    assert again["files_already_scored"] == 3 and again["files_scored"] == 0
    assert scored_rows(scoring_root).num_rows == 12


def test_an_s3_root_with_a_state_url_needs_no_state_folder(s3_env, trained_models, tmp_path,
                                                           monkeypatch, pg_cluster):
    from tasks.errors import StateMismatchError

    endpoint, fs = s3_env
    fs.mkdir("reviews-pg")
    root = "s3://reviews-pg/team"
    upload = tmp_path / "upload"
    upload.mkdir()
    for i, name in enumerate("ab"):
        write_csv(upload / f"{name}.csv", good_rows(name, 3 + i))
        fs.put_file(str(upload / f"{name}.csv"), f"{root}/incoming/{name}.csv")
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    monkeypatch.delenv("REVIEWFLOW_STATE_DIR", raising=False)
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint}))
    monkeypatch.chdir(tmp_path)  # a state folder made by mistake would land here
    url = _fresh(pg_cluster)

    first = score_reviews(data_dir=root, settle_seconds=0, state_url=url)
    assert first["files_scored"] == 2 and first["rows_scored"] == 7
    fs.put_file(str(upload / "a.csv"), f"{root}/incoming/a-again.csv")
    again = score_reviews(data_dir=root, settle_seconds=0, state_url=url)
    assert again["files_already_scored"] == 1 and again["rows_scored"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["upload"]  # nothing local
    marker = json.loads(fs.cat_file(f"{root}/.reviewflow-state.json"))
    assert marker["state_id"].startswith("pg-") and postgres.PASSWORD not in json.dumps(marker)
    assert "127.0.0.1" in marker["state_dir"]
    # A run with a state folder of its own on this root would not see the database's locks.
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(StateMismatchError, match="pg-"):
        score_reviews(data_dir=root, settle_seconds=0)


def test_a_retraining_lock_held_in_postgresql_stops_another_retraining(
        scoring_root, pg_cluster, subprocess_env):
    from tasks.state.postgres import PostgresState

    url = _fresh(pg_cluster)
    before = sorted(p.name for p in layout_of(scoring_root).models.rglob("*"))
    holder = PostgresState(url)  # another host's retraining, as far as the database knows
    try:
        with holder.retrain_lock():
            done = subprocess.run(reviewflow_command("retrain", "--data-dir", str(scoring_root),
                                                     "--state-url", url),
                                  cwd=PROJECT, env=subprocess_env, capture_output=True,
                                  text=True, timeout=600)
    finally:
        holder.close()
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "another retraining is running" in lines[0]
    assert "reviewflow" in lines[0] and postgres.PASSWORD not in done.stderr + done.stdout
    assert sorted(p.name for p in layout_of(scoring_root).models.rglob("*")) == before


def test_a_labeled_file_quarantined_by_a_retraining_is_recorded_in_postgresql(
        tmp_path, pg_cluster):
    import logging

    from tasks.layout import DataLayout
    from tasks.settings import Settings
    from tasks.training.labeled import read_labeled_reviews
    from tests.helpers import packaged_validator

    url = _fresh(pg_cluster)
    layout = DataLayout(root=tmp_path / "data").ensure()
    write_csv(layout.labeled / "good.csv",
              [{"review_id": f"g{i}", "text": f"review {i}", "label": i % 2} for i in range(8)])
    (layout.labeled / "broken.csv").write_text("alpha,beta\n1,2\n")  # no text column
    settings = Settings(data_dir=tmp_path / "data", state_url=url)
    reviews, stats = read_labeled_reviews(settings, packaged_validator(require_label=True),
                                          logging.getLogger("test"))
    assert len(reviews) == 8 and stats["files_quarantined"] == 1
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT source_file, reason FROM quarantined_files").fetchall()
    assert [name for name, _ in rows] == ["broken.csv"] and "text" in rows[0][1]
    assert not layout.ledger.exists()  # nothing written to a local ledger

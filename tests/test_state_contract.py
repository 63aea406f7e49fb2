"""The run-state contract (tasks/state/backend.py), written once and run against both
implementations: the SQLite ledger with flock files, and PostgreSQL (a real cluster
started by tests/postgres.py, a fresh database per test). Lock tests use real
processes: a holder in a child process, killed with SIGKILL, or (PostgreSQL) its
backend ended with ``pg_terminate_backend``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from tasks.errors import StateMismatchError, StateURLError
from tasks.state.backend import (
    LockHeldError,
    RunState,
    SQLiteState,
    StateUnavailableError,
    TimedState,
    open_state,
    redacted,
)
from tasks.state.ledger import Ledger, ScoredFile, ShardRecord
from tests import postgres

ROOT = Path(__file__).resolve().parent.parent
SHA_A, SHA_B = "a" * 64, "b" * 64
WAIT_S = 120  # bound for a released lock to show: generous for a loaded host


def open_spec(spec: dict) -> RunState:
    if spec["kind"] == "sqlite":
        return SQLiteState(Path(spec["ledger"]), Path(spec["locks"]), Path(spec["retrain"]))
    from tasks.state.postgres import PostgresState

    return PostgresState(spec["url"])


@pytest.fixture(params=["sqlite", "postgresql"])
def spec(request, tmp_path) -> dict:
    if request.param == "sqlite":
        return {"kind": "sqlite", "ledger": str(tmp_path / "state" / "ledger.sqlite"),
                "locks": str(tmp_path / "state" / "locks"),
                "retrain": str(tmp_path / "models" / ".retrain.lock")}
    cluster = request.getfixturevalue("pg_cluster")
    return {"kind": "postgresql", "url": cluster.create_database(f"t{uuid.uuid4().hex[:12]}")}


@pytest.fixture
def state(spec):
    opened = open_spec(spec)
    yield opened
    opened.close()


def entry(sha: str, model: str = "v1", **changes) -> ScoredFile:
    values = dict(source_sha256=sha, model_version=model, source_file=f"{sha[:4]}.csv",
                  rows_read=10, rows_scored=9, rows_quarantined=1,
                  scored_part=f"scored/{sha[:4]}.parquet", quarantine_part=None,
                  finished_at="2026-12-02T10:00:00+00:00", encoding="utf-8",
                  rows_id_generated=0)
    return ScoredFile(**(values | changes))


# -- the ledger ---------------------------------------------------------------------------

def test_record_and_query(state):
    assert isinstance(state, RunState)
    assert state.scored(SHA_A, "v1") is None and state.committed_not_archived(SHA_A) is None
    state.record_scored_many([entry(SHA_A), entry(SHA_B, scored_part=json.dumps(["p1", "p2"]),
                                                  quarantine_part="q1")])
    assert state.scored(SHA_A, "v1") == entry(SHA_A)
    assert state.scored(SHA_A, "v2") is None
    assert state.committed_not_archived(SHA_A) == entry(SHA_A)
    assert sorted(e.source_sha256 for e in state.unarchived()) == [SHA_A, SHA_B]
    state.record_archived_many([SHA_B])
    assert state.unarchived() == [entry(SHA_A)]
    assert state.committed_parts([SHA_A, SHA_B, "c" * 64]) == {
        SHA_A: [f"scored/{SHA_A[:4]}.parquet"], SHA_B: ["p1", "p2", "q1"], "c" * 64: []}
    assert state.totals() == {"rows_read": 20, "rows_scored": 18, "rows_quarantined": 2,
                              "files_quarantined": 0}


def test_records_are_idempotent(state):
    state.record_scored_many([entry(SHA_A)])
    state.record_scored_many([entry(SHA_A, rows_scored=8, rows_quarantined=2)])  # replaces
    assert state.scored(SHA_A, "v1").rows_scored == 8
    assert state.totals()["rows_read"] == 10
    state.record_archived_many([SHA_A])
    archived = state.scored(SHA_A, "v1").archived_at
    assert archived and state.committed_not_archived(SHA_A) is None
    state.record_archived_many([SHA_A, "c" * 64])  # again, and an unknown content: no change
    assert state.scored(SHA_A, "v1").archived_at == archived
    state.record_scored_many([])
    state.record_archived_many([])
    state.record_quarantined_file(SHA_B, "b.csv", "bad header", "quarantine/files/b.csv")
    state.record_quarantined_file(SHA_B, "b.csv", "bad header", "quarantine/files/b~2.csv")
    assert state.totals()["files_quarantined"] == 1


def test_the_record_is_shared_by_every_opener(spec, state):
    other = open_spec(spec)
    try:
        state.record_scored_many([entry(SHA_A)])
        assert other.scored(SHA_A, "v1") == entry(SHA_A)
        state.record_shard(checkpoint(SHA_B))
        assert [r.shard for r in other.shard_records(SHA_B)] == [0]
    finally:
        other.close()


def checkpoint(sha: str, shard: int = 0, model: str = "v1", plan: str = "p1",
               **changes) -> ShardRecord:
    values = dict(source_sha256=sha, model_version=model, plan=plan, shard=shard,
                  scored_part=f"scored/d/.part-{sha[:4]}-s{shard:04d}.parquet.{plan}.tmp",
                  quarantine_part=None, counts=json.dumps({"rows_read": 10 + shard}))
    return ShardRecord(**(values | changes))


def _without_time(records: list[ShardRecord]) -> list[ShardRecord]:
    """Records in a fixed order, without the time they were recorded at."""
    return sorted((ShardRecord(**{**r.__dict__, "recorded_at": ""}) for r in records),
                  key=lambda r: (r.source_sha256, r.model_version, r.plan, r.shard))


def test_checkpoints_are_kept_replaced_forgotten_and_end_with_their_commit(state):
    """A file's finished shards (tasks/state/checkpoints.py): kept per content, model, plan
    and shard; a second record of one replaces the first; forgotten one by one; and the
    commit of the content forgets them all in its own transaction."""
    assert state.shard_records(SHA_A) == [] and state.shard_records() == []
    kept = [checkpoint(SHA_A, 1), checkpoint(SHA_A, 0), checkpoint(SHA_A, 0, model="v2"),
            checkpoint(SHA_A, 0, plan="p2", quarantine_part="rows/d/.q.tmp"), checkpoint(SHA_B)]
    for record in kept:
        state.record_shard(record)
    assert all(r.recorded_at for r in state.shard_records())  # when each was kept
    assert _without_time(state.shard_records(SHA_A)) == _without_time(kept[:4])
    assert [r.shard for r in state.shard_records(SHA_A)] == [0, 0, 0, 1]  # in shard order
    assert _without_time(state.shard_records()) == _without_time(kept)
    again = checkpoint(SHA_A, 1, counts=json.dumps({"rows_read": 99}), scored_part=None)
    state.record_shard(again)  # the same shard again: replaces it
    assert _without_time([r for r in state.shard_records(SHA_A) if r.shard == 1]) == [again]
    state.forget_shards([kept[2], checkpoint(SHA_A, 7)])  # one absent: no error
    state.forget_shards([])
    assert _without_time(state.shard_records(SHA_A)) == _without_time(
        [kept[1], kept[3], again])
    state.record_scored_many([entry(SHA_A)])  # the file is committed: its checkpoints go
    assert state.shard_records(SHA_A) == []
    assert _without_time(state.shard_records()) == [checkpoint(SHA_B)]
    assert state.totals()["rows_read"] == 10  # checkpoints are no scored rows


# -- the locks ----------------------------------------------------------------------------

@pytest.mark.parametrize("timed", [False, True], ids=["bare", "timed"])
def test_a_content_lock_excludes_a_second_claim(spec, state, timed):
    """Also through ``TimedState`` (what a scoring run uses): timing changes nothing."""
    other = open_spec(spec)
    if timed:
        state, other = TimedState(state), TimedState(other)
    try:
        with state.content_lock(SHA_A):
            with pytest.raises(LockHeldError):  # another opener (another connection)
                with other.content_lock(SHA_A):
                    pass
            with pytest.raises(LockHeldError):  # a second claim through the same one
                with state.content_lock(SHA_A):
                    pass
            with other.content_lock(SHA_B):  # another content is free
                pass
        with other.content_lock(SHA_A):  # released on exit
            pass
        with state.retrain_lock():
            with pytest.raises(LockHeldError):
                with other.retrain_lock():
                    pass
        with state.claim_lock("bucket/incoming/a.csv"):  # one claimer per inbox object
            with pytest.raises(LockHeldError):
                with other.claim_lock("bucket/incoming/a.csv"):
                    pass
            with other.claim_lock("bucket/incoming/b.csv"):
                pass
        with other.claim_lock("bucket/incoming/a.csv"):
            pass
        with other.retrain_lock():
            pass
        with state.pointer_lock():  # a registry on object storage (tasks.training.registry)
            with pytest.raises(LockHeldError):
                with other.pointer_lock():
                    pass
            with other.retrain_lock():  # not the retraining lock
                pass
        with other.pointer_lock():
            pass
        if timed:
            assert state.seconds > 0 and other.seconds > 0
            assert isinstance(state, RunState) and state.where() == other.where()
    finally:
        other.close()


_HOLDER = """\
import json, sys
sys.path.insert(0, sys.argv[2])
from tests.test_state_contract import open_spec, entry
spec = json.loads(sys.argv[1])
state = open_spec(spec)
lock = state.content_lock("a" * 64) if sys.argv[3] == "content" else state.retrain_lock()
with lock:
    print(json.dumps({"held": True}), flush=True)
    for line in sys.stdin:  # "commit": try to commit while (believing it is) holding
        try:
            state.record_scored_many([entry("a" * 64, "holder")])
            print(json.dumps({"committed": True}), flush=True)
        except Exception as exc:
            print(json.dumps({"committed": False, "error": type(exc).__name__,
                              "message": str(exc)}), flush=True)
"""


def _holder(spec: dict, what: str = "content") -> tuple[subprocess.Popen, dict]:
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, json.dumps(spec), str(ROOT), what],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    assert line, f"the holder exited with {child.wait()} before taking the lock"
    return child, json.loads(line)


def _take_when_released(state: RunState, what: str = "content") -> None:
    """Take the lock as soon as the database (or kernel) has released it; fail if it
    is still held after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            with state.content_lock(SHA_A) if what == "content" else state.retrain_lock():
                return
        except LockHeldError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("what", ["content", "retrain"])
def test_a_lock_dies_with_its_sigkilled_holder(spec, state, what):
    child, _ = _holder(spec, what)
    try:
        with pytest.raises(LockHeldError):
            with state.content_lock(SHA_A) if what == "content" else state.retrain_lock():
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    _take_when_released(state, what)


def test_a_lock_dies_with_its_terminated_backend(spec, state, pg_cluster):
    """The holder's connection is cut (``pg_terminate_backend``): the lock is free for
    the next run at once, and the holder, still running, cannot commit any more."""
    if spec["kind"] != "postgresql":
        pytest.skip("a SQLite state has no connection to cut")
    import psycopg

    child, _ = _holder(spec)
    try:
        with pytest.raises(LockHeldError) as refused:
            with state.content_lock(SHA_A):
                pass
        # The refusal names the holder's process and its backend: what an operator cuts.
        holder = re.search(rf"reviewflow \S+ pid {child.pid} \(backend (\d+)\)",
                           str(refused.value))
        assert holder, str(refused.value)
        with psycopg.connect(spec["url"], autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)",
                                 (int(holder.group(1)),)).fetchone()[0]
        _take_when_released(state)
        child.stdin.write("commit\n")
        child.stdin.flush()
        answer = json.loads(child.stdout.readline())
        assert answer["committed"] is False and answer["error"] == "StateUnavailableError"
        assert "127.0.0.1" in answer["message"] and postgres.PASSWORD not in answer["message"]
        assert state.scored(SHA_A, "holder") is None
    finally:
        child.kill()
        child.wait()


# -- PostgreSQL: schema, connections, password --------------------------------------------

def test_the_schema_is_made_on_first_use_by_concurrent_workers(pg_cluster):
    """Three processes open one empty database at once: each gets the whole schema,
    each migration is applied once."""
    import psycopg

    from tasks.state.postgres import SCHEMA_VERSION

    url = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")
    code = ("import sys; sys.path.insert(0, sys.argv[2]); import psycopg; from "
            "tasks.state.postgres import PostgresState; PostgresState(sys.argv[1]); "
            "print(psycopg.connect(sys.argv[1]).execute("
            "'SELECT MAX(version) FROM schema_version').fetchone()[0])")
    children = [subprocess.Popen([sys.executable, "-c", code, url, str(ROOT)],
                                 stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [child.communicate()[0].strip() for child in children]
    assert [child.returncode for child in children] == [0, 0, 0]
    assert outputs == [str(SCHEMA_VERSION)] * 3
    with psycopg.connect(url) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_an_older_schema_is_upgraded_in_place(pg_cluster):
    import psycopg

    from tasks.state.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresState

    url = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")
    with psycopg.connect(url) as db:  # a database left by a version-1 reviewflow
        for statement in MIGRATIONS[0][1]:
            db.execute(statement)
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                   " applied_at TEXT NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1, 'then')")
        db.execute("INSERT INTO scored_files VALUES (%s, 'v0', 'old.csv', 5, 5, 0,"
                   " 'scored/old.parquet', NULL, '2026-01-01T00:00:00+00:00')", (SHA_A,))
    state = PostgresState(url)
    try:
        with psycopg.connect(url) as db:
            assert db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == \
                SCHEMA_VERSION
        assert state.shard_records() == []  # the checkpoints' table, made by migration 4
        state.record_shard(checkpoint(SHA_A))
        assert [r.plan for r in state.shard_records(SHA_A)] == ["p1"]
        old = state.scored(SHA_A, "v0")
        # Its run had ended: archived when it finished, as the SQLite ledger counts it.
        assert old.archived_at == old.finished_at and old.encoding is None
        assert state.committed_not_archived(SHA_A) is None
        state.record_scored_many([entry(SHA_B)])
        assert state.scored(SHA_B, "v1") == entry(SHA_B)
    finally:
        state.close()
    with psycopg.connect(url) as db:
        db.execute("UPDATE schema_version SET version = 99 WHERE version = 1")
    with pytest.raises(StateUnavailableError, match="newer than this reviewflow"):
        PostgresState(url)


def _silent_server() -> tuple[socket.socket, int]:
    """A port that accepts connections and never answers (a hung server or firewall)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, server.getsockname()[1]


def test_a_database_that_is_down_gives_one_clear_line(tmp_path):
    from tasks.state.postgres import PostgresState

    port = postgres.free_port()  # nothing listens there
    url = f"postgresql://reviewflow:{postgres.PASSWORD}@127.0.0.1:{port}/state"
    with pytest.raises(StateUnavailableError) as caught:
        PostgresState(url)
    message = str(caught.value)
    assert f"127.0.0.1:{port}/state" in message and "REVIEWFLOW_STATE_URL" in message
    assert postgres.PASSWORD not in message and "\n" not in message
    assert caught.value.exit_code == 1

    # A server that never answers: the connect timeout ends the wait.
    server, port = _silent_server()
    result: list[BaseException] = []
    url = f"postgresql://reviewflow:{postgres.PASSWORD}@127.0.0.1:{port}/state"
    worker = threading.Thread(target=lambda: _capture(result, PostgresState, url, 2))
    try:
        worker.start()
        worker.join(WAIT_S)
        assert not worker.is_alive(), "the connection attempt did not time out"
    finally:
        server.close()
    assert isinstance(result[0], StateUnavailableError)
    assert postgres.PASSWORD not in str(result[0])


def _capture(into: list, function, *args) -> None:
    try:
        function(*args)
    except BaseException as exc:  # handed to the test's thread
        into.append(exc)


def test_the_password_comes_from_the_url_pgpassword_or_pgpass(pg_cluster, tmp_path,
                                                              monkeypatch):
    from tasks.state.postgres import PostgresState

    url = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")
    bare = url.replace(f":{postgres.PASSWORD}@", "@")
    wrong = url.replace(postgres.PASSWORD, "not-the-password-9Z")
    with pytest.raises(StateUnavailableError) as caught:
        PostgresState(wrong)
    assert "not-the-password-9Z" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "absent"))
    with pytest.raises(StateUnavailableError):
        PostgresState(bare)
    monkeypatch.setenv("PGPASSWORD", postgres.PASSWORD)
    PostgresState(bare).close()
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg_cluster.port}:*:{postgres.USER}:{postgres.PASSWORD}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    state = PostgresState(bare)
    assert postgres.PASSWORD not in state.where()
    state.close()


def test_redacted_hides_only_the_password():
    assert redacted("postgresql://rf:s3cret@db.example:5433/state") == \
        "postgresql://rf:***@db.example:5433/state"
    assert redacted("postgresql://rf@db/state") == "postgresql://rf@db/state"


def test_a_url_without_its_password_takes_it_from_the_environment(monkeypatch):
    """What a flow parameter holds (Prefect keeps it) and how the run gets the password."""
    from flows.configuration import settings_from
    from tasks.state.url import with_password_of, without_password

    full = "postgresql://rf:s3cret@db.example:5433/state?sslmode=require"
    bare = "postgresql://rf@db.example:5433/state?sslmode=require"
    assert without_password(full) == bare and without_password(bare) == bare
    assert without_password(None) is None
    assert with_password_of(bare, full) == full
    for other in ("postgresql://rf:s3cret@db.example:5433/other?sslmode=require",
                  "postgresql://admin:s3cret@db.example:5433/state?sslmode=require",
                  "postgresql://rf:s3cret@db.example:5432/state?sslmode=require", None):
        assert with_password_of(bare, other) == bare  # never lent to another database
    assert with_password_of("postgresql://rf:mine@db.example:5433/state", full) == \
        "postgresql://rf:mine@db.example:5433/state"  # a password given wins
    monkeypatch.setenv("REVIEWFLOW_STATE_URL", full)
    assert settings_from(state_url=bare).state_url == full
    monkeypatch.delenv("REVIEWFLOW_STATE_URL")
    assert settings_from(state_url=bare).state_url == bare


def test_open_state_chooses_by_url(tmp_path, pg_cluster):
    from tasks.layout import DataLayout
    from tasks.state.postgres import PostgresState

    layout = DataLayout(root=tmp_path)
    local = open_state(None, layout)
    assert isinstance(local, SQLiteState) and local.where() == str(layout.ledger)
    with pytest.raises(StateURLError, match="neither a postgresql:// URL") as refused:
        open_state("mysql://rf:pw-9Zq@host/db", layout)
    assert "pw-9Zq" not in str(refused.value)
    url = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")
    remote = open_state(url, DataLayout(root=tmp_path / "other"))
    assert isinstance(remote, PostgresState)
    remote.close()
    with pytest.raises(StateMismatchError):  # the first root is the state folder's
        open_state(url, layout)


# -- migration from the SQLite ledger -----------------------------------------------------

def _migrate(source: Path, url: str) -> dict:
    """``tasks.state.migrate.migrate_to_database`` of the state folder ``source`` for a
    root beside it; the row counts it reports."""
    from tasks.layout import DataLayout
    from tasks.state.migrate import migrate_to_database

    counts = migrate_to_database(DataLayout(root=source.parent / "data"), source, url)
    return {name: count for name, count in counts.items() if name != "target"}


def test_migrating_a_sqlite_ledger_copies_every_row_once(tmp_path, pg_cluster):
    from tasks.state.postgres import PostgresState

    path = tmp_path / "state" / "ledger.sqlite"
    ledger = Ledger(path)
    rows = [entry(f"{i:064x}", archived_at="2026-12-02T10:00:01+00:00") for i in range(1, 40)]
    rows.append(entry(SHA_A, model="v2"))  # committed, never archived
    ledger.record_scored_many(rows)
    ledger.record_quarantined_file(SHA_B, "b.csv", "no text column", "quarantine/files/b.csv")
    ledger.register_columns("/data", [("stars", "int64", "int64-as-arrow")])
    url = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")

    assert _migrate(path.parent, url) == {"scored_files": 40, "scored_files_present": 0,
                                          "quarantined_files": 1,
                                          "quarantined_files_present": 0,
                                          "scored_columns": 1, "scored_columns_present": 0}
    assert _migrate(path.parent, url) == {"scored_files": 0, "scored_files_present": 40,
                                          "quarantined_files": 0,
                                          "quarantined_files_present": 1,
                                          "scored_columns": 0, "scored_columns_present": 1}
    state = PostgresState(url)
    try:
        # The registry came along: a later writer of the name gets the type scored/ has.
        assert state.register_columns("/data", [("stars", "string", "string-as-arrow")]) == {
            "stars": "int64-as-arrow"}
        assert all(state.scored(row.source_sha256, row.model_version) == row for row in rows)
        assert state.committed_not_archived(SHA_A) == entry(SHA_A, model="v2")
        assert state.totals() == ledger.totals()
    finally:
        state.close()


def test_migrating_an_old_sqlite_ledger(tmp_path, pg_cluster):
    """A ledger from before ``archived_at``: its rows arrive archived, as tasks/state/ledger.py
    counts them."""
    from tasks.errors import NothingToMigrateError
    from tasks.state.postgres import PostgresState

    path = tmp_path / "state" / "ledger.sqlite"
    path.parent.mkdir()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE scored_files (source_sha256 TEXT NOT NULL, model_version TEXT"
                   " NOT NULL, source_file TEXT NOT NULL, rows_read INTEGER NOT NULL,"
                   " rows_scored INTEGER NOT NULL, rows_quarantined INTEGER NOT NULL,"
                   " scored_part TEXT, quarantine_part TEXT, finished_at TEXT NOT NULL,"
                   " PRIMARY KEY (source_sha256, model_version))")
        db.execute("CREATE TABLE quarantined_files (source_sha256 TEXT PRIMARY KEY, source_file"
                   " TEXT NOT NULL, reason TEXT NOT NULL, quarantined_path TEXT NOT NULL,"
                   " finished_at TEXT NOT NULL)")
        db.execute("INSERT INTO scored_files VALUES (?, 'v0', 'a.csv', 3, 3, 0, 'p', NULL,"
                   " '2026-01-01T00:00:00+00:00')", (SHA_A,))
    url = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")
    assert _migrate(path.parent, url)["scored_files"] == 1
    state = PostgresState(url)
    try:
        assert state.scored(SHA_A, "v0").archived_at == "2026-01-01T00:00:00+00:00"
        assert state.committed_not_archived(SHA_A) is None
    finally:
        state.close()
    with pytest.raises(NothingToMigrateError, match="no SQLite ledger"):
        _migrate(tmp_path / "absent", url)


def test_a_sqlite_ledger_from_before_checkpoints_gains_their_table(tmp_path):
    """A user's ledger without ``scored_shards`` opens with the table, its rows kept."""
    path = tmp_path / "ledger.sqlite"
    Ledger(path).record_scored_many([entry(SHA_A)])
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP TABLE scored_shards")
    ledger = Ledger(path)
    assert ledger.scored(SHA_A, "v1") == entry(SHA_A) and ledger.shard_records() == []
    ledger.record_shard(checkpoint(SHA_B))
    assert [r.source_sha256 for r in ledger.shard_records()] == [SHA_B]


def test_the_harness_uses_password_authentication(pg_cluster):
    import psycopg

    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_cluster.url_for("postgres", password=False),
                        connect_timeout=10, passfile=os.devnull).close()

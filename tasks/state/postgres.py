"""The run state in PostgreSQL (``REVIEWFLOW_STATE_URL=postgresql://user@host:port/db``).

The same records as the SQLite ledger (tasks/state/ledger.py), in tables of the same names and
columns, so that workers on several hosts share one record of what was scored:

- ``scored_files``: one row per (content sha256, model version) committed; the commit
  point of a file's scoring. ``archived_at`` NULL: committed, input not yet archived.
- ``quarantined_files``: one row per content quarantined whole.
- ``scored_shards``: the checkpoints of files not yet committed (``tasks.state.checkpoints``);
  a file's commit removes its rows in the same transaction.
- ``schema_version``: the migrations applied. The product creates and upgrades the
  schema itself (``MIGRATIONS``), in one transaction under an advisory lock, so two
  workers starting at once against an older schema do not race.

Locks are session-level advisory locks (``pg_try_advisory_lock``), keyed by the first 64
bits of the content's sha256, by a hash of an inbox object's or claimed file's key for a
claim (``claim_lock``), and by a fixed key for retraining. They belong to this object's
connection: PostgreSQL drops them the moment that backend ends, whether its process was
SIGKILLed, its host vanished (TCP keepalives, set per session below, bound how long the
server takes to notice) or the connection was cut (``pg_terminate_backend``). The ledger
writes go over that same connection: a run whose session (and so whose locks) was lost
cannot commit, it gets ``StateUnavailableError`` instead and stops, and the next run
takes the file over. Advisory locks are reentrant within one session, so this object
also keeps the keys it holds and refuses a second claim of one content in-process, as a
second ``flock`` of one file does.

The password comes from the URL, ``PGPASSWORD`` or ``~/.pgpass`` (libpq reads the last
two itself); every message shows the database as host:port/db and never the password
(``tasks.state.url`` reads the URL as libpq does, and scrubs libpq's messages of it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, fields
from pathlib import Path

import psycopg

from tasks.errors import StateUnavailableError
from tasks.state.ledger import Ledger, ScoredFile, ShardRecord, ledger_time, part_paths
from tasks.state.marker import StateName
from tasks.state.url import describe, parse, secrets_of
from tasks.storage.local import LockHeldError

CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_S = 60
# How long the server waits before it drops the session of a client that vanished.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 30, 10, 3

_FIELDS = [f.name for f in fields(ScoredFile)]
_SCORED_COLUMNS = ", ".join(_FIELDS)
_SHARD_FIELDS = [f.name for f in fields(ShardRecord)]
_SHARD_COLUMNS = ", ".join(_SHARD_FIELDS)


def _key(label: str) -> int:
    """A stable signed 64-bit advisory-lock key for a fixed name."""
    digest = hashlib.sha256(label.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def content_lock_key(sha256: str) -> int:
    """The advisory-lock key of a content: the first 64 bits of its sha256, signed."""
    return int.from_bytes(bytes.fromhex(sha256[:16]), "big", signed=True)


MIGRATION_KEY = _key("reviewflow:schema-migration")
RETRAIN_KEY = _key("reviewflow:retraining")
POINTER_KEY = _key("reviewflow:champion-pointer")

# (version, statements). Version 1 is the ledger's first release; 2 adds what the SQLite
# ledger gained later (and counts old rows as archived, as tasks/state/ledger.py does).
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, ["""CREATE TABLE scored_files (
            source_sha256    TEXT NOT NULL,
            model_version    TEXT NOT NULL,
            source_file      TEXT NOT NULL,
            rows_read        BIGINT NOT NULL,
            rows_scored      BIGINT NOT NULL,
            rows_quarantined BIGINT NOT NULL,
            scored_part      TEXT,
            quarantine_part  TEXT,
            finished_at      TEXT NOT NULL,
            PRIMARY KEY (source_sha256, model_version))""",
         """CREATE TABLE quarantined_files (
            source_sha256    TEXT PRIMARY KEY,
            source_file      TEXT NOT NULL,
            reason           TEXT NOT NULL,
            quarantined_path TEXT NOT NULL,
            finished_at      TEXT NOT NULL)"""]),
    (2, ["ALTER TABLE scored_files ADD COLUMN encoding TEXT,"
         " ADD COLUMN rows_id_generated BIGINT, ADD COLUMN archived_at TEXT",
         "UPDATE scored_files SET archived_at = finished_at",
         "CREATE INDEX scored_files_not_archived ON scored_files (source_sha256)"
         " WHERE archived_at IS NULL"]),
    # The database's id in the data root's state marker: two states on one root are refused.
    (3, ["CREATE TABLE state_identity (state_id TEXT NOT NULL)",
         "INSERT INTO state_identity SELECT replace(gen_random_uuid()::text, '-', '')"]),
    # Checkpoints: the finished shards of files not yet committed (tasks/state/checkpoints.py).
    (4, ["""CREATE TABLE scored_shards (
            source_sha256    TEXT NOT NULL,
            model_version    TEXT NOT NULL,
            plan             TEXT NOT NULL,
            shard            INTEGER NOT NULL,
            scored_part      TEXT,
            quarantine_part  TEXT,
            counts           TEXT NOT NULL,
            recorded_at      TEXT NOT NULL,
            PRIMARY KEY (source_sha256, model_version, plan, shard))"""]),
    # The type of each pass-through column name in a data root's scored/ (RunState.register_columns).
    (5, ["""CREATE TABLE scored_columns (
            data_root        TEXT NOT NULL,
            name             TEXT NOT NULL,
            type_name        TEXT NOT NULL,
            arrow_type       TEXT NOT NULL,
            registered_at    TEXT NOT NULL,
            PRIMARY KEY (data_root, name))"""]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _scrub(text: str, url: str) -> str:
    """An error text from libpq with every password it could hold taken out (the URL's,
    as libpq reads it, and PGPASSWORD's), on one line."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return " ".join(text.split())


class PostgresState:
    """The ledger and locks of one data root's runs in one PostgreSQL database."""

    def __init__(self, url: str, connect_timeout: int = CONNECT_TIMEOUT_S,
                 statement_timeout: int = STATEMENT_TIMEOUT_S):
        parse(url)  # StateURLError, which does not echo it, for one libpq cannot read
        self.url = url
        self._where = describe(url)
        self._mutex = threading.RLock()  # one connection, shared by the flow's threads
        self._held: set[int] = set()
        self._db = self._connect(connect_timeout, statement_timeout)
        self._run(self._migrate)

    def where(self) -> str:
        return f"postgresql {self._where}"

    def _connect(self, connect_timeout: int, statement_timeout: int) -> psycopg.Connection:
        options = (f"-c statement_timeout={statement_timeout * 1000}"
                   f" -c lock_timeout={statement_timeout * 1000}"
                   f" -c tcp_keepalives_idle={KEEPALIVE_IDLE_S}"
                   f" -c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S}"
                   f" -c tcp_keepalives_count={KEEPALIVE_COUNT}")
        name = f"reviewflow {socket.gethostname()} pid {os.getpid()}"[:63]
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=connect_timeout,
                                   application_name=name, options=options, keepalives=1,
                                   keepalives_idle=KEEPALIVE_IDLE_S,
                                   keepalives_interval=KEEPALIVE_INTERVAL_S,
                                   keepalives_count=KEEPALIVE_COUNT)
        except psycopg.Error as exc:
            refused = "password authentication failed" in str(exc)
            raise StateUnavailableError(
                f"the state database {self._where} "
                f"{'refused the login' if refused else 'cannot be reached'} "
                f"({_scrub(str(exc), self.url)}): "
                f"{'correct the password of' if refused else 'start PostgreSQL there or correct'} "
                "REVIEWFLOW_STATE_URL (the password comes from the URL, PGPASSWORD or "
                "~/.pgpass), then run again; nothing was read or moved") from None

    def _run(self, operation, *args):
        """``operation(cursor, *args)`` under the mutex; a lost connection or a database
        error becomes ``StateUnavailableError`` (the run stops; the locks this session
        held are already released by the database)."""
        with self._mutex:
            try:
                with self._db.cursor() as cursor:
                    return operation(cursor, *args)
            except psycopg.OperationalError as exc:
                raise StateUnavailableError(
                    f"the connection to the state database {self._where} failed mid-run "
                    f"({_scrub(str(exc), self.url)}): this run stops here and its locks "
                    "are released; run again once the database is back (what was "
                    "committed stays committed)") from None

    def _migrate(self, cursor) -> None:
        with self._db.transaction():
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_KEY,))
            cursor.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                           " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            current = cursor.execute("SELECT COALESCE(MAX(version), 0)"
                                     " FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise StateUnavailableError(
                    f"the state database {self._where} has schema version {current}, newer "
                    f"than this reviewflow's {SCHEMA_VERSION}: upgrade reviewflow on this host")
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        cursor.execute(statement)
                    cursor.execute("INSERT INTO schema_version VALUES (%s, %s)",
                                   (version, ledger_time()))

    def identity(self) -> StateName:
        state_id = self._run(lambda c: c.execute(
            "SELECT state_id FROM state_identity").fetchone()[0])
        return StateName(f"pg-{state_id}", self.where())

    # -- the ledger --------------------------------------------------------------------
    def scored(self, sha256: str, model_version: str) -> ScoredFile | None:
        row = self._run(lambda c: c.execute(
            f"SELECT {_SCORED_COLUMNS} FROM scored_files WHERE source_sha256=%s"
            " AND model_version=%s", (sha256, model_version)).fetchone())
        return ScoredFile(*row) if row else None

    def committed_not_archived(self, sha256: str) -> ScoredFile | None:
        row = self._run(lambda c: c.execute(
            f"SELECT {_SCORED_COLUMNS} FROM scored_files WHERE source_sha256=%s"
            " AND archived_at IS NULL LIMIT 1", (sha256,)).fetchone())
        return ScoredFile(*row) if row else None

    def unarchived(self) -> list[ScoredFile]:
        rows = self._run(lambda c: c.execute(
            f"SELECT {_SCORED_COLUMNS} FROM scored_files WHERE archived_at IS NULL").fetchall())
        return [ScoredFile(*row) for row in rows]

    def committed_parts(self, shas: list[str]) -> dict[str, list[str]]:
        parts: dict[str, list[str]] = {sha: [] for sha in shas}
        rows = self._run(lambda c: c.execute(
            "SELECT source_sha256, scored_part, quarantine_part FROM scored_files"
            " WHERE source_sha256 = ANY(%s)", (list(shas),)).fetchall())
        for sha, *records in rows:
            parts[sha] += [part for record in records for part in part_paths(record)]
        return parts

    def record_scored_many(self, entries: list[ScoredFile]) -> None:
        if not entries:
            return
        values = [asdict(e) | {"finished_at": e.finished_at or ledger_time()} for e in entries]
        updates = ", ".join(f"{name}=EXCLUDED.{name}" for name in _FIELDS[2:])
        sql = (f"INSERT INTO scored_files ({_SCORED_COLUMNS}) VALUES "
               f"({', '.join(f'%({name})s' for name in _FIELDS)}) "
               f"ON CONFLICT (source_sha256, model_version) DO UPDATE SET {updates}")

        def write(cursor):
            with self._db.transaction():
                cursor.executemany(sql, values)
                cursor.execute("DELETE FROM scored_shards WHERE source_sha256 = ANY(%s)",
                               ([e.source_sha256 for e in entries],))
        self._run(write)

    def register_columns(self, data_root: str, columns: list[tuple[str, str, str]]
                         ) -> dict[str, str]:
        if not columns:
            return {}
        now = ledger_time()

        def register(cursor):
            with self._db.transaction():
                cursor.executemany(
                    "INSERT INTO scored_columns VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (data_root, name) DO NOTHING",
                    [(data_root, name, type_name, arrow, now)
                     for name, type_name, arrow in columns])
            # Read after the commit: a writer on another host that won a name is
            # committed by then (ON CONFLICT waited for it), so its type is what comes back.
            return cursor.execute("SELECT name, arrow_type FROM scored_columns WHERE"
                                  " data_root=%s AND name = ANY(%s)",
                                  (data_root, [name for name, _, _ in columns])).fetchall()
        return dict(self._run(register))

    def record_shard(self, record: ShardRecord) -> None:
        values = asdict(record) | {"recorded_at": record.recorded_at or ledger_time()}
        updates = ", ".join(f"{name}=EXCLUDED.{name}" for name in _SHARD_FIELDS[4:])
        self._run(lambda c: c.execute(
            f"INSERT INTO scored_shards ({_SHARD_COLUMNS}) VALUES "
            f"({', '.join(f'%({name})s' for name in _SHARD_FIELDS)}) ON CONFLICT"
            f" (source_sha256, model_version, plan, shard) DO UPDATE SET {updates}", values))

    def shard_records(self, sha256: str | None = None) -> list[ShardRecord]:
        if sha256 is None:
            rows = self._run(lambda c: c.execute(
                f"SELECT {_SHARD_COLUMNS} FROM scored_shards"
                " ORDER BY source_sha256, shard").fetchall())
        else:
            rows = self._run(lambda c: c.execute(
                f"SELECT {_SHARD_COLUMNS} FROM scored_shards WHERE source_sha256=%s"
                " ORDER BY shard", (sha256,)).fetchall())
        return [ShardRecord(*row) for row in rows]

    def forget_shards(self, records: list[ShardRecord]) -> None:
        if not records:
            return

        def forget(cursor):
            with self._db.transaction():
                cursor.executemany(
                    "DELETE FROM scored_shards WHERE source_sha256=%s AND model_version=%s"
                    " AND plan=%s AND shard=%s",
                    [(r.source_sha256, r.model_version, r.plan, r.shard) for r in records])
        self._run(forget)

    def record_archived_many(self, shas: list[str]) -> None:
        if shas:
            self._run(lambda c: c.execute(
                "UPDATE scored_files SET archived_at=%s WHERE source_sha256 = ANY(%s)"
                " AND archived_at IS NULL", (ledger_time(), list(shas))))

    def record_quarantined_file(self, sha256: str, source_file: str, reason: str,
                                path: str) -> None:
        self._run(lambda c: c.execute(
            "INSERT INTO quarantined_files VALUES (%s, %s, %s, %s, %s) ON CONFLICT"
            " (source_sha256) DO UPDATE SET source_file=EXCLUDED.source_file,"
            " reason=EXCLUDED.reason, quarantined_path=EXCLUDED.quarantined_path,"
            " finished_at=EXCLUDED.finished_at", (sha256, source_file, reason, path, ledger_time())))

    def totals(self) -> dict[str, int]:
        def read(cursor):
            read, scored, quarantined = cursor.execute(
                "SELECT COALESCE(SUM(rows_read),0), COALESCE(SUM(rows_scored),0),"
                " COALESCE(SUM(rows_quarantined),0) FROM scored_files").fetchone()
            files = cursor.execute("SELECT COUNT(*) FROM quarantined_files").fetchone()[0]
            return {"rows_read": int(read), "rows_scored": int(scored),
                    "rows_quarantined": int(quarantined), "files_quarantined": int(files)}
        return self._run(read)

    # -- the locks ---------------------------------------------------------------------
    def content_lock(self, sha256: str) -> contextlib.AbstractContextManager[None]:
        from tasks.layout import content_key

        return self._advisory(content_lock_key(sha256), f"content {content_key(sha256)}")

    def claim_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        return self._advisory(_key(f"reviewflow:claim:{key}"), f"the claim of {key}")

    def retrain_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._advisory(RETRAIN_KEY, "the retraining lock")

    def pointer_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._advisory(POINTER_KEY, "the champion pointer lock")

    @contextlib.contextmanager
    def _advisory(self, key: int, label: str) -> Iterator[None]:
        with self._mutex:
            if key in self._held:
                raise LockHeldError(f"{label} in {self._where} is held by this run")
            got = self._run(lambda c: c.execute("SELECT pg_try_advisory_lock(%s)",
                                                (key,)).fetchone()[0])
            if not got:
                raise LockHeldError(f"{label} in {self._where} is held by {self._holder(key)}")
            self._held.add(key)
        try:
            yield
        finally:
            with self._mutex:
                self._held.discard(key)
                with contextlib.suppress(psycopg.Error):  # a lost session holds nothing
                    self._db.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _holder(self, key: int) -> str:
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        row = self._run(lambda c: c.execute(
            "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a"
            " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s",
            (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone())
        return f"{row[0] or 'a client'} (backend {row[1]})" if row else "another run"

    def close(self) -> None:
        with self._mutex:
            self._held.clear()
            self._db.close()

    def copy_ledger(self, ledger: Path) -> dict[str, int]:
        """Copy every row of the SQLite ledger at ``ledger`` into this database, in one
        transaction (rows already here are kept as they are: a second copy adds
        nothing). Returns the rows copied and the rows found already present, per table."""
        Ledger(ledger)  # brings an old ledger's columns up to date first
        with closing(sqlite3.connect(ledger)) as db:
            scored = [dict(zip(_FIELDS, row)) for row in
                      db.execute(f"SELECT {_SCORED_COLUMNS} FROM scored_files")]
            quarantined = db.execute("SELECT source_sha256, source_file, reason,"
                                     " quarantined_path, finished_at FROM quarantined_files"
                                     ).fetchall()
            registered = db.execute("SELECT data_root, name, type_name, arrow_type,"
                                    " registered_at FROM scored_columns").fetchall()
        insert_scored = (f"INSERT INTO scored_files ({_SCORED_COLUMNS}) VALUES "
                         f"({', '.join(f'%({name})s' for name in _FIELDS)}) "
                         "ON CONFLICT DO NOTHING")
        insert_quarantined = ("INSERT INTO quarantined_files VALUES (%s, %s, %s, %s, %s)"
                              " ON CONFLICT DO NOTHING")
        # The column registry too: the types scored/ already holds stay the types.
        insert_registered = ("INSERT INTO scored_columns VALUES (%s, %s, %s, %s, %s)"
                             " ON CONFLICT DO NOTHING")

        def copy(cursor) -> dict[str, int]:
            counts = {}
            with self._db.transaction():
                for table, sql, rows in (("scored_files", insert_scored, scored),
                                         ("quarantined_files", insert_quarantined,
                                          quarantined),
                                         ("scored_columns", insert_registered, registered)):
                    copied = 0
                    for row in rows:
                        cursor.execute(sql, row)
                        copied += cursor.rowcount
                    counts[table], counts[f"{table}_present"] = copied, len(rows) - copied
            return counts
        return self._run(copy)

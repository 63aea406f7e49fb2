"""The run ledger (``state/ledger.sqlite``): which file contents were scored by which model.

A file's scoring is committed when its row is inserted here; the Parquet parts it
wrote have deterministic names, so a run that died before this commit is redone by
the next run, which overwrites those parts rather than adding to them. ``archived_at``
is set once the input has left ``incoming/``: content with a committed row that was
never archived is the leftover of a run killed between the two, whichever model is
the champion now, and is archived rather than scored again.

The ledger is SQLite on a local (or shared POSIX) path, also when the data root is on
object storage (``state_dir``): it is the commit record there as well. ``scored_part``
holds the path or URL of a file's part, or a JSON list of them for a file scored in
shards.

``scored_shards`` holds the checkpoints of files not yet committed: shards a run
finished and kept under their checkpoint names (``tasks.state.checkpoints``), so a run
stopped inside a large file leaves its finished shards to the next one. A file's commit
removes its rows there in the same transaction (``record_scored_many``). A ledger from
before the table gains it, empty, when opened.

``scored_columns`` holds the type each pass-through column name has in a data root's
``scored/``: the first file to bring a name fixes its type (``register_columns``). A
ledger from before the table gains it, empty, when opened.

``encoding`` (the text encoding the file was read in; NULL for Parquet),
``rows_id_generated`` (rows whose ``review_id`` was generated because the file has no
id column) and ``archived_at``: a ledger without these columns gains them when opened,
its old rows NULL there (``archived_at``: their ``finished_at``, since those runs had
ended).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scored_files (
    source_sha256    TEXT NOT NULL,
    model_version    TEXT NOT NULL,
    source_file      TEXT NOT NULL,
    rows_read        INTEGER NOT NULL,
    rows_scored      INTEGER NOT NULL,
    rows_quarantined INTEGER NOT NULL,
    scored_part      TEXT,
    quarantine_part  TEXT,
    finished_at      TEXT NOT NULL,
    encoding         TEXT,
    rows_id_generated INTEGER,
    archived_at      TEXT,
    PRIMARY KEY (source_sha256, model_version)
);
CREATE TABLE IF NOT EXISTS quarantined_files (
    source_sha256    TEXT PRIMARY KEY,
    source_file      TEXT NOT NULL,
    reason           TEXT NOT NULL,
    quarantined_path TEXT NOT NULL,
    finished_at      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scored_shards (
    source_sha256    TEXT NOT NULL,
    model_version    TEXT NOT NULL,
    plan             TEXT NOT NULL,
    shard            INTEGER NOT NULL,
    scored_part      TEXT,
    quarantine_part  TEXT,
    counts           TEXT NOT NULL,
    recorded_at      TEXT NOT NULL,
    PRIMARY KEY (source_sha256, model_version, plan, shard)
);
CREATE TABLE IF NOT EXISTS scored_columns (
    data_root        TEXT NOT NULL,
    name             TEXT NOT NULL,
    type_name        TEXT NOT NULL,
    arrow_type       TEXT NOT NULL,
    registered_at    TEXT NOT NULL,
    PRIMARY KEY (data_root, name)
);
"""


@dataclass(frozen=True)
class ScoredFile:
    source_sha256: str
    model_version: str
    source_file: str
    rows_read: int
    rows_scored: int
    rows_quarantined: int
    scored_part: str | None
    quarantine_part: str | None
    finished_at: str = ""
    encoding: str | None = None
    rows_id_generated: int | None = None
    archived_at: str | None = None  # when the input left incoming/; None: not yet


@dataclass(frozen=True)
class ShardRecord:
    """A checkpoint: one finished shard of a file not yet committed, for (content, model,
    plan). ``plan`` names how the file was cut and read (``tasks.state.checkpoints.
    plan_key``); the parts are the shard's checkpoint names; ``counts`` is the shard's
    result as JSON (its rows, and the drift signals' counts)."""

    source_sha256: str
    model_version: str
    plan: str
    shard: int
    scored_part: str | None
    quarantine_part: str | None
    counts: str
    recorded_at: str = ""


_SHARD_COLUMNS = ", ".join(f.name for f in fields(ShardRecord))


# Columns added to scored_files after its first release, with their SQL types.
_ADDED_COLUMNS = {"encoding": "TEXT", "rows_id_generated": "INTEGER", "archived_at": "TEXT"}
_SCORED_COLUMNS = ", ".join(f.name for f in fields(ScoredFile))


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(scored_files)")}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in present:  # a ledger from before the column: add it, NULL
                    db.execute(f"ALTER TABLE scored_files ADD COLUMN {name} {kind}")
            if "archived_at" not in present:
                # Its files count as archived: their runs ended before this version
                # could say otherwise.
                db.execute("UPDATE scored_files SET archived_at = finished_at")
            # What each run's start asks for (``unarchived``): the few rows, not a scan.
            db.execute("CREATE INDEX IF NOT EXISTS scored_files_not_archived ON scored_files"
                       " (source_sha256) WHERE archived_at IS NULL")

    def _connect(self) -> sqlite3.Connection:
        # Two workers may commit at once; wait for the other's transaction to end.
        return sqlite3.connect(self.path, timeout=60, isolation_level="IMMEDIATE")

    def scored(self, sha256: str, model_version: str) -> ScoredFile | None:
        with closing(self._connect()) as db:
            row = db.execute(f"SELECT {_SCORED_COLUMNS} FROM scored_files WHERE source_sha256=?"
                             " AND model_version=?", (sha256, model_version)).fetchone()
        return ScoredFile(*row) if row else None

    def committed_not_archived(self, sha256: str) -> ScoredFile | None:
        """A committed scoring of this content whose input was never archived, by any
        model: a run died between its commit and its archive move."""
        with closing(self._connect()) as db:
            row = db.execute(f"SELECT {_SCORED_COLUMNS} FROM scored_files WHERE source_sha256=?"
                             " AND archived_at IS NULL", (sha256,)).fetchone()
        return ScoredFile(*row) if row else None

    def unarchived(self) -> list[ScoredFile]:
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT {_SCORED_COLUMNS} FROM scored_files"
                              " WHERE archived_at IS NULL").fetchall()
        return [ScoredFile(*row) for row in rows]

    def committed_parts(self, shas: list[str]) -> dict[str, list[str]]:
        """Every part path (scored and rejected) the ledger lists for each of these
        contents, by any model: the output a sweep of uncommitted parts must keep. One
        query for a bundle of files."""
        parts: dict[str, list[str]] = {sha: [] for sha in shas}
        with closing(self._connect()) as db:
            for start in range(0, len(shas), 500):  # under SQLite's limit of parameters
                chunk = shas[start:start + 500]
                rows = db.execute("SELECT source_sha256, scored_part, quarantine_part FROM "
                                  f"scored_files WHERE source_sha256 IN "
                                  f"({', '.join('?' * len(chunk))})", chunk).fetchall()
                for sha, *records in rows:
                    parts[sha] += [part for record in records for part in part_paths(record)]
        return parts

    def record_scored_many(self, entries: list[ScoredFile]) -> None:
        """Commit several files' scorings in one transaction (one fsync); their
        checkpoints (``scored_shards``) go in the same transaction."""
        if not entries:
            return
        values = [asdict(e) | {"finished_at": e.finished_at or ledger_time()} for e in entries]
        with closing(self._connect()) as db, db:
            db.executemany(f"INSERT OR REPLACE INTO scored_files ({_SCORED_COLUMNS}) VALUES "
                       f"({', '.join(':' + f.name for f in fields(ScoredFile))})", values)
            db.executemany("DELETE FROM scored_shards WHERE source_sha256=?",
                           [(e.source_sha256,) for e in entries])

    def record_shard(self, record: ShardRecord) -> None:
        """Keep a checkpoint; a second record of one (content, model, plan, shard)
        replaces the first."""
        values = asdict(record) | {"recorded_at": record.recorded_at or ledger_time()}
        with closing(self._connect()) as db, db:
            db.execute(f"INSERT OR REPLACE INTO scored_shards ({_SHARD_COLUMNS}) VALUES "
                       f"({', '.join(':' + f.name for f in fields(ShardRecord))})", values)

    def shard_records(self, sha256: str | None = None) -> list[ShardRecord]:
        """The checkpoints of one content (any model, any plan), or of every content."""
        with closing(self._connect()) as db:
            if sha256 is None:
                rows = db.execute(f"SELECT {_SHARD_COLUMNS} FROM scored_shards"
                                  " ORDER BY source_sha256, shard").fetchall()
            else:
                rows = db.execute(f"SELECT {_SHARD_COLUMNS} FROM scored_shards"
                                  " WHERE source_sha256=? ORDER BY shard", (sha256,)).fetchall()
        return [ShardRecord(*row) for row in rows]

    def forget_shards(self, records: list[ShardRecord]) -> None:
        """Remove these checkpoints' records (one transaction)."""
        if not records:
            return
        with closing(self._connect()) as db, db:
            db.executemany("DELETE FROM scored_shards WHERE source_sha256=? AND"
                           " model_version=? AND plan=? AND shard=?",
                           [(r.source_sha256, r.model_version, r.plan, r.shard)
                            for r in records])

    def record_archived_many(self, shas: list[str]) -> None:
        """These contents' inputs have left ``incoming/``: their committed rows are
        complete (one transaction, one fsync)."""
        if not shas:
            return
        now = ledger_time()
        with closing(self._connect()) as db, db:
            db.executemany("UPDATE scored_files SET archived_at=? WHERE source_sha256=?"
                           " AND archived_at IS NULL", [(now, sha) for sha in shas])

    def register_columns(self, data_root: str, columns: list[tuple[str, str, str]]
                         ) -> dict[str, str]:
        """Register (name, type_name, arrow_type) of pass-through columns of ``data_root``:
        a name registered before keeps its type. Returns each name's registered
        ``arrow_type``."""
        if not columns:
            return {}
        now = ledger_time()
        with closing(self._connect()) as db, db:  # IMMEDIATE: one writer at a time
            db.executemany("INSERT INTO scored_columns VALUES (?, ?, ?, ?, ?)"
                           " ON CONFLICT (data_root, name) DO NOTHING",
                           [(data_root, name, type_name, arrow, now)
                            for name, type_name, arrow in columns])
            rows = db.execute("SELECT name, arrow_type FROM scored_columns WHERE data_root=?",
                              (data_root,)).fetchall()
        wanted = {name for name, _, _ in columns}
        return {name: arrow for name, arrow in rows if name in wanted}

    def record_quarantined_file(self, sha256: str, source_file: str, reason: str,
                                path: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO quarantined_files VALUES (?, ?, ?, ?, ?)",
                       (sha256, source_file, reason, path, ledger_time()))

    def totals(self) -> dict[str, int]:
        with closing(self._connect()) as db:
            read, scored, quarantined = db.execute(
                "SELECT COALESCE(SUM(rows_read),0), COALESCE(SUM(rows_scored),0),"
                " COALESCE(SUM(rows_quarantined),0) FROM scored_files").fetchone()
            files = db.execute("SELECT COUNT(*) FROM quarantined_files").fetchone()[0]
        return {"rows_read": read, "rows_scored": scored, "rows_quarantined": quarantined,
                "files_quarantined": files}


def part_paths(record: str | None) -> list[str]:
    """The paths a ``scored_part``/``quarantine_part`` value names (``commit.part_record``
    writes it: one path, or a JSON list of a file's shard parts)."""
    if not record:
        return []
    return json.loads(record) if record.startswith("[") else [record]


def ledger_time() -> str:
    """Now, as both ledgers (SQLite, PostgreSQL) record a time: UTC, ISO 8601, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")

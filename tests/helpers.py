"""Helpers the tests share: plain functions, imported as ``from tests.helpers import …``.

The readers of a data root's output (``scored_rows``, ``quarantined_rows``,
``quarantined_files``, ``monitoring_rows`` and the DuckDB sources ``scored_sql`` and
``monitoring_sql``) ask ``tasks.layout.DataLayout`` where each folder is, and so do the
tests (``layout_of(root).incoming``); ``tests/test_layout.py`` checks the contract's
names themselves and counts the test files that still spell one, each with its reason. Beside them: inputs (``good_rows``, ``write_csv``, ``HARD_TEXTS``,
``frame_of_hard_texts``, ``korean_reviews``), a whole file through the product's
reader (``read_reviews``) and its row errors (``errors_of``), the packaged suite's
validator, one flow run (``score``), one command's exit code (``cli_exit_code``), a
registry version (``add_version``) and ``free_port`` (also for the harness modules
postgres.py and prefect_server.py).
Fixtures live in conftest.py.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from tasks.layout import MONITORING_PARTS_GLOB, DataLayout, reason_file
from tasks.storage.objects import ObjectPath, as_location

# What ``reason_file`` adds to a quarantined file's name (".reason.json").
REASON_SUFFIX = reason_file(Path("x")).name.removeprefix("x")


def held_out(keys: pd.Series, fraction: float) -> np.ndarray:
    """True where the split holds a key out of training (selection or gate), computed
    here from the split's published rule (the first 8 bytes of each key's BLAKE2b as a
    number in [0, 1), below ``fraction``), so a change to the rule fails the tests that
    pin it: the held-out reviews of earlier versions must stay held out."""
    position = np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(k).encode("utf-8"), digest_size=8).digest(), "big")
         / 2**64 for k in keys), dtype=np.float64, count=len(keys))
    return position < fraction


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- inputs

def good_rows(prefix: str, n: int) -> list[dict]:
    """``n`` ordinary reviews with ids ``<prefix>-0`` … that every check accepts."""
    words = ["wonderful and moving", "dull and far too long", "a delight", "a tedious mess"]
    return [{"review_id": f"{prefix}-{i}", "text": f"The film was {words[i % 4]}."}
            for i in range(n)]


def write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# Texts that break naive readers: quotes, tabs, line breaks of both kinds, a comma.
HARD_TEXTS = ['plain words', 'she said "wow", twice', 'a\ttab inside', 'two\nlines',
              'windows\r\nline break', '"starts and ends with quotes"', 'trailing quote"',
              '아 더빙.. 진짜 짜증나네요 "목소리']


def frame_of_hard_texts() -> pd.DataFrame:
    """``HARD_TEXTS`` as an export's frame: id, document, label."""
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(HARD_TEXTS))],
                         "document": HARD_TEXTS, "label": [i % 2 for i in range(len(HARD_TEXTS))]})


def korean_reviews(n: int) -> list[str]:
    """``n`` Korean reviews that cp949 and EUC-KR can hold."""
    return [f"아 더빙.. 진짜 짜증나네요 목소리 {i}" for i in range(n)]


def score(root, **settings) -> dict:
    """One run of the score-reviews flow on ``root`` in this process, the inbox taken
    as settled at once; ``settings`` are the flow's other parameters."""
    from flows.score_reviews import score_reviews

    return score_reviews(data_dir=str(root), settle_seconds=0, **settings)


def take_command_settings(monkeypatch, env: dict[str, str]) -> None:
    """Give this process the ``REVIEWFLOW_`` settings of ``env`` (a test's commands'
    environment), so a run started here next reads them as the commands did: for a test
    whose check is what killed or concurrent processes left, not a command's own start
    and exit (which the tests that run the command as a process cover)."""
    for name, value in env.items():
        if name.startswith("REVIEWFLOW_"):
            monkeypatch.setenv(name, value)


def read_reviews(path: Path, batch_rows: int = 1000, max_decompressed_bytes: int = 10**9,
                 columns=None, **options) -> pa.Table:
    """The whole file through ``tasks.reading.iter_review_batches`` (what scoring and
    training read with), its batches in one table; ``options`` go to the reader."""
    from tasks.reading import iter_review_batches
    from tasks.reading.columns import ColumnMapping

    batches = iter_review_batches(path, columns or ColumnMapping(), batch_rows,
                                  max_decompressed_bytes, **options)
    return pa.concat_tables(list(batches))


def packaged_validator(max_text_chars: int = 100_000, **options):
    """A ``ReviewValidator`` with the packaged expectation suite (``options``: e.g.
    ``require_label=True``, as training validates)."""
    from tasks.settings import PACKAGED_SUITE
    from tasks.validation import ReviewValidator, load_suite_config

    return ReviewValidator(load_suite_config(PACKAGED_SUITE),
                           parameters={"max_text_chars": max_text_chars}, **options)


def cli_exit_code(argv: list[str]) -> int | str | None:
    """What ``reviewflow ARGV`` exits with, run in this process: 0 when
    ``flows.cli.main`` returns, else the code of the ``SystemExit`` it raises (its one
    line is on stderr)."""
    from flows.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def add_version(root: Path, name: str) -> str:
    """Publish a copy of the champion under another version name."""
    from tasks.training.registry import Registry

    registry = Registry(DataLayout(root=root).models)
    shutil.copytree(registry.versions / registry.champion_version(), registry.versions / name)
    return name


def errors_of(table: pa.Table) -> dict[int, str]:
    """A read table's row errors by source row (the rows the reader rejected)."""
    return {row: error for row, error in zip(table.column("source_row").to_pylist(),
                                             table.column("read_error").to_pylist()) if error}


# --------------------------------------------------------------------------- outputs

def layout_of(root) -> DataLayout:
    """The data root's folders; ``root`` a local path, an s3:// URL or an ``ObjectPath``."""
    return DataLayout(root=root if isinstance(root, ObjectPath) else as_location(root))


def _parquet_rows(folder, columns: list[str] | None, empty: pa.Schema,
                  filesystem=None) -> pa.Table:
    """Every Parquet part under ``folder``, its ``name=value`` folders as columns (as a
    reader of the output sees them: dot- and underscore-names, the temporaries and the
    trends PNG, are left out); an empty table of ``empty`` if there is none.
    ``filesystem``: an fsspec file system, with ``folder`` an s3:// URL on it."""
    if filesystem is not None:
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        source = ds.dataset(str(folder).split("://", 1)[-1], format="parquet",
                            partitioning="hive",
                            filesystem=PyFileSystem(FSSpecHandler(filesystem)))
        return source.to_table(columns=columns)
    if not folder.exists() or not any(folder.rglob("*.parquet")):
        table = empty.empty_table()
        return table.select(columns) if columns is not None else table
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table(columns=columns)


def scored_parts(root) -> list[Path]:
    """The Parquet parts in ``scored/``, sorted."""
    return sorted(layout_of(root).scored.rglob("*.parquet"))


def scored_rows(root, columns: list[str] | None = None, filesystem=None) -> pa.Table:
    """Every scored row with its ``scored_date`` partition; empty (with the scored
    schema) when ``scored/`` holds no part. With ``filesystem`` (fsspec), ``root`` is a
    URL on it and the parts are read where they are."""
    from tasks.scoring.rows import SCORED_SCHEMA

    return _parquet_rows(layout_of(root).scored, columns,
                         SCORED_SCHEMA.append(pa.field("scored_date", pa.string())), filesystem)


def quarantined_rows(root, columns: list[str] | None = None, of: str = "scoring") -> pa.Table:
    """The rejected rows a flow quarantined: ``of`` ``"scoring"`` (``quarantine/rows/``,
    with its ``quarantined_date`` partition), ``"training"`` (rows of labeled files) or
    ``"unlabeled"`` (rows of unlabeled files); empty when there are none."""
    from tasks.validation import QUARANTINE_SCHEMA

    where = layout_of(root)
    folder = {"scoring": where.rejected_rows, "training": where.training_rejects,
              "unlabeled": where.unlabeled_rejects}[of]
    empty = (QUARANTINE_SCHEMA.append(pa.field("quarantined_date", pa.string()))
             if of == "scoring" else QUARANTINE_SCHEMA)
    return _parquet_rows(folder, columns, empty)


def quarantine_files_folder(root) -> Path:
    """``quarantine/files/``: the folder of each day's whole quarantined files."""
    return layout_of(root).quarantined_files("any day").parent


def quarantined_copies(root, pattern: str = "*") -> list[Path]:
    """The whole files quarantined on any day whose names match ``pattern`` (their
    reason files left out), sorted; links stay links."""
    days = quarantine_files_folder(root)
    return sorted(p for p in days.glob(f"*/{pattern}")
                  if (p.is_file() or p.is_symlink()) and not p.name.endswith(REASON_SUFFIX))


def quarantined_reasons(root, pattern: str = "*") -> list[Path]:
    """The reason files of the whole files quarantined on any day (``pattern`` matches
    the quarantined file's name), sorted."""
    return sorted(quarantine_files_folder(root).glob(f"*/{pattern}{REASON_SUFFIX}"))


def quarantined_files(root) -> dict[str, dict]:
    """The reason of each whole quarantined file, by the name it arrived with."""
    import json

    reasons = [json.loads(p.read_text()) for p in quarantined_reasons(root)]
    return {reason["file"]: reason for reason in reasons}


def monitoring_rows(root) -> pa.Table:
    """Every row of ``monitoring/`` with its ``run_date`` partition: the parts found by
    ``MONITORING_PARTS_GLOB``, as the product finds them."""
    folder = layout_of(root).monitoring
    parts = [str(p) for p in sorted(folder.glob(MONITORING_PARTS_GLOB))]
    return ds.dataset(parts, format="parquet", partitioning="hive",
                      partition_base_dir=str(folder)).to_table()


def scored_sql(root) -> str:
    """DuckDB's ``read_parquet`` of every part in ``scored/``, partitions as columns:
    ``duckdb.sql(f"SELECT count(*) FROM {scored_sql(root)}")``."""
    parts = f"{layout_of(root).scored}/**/*.parquet"
    return f"read_parquet('{parts}', hive_partitioning=true)"


def monitoring_sql(root) -> str:
    """DuckDB's ``read_parquet`` of the parts of ``monitoring/`` (``MONITORING_PARTS_GLOB``)."""
    parts = f"{layout_of(root).monitoring}/{MONITORING_PARTS_GLOB}"
    return f"read_parquet('{parts}', hive_partitioning=true)"

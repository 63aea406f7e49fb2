"""The ``monitoring/`` dataset: one row per scored file (``MONITORING_SCHEMA``), read
back whole (``read_monitoring``); ``tasks.monitoring.trends`` draws it per run.

Each row keeps its file's counts (``counts``, a ``MonitorCounts`` as a struct) beside
the figures ``signals`` made of them, so a run's figures are computed again from its
files' counts exactly as the run summary computed them.
"""

from __future__ import annotations

from dataclasses import fields

import pyarrow as pa
import pyarrow.compute as pc

from tasks.layout import MONITORING_PARTS_GLOB
from tasks.monitoring.drift_signals import Flag, MonitorCounts
from tasks.monitoring.text import SCRIPTS

# The counts of a file as one struct column: every MonitorCounts field by its name.
COUNTS_TYPE = pa.struct([
    (item.name, pa.list_(pa.int64()) if item.type.startswith("list") else pa.int64())
    for item in fields(MonitorCounts)])

# ---------------------------------------------------------------- the monitoring/ dataset
MONITORING_SCHEMA = pa.schema([
    ("run_started", pa.timestamp("us", tz="UTC")),
    ("flow_run_id", pa.string()),
    ("model_version", pa.string()),
    ("source_file", pa.string()),
    ("source_sha256", pa.string()),
    ("rows", pa.int64()),
    ("positive_share", pa.float64()),
    ("labeled_rows", pa.int64()),
    ("accuracy", pa.float64()),
    ("oov_rate", pa.float64()),
    ("mean_length", pa.float64()),
    ("length_psi", pa.float64()),
    ("score_psi", pa.float64()),
    ("script_shift", pa.float64()),
    # The file's letters by script; the name the columns had before letter_share_*,
    # kept for the queries written against them (docs/monitoring.md).
    *[(f"share_{s}", pa.float64()) for s in SCRIPTS],
    ("sampled_rows", pa.int64()),
    ("has_profile", pa.bool_()),
    ("flags", pa.list_(pa.string())),
    *[(f"letter_share_{s}", pa.float64()) for s in SCRIPTS],
    *[(f"review_share_{s}", pa.float64()) for s in SCRIPTS],
    ("counts", COUNTS_TYPE),
])


def monitoring_row(found: dict, raised: list[Flag], counts: MonitorCounts | None = None,
                   **identity) -> dict:
    """One row of ``monitoring/`` from a file's signals and flags and the counts they
    were made of; ``identity`` gives run_started, flow_run_id, model_version,
    source_file, source_sha256, has_profile."""
    mix = found["script_mix"] or {}
    reviews = found.get("review_shares") or {}
    row = {name: found.get(name) for name in MONITORING_SCHEMA.names if name in found}
    row.update({f"share_{s}": mix.get(s) for s in SCRIPTS})
    row.update({f"letter_share_{s}": mix.get(s) for s in SCRIPTS})
    row.update({f"review_share_{s}": reviews.get(s) for s in SCRIPTS})
    row["counts"] = counts.as_record() if counts is not None else None
    row.update(identity)
    row["flags"] = [flag.signal for flag in raised]
    return row


def monitoring_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=MONITORING_SCHEMA)


def read_monitoring(folder) -> pa.Table | None:
    """Every row of ``monitoring/`` with its ``run_date`` partition, or None if empty.

    ``folder`` is a local ``Path`` or an ``ObjectPath`` (s3://…): the parts are found
    by name (``run_date=*/*.parquet``), so the trends PNG beside them is never read.
    """
    import pyarrow.parquet as pq

    if not folder.exists():
        return None
    tables = []
    for part in sorted(folder.glob(MONITORING_PARTS_GLOB), key=str):
        with part.open("rb") as stream:
            table = pq.read_table(stream, schema=MONITORING_SCHEMA)
        day = part.parent.name.partition("=")[2]
        tables.append(table.append_column("run_date", pa.repeat(pa.scalar(day), len(table))))
    if not tables:
        return None
    table = pa.concat_tables(tables)
    for script in SCRIPTS:  # rows written before letter_share_*: the same figure, share_*
        name = f"letter_share_{script}"
        table = table.set_column(table.schema.get_field_index(name), name, pc.coalesce(
            table[name], table[f"share_{script}"]))
    return table

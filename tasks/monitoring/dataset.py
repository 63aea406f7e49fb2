"""The ``monitoring/`` dataset: one row per scored file (``MONITORING_SCHEMA``), read
back whole (``read_monitoring``) and drawn as trends per run (``plot_trends``).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from tasks.layout import MONITORING_PARTS_GLOB
from tasks.monitoring.drift_signals import Flag
from tasks.monitoring.text import SCRIPTS

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
    *[(f"share_{s}", pa.float64()) for s in SCRIPTS],
    ("sampled_rows", pa.int64()),
    ("has_profile", pa.bool_()),
    ("flags", pa.list_(pa.string())),
])


def monitoring_row(found: dict, raised: list[Flag], **identity) -> dict:
    """One row of ``monitoring/`` from a file's signals and flags; ``identity`` gives
    run_started, flow_run_id, model_version, source_file, source_sha256, has_profile."""
    mix = found["script_mix"] or {}
    row = {name: found.get(name) for name in MONITORING_SCHEMA.names if name in found}
    row.update({f"share_{s}": mix.get(s) for s in SCRIPTS})
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
    return pa.concat_tables(tables) if tables else None


def plot_trends(frame, path):
    """Signals per run over time, one line per model version, as a PNG.

    ``frame``: a pandas DataFrame of ``monitoring/`` rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("oov_rate", "unknown tokens (share)"), ("score_psi", "score PSI"),
              ("length_psi", "length PSI"), ("positive_share", "positive share"),
              ("accuracy", "live accuracy")]
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), sharex=True)
    for ax, (column, title) in zip(axes, panels):
        for version, rows in frame.groupby("model_version"):
            # The run's rows-weighted mean: one point per run.
            weighted = rows.dropna(subset=[column])
            if weighted.empty:
                continue
            per_run = weighted.groupby("run_started").apply(
                lambda g, c=column: np.average(g[c], weights=g["rows"].clip(lower=1)),
                include_groups=False)
            ax.plot(per_run.index, per_run.values, marker="o", label=version)
        ax.set_ylabel(title, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("run started (UTC)")
    figure.suptitle("reviewflow: drift signals per scoring run")
    figure.tight_layout()
    image = io.BytesIO()  # then one write: a local file or an object (s3://…) alike
    figure.savefig(image, format="png", dpi=80)
    plt.close(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image.getvalue())
    return path

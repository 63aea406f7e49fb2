"""The ``production_accuracy/`` dataset: each model version's cells (week and script of
the late-labeled reviews it scored) in one part, ``model_version=<version>/`` (hive), read
like ``scored/`` by pyarrow, pandas and DuckDB.

Each measurement rewrites the whole dataset (a version's part under a temporary name,
then renamed; parts of versions the labels no longer reach removed): the dataset is what
the labels in ``labeled/`` say now, never a history of measurements to add up.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from tasks.late_labels.figures import GateAccuracy
from tasks.layout import ACCURACY_PARTS_GLOB, DataLayout
from tasks.storage.local import StagedParquet
from tasks.storage.objects import as_location

ACCURACY_FILE = "part-0.parquet"
# The columns of a part; model_version is its folder (hive partitioning), as scored_date is.
ACCURACY_SCHEMA = pa.schema([
    ("week", pa.date32()),
    ("script", pa.string()),
    ("rows", pa.int64()),
    ("correct", pa.int64()),
    ("accuracy", pa.float64()),
    ("gate_accuracy", pa.float64()),
    ("script_gate_accuracy", pa.float64()),
    ("measured_at", pa.timestamp("us", tz="UTC")),
])


def accuracy_table(cells: pa.Table, gate: GateAccuracy, measured_at: datetime) -> pa.Table:
    """One version's part: its cells (``tasks.late_labels.join.CELL_SCHEMA`` rows of that
    version) with their accuracy and the gate accuracies beside them."""
    rows, correct = cells["rows"], cells["correct"]
    accuracy = pc.round(pc.divide(pc.cast(correct, pa.float64()), pc.cast(rows, pa.float64())), 4)
    script_gate = [gate.by_script.get(script) for script in cells["script"].to_pylist()]
    n = cells.num_rows
    return pa.Table.from_arrays([
        cells["week"], cells["script"], rows, correct, accuracy,
        pa.array([gate.accuracy] * n, pa.float64()), pa.array(script_gate, pa.float64()),
        pa.repeat(pa.scalar(measured_at, pa.timestamp("us", tz="UTC")), n),
    ], schema=ACCURACY_SCHEMA)


def write_accuracy(layout: DataLayout, parts: dict[str, pa.Table]) -> list[str]:
    """Write each version's part (``accuracy_table``) in ``production_accuracy/`` and
    remove the parts of versions not in ``parts``; returns the versions removed."""
    folder = layout.production_accuracy
    for version, table in parts.items():
        part = StagedParquet(layout.accuracy_partition(version) / ACCURACY_FILE, ACCURACY_SCHEMA)
        part.write(table)
        part.commit()
    removed = []
    if folder.exists():
        for path in list(folder.glob(ACCURACY_PARTS_GLOB)):
            version = path.parent.name.partition("=")[2]
            if version not in parts:
                path.unlink(missing_ok=True)
                removed.append(version)
                as_location(path.parent).remove_empty_folder()
    return removed


def read_accuracy(folder) -> pa.Table | None:
    """Every row of ``production_accuracy/`` with its ``model_version``, or None if none."""
    import pyarrow.parquet as pq

    if not folder.exists():
        return None
    tables = []
    for part in sorted(folder.glob(ACCURACY_PARTS_GLOB), key=str):
        with part.open("rb") as stream:
            table = pq.read_table(stream, schema=ACCURACY_SCHEMA)
        version = part.parent.name.partition("=")[2]
        tables.append(table.append_column("model_version",
                                          pa.repeat(pa.scalar(version), len(table))))
    return pa.concat_tables(tables) if tables else None

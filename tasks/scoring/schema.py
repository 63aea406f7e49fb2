"""The columns of ``scored/`` (``SCORED_SCHEMA``), and the schema its readers pass to read
it as one dataset (``SCORED_DATASET_SCHEMA``, docs/data-contract.md).

Kept apart from ``rows`` so a reader of ``scored/`` does not import the model.
"""

from __future__ import annotations

import json

import pyarrow as pa

# Label columns are int8 in the file; pandas turns an int8 column with nulls into float64
# unless the file's pandas metadata names a nullable type, so each part says "Int8".
LABEL_COLUMNS = ("predicted_label", "label")
PANDAS_LABELS = {b"pandas": json.dumps({
    "index_columns": [], "column_indexes": [],
    "columns": [{"name": name, "field_name": name, "pandas_type": "int8", "numpy_type": "Int8",
                 "metadata": None} for name in LABEL_COLUMNS],
}).encode()}

SCORED_SCHEMA = pa.schema([
    ("review_id", pa.string()),
    ("score", pa.float32()),
    ("predicted_label", pa.int8()),
    ("label", pa.int8()),
    ("model_version", pa.string()),
    ("source_file", pa.string()),
    ("source_row", pa.int64()),
    ("source_sha256", pa.string()),
    ("scored_at", pa.timestamp("us", tz="UTC")),
], metadata=PANDAS_LABELS)
# ``scored/`` read as one dataset with this schema (docs/data-contract.md): parts written
# with float64 labels read as int8 beside the others, and the partition stays a string.
SCORED_DATASET_SCHEMA = SCORED_SCHEMA.append(pa.field("scored_date", pa.string()))


def scored_schema(scored, filesystem=None) -> pa.Schema:
    """The schema that reads ``scored`` (the folder, local or with a pyarrow
    ``filesystem``) as one dataset: ``SCORED_DATASET_SCHEMA``, then every pass-through
    column any part holds, in the order parts bring them. Each part's footer is read,
    no data. pyarrow and pandas take a dataset's schema from one part, so a column only
    other parts hold would vanish without it (docs/data-contract.md):
    ``pd.read_parquet(scored, schema=scored_schema(scored))``."""
    import pyarrow.dataset as ds

    schema = SCORED_DATASET_SCHEMA
    parts = ds.dataset(scored, format="parquet", partitioning="hive", filesystem=filesystem)
    names = set(schema.names)
    for fragment in parts.get_fragments():
        for field in fragment.physical_schema:
            if field.name not in names:
                names.add(field.name)
                schema = schema.append(field.remove_metadata())
    return schema

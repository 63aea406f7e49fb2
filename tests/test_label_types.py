"""``label`` and ``predicted_label`` of ``scored/`` read as integers, nullable where null,
with pandas, pyarrow and DuckDB, also when parts written with float64 labels sit beside
the int8 ones (docs/data-contract.md, "Reading scored/")."""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.scoring.schema import SCORED_DATASET_SCHEMA
from tests.helpers import good_rows, layout_of, score, write_csv


def labeled_and_not(scoring_root):
    rows = good_rows("r", 6)
    for index, row in enumerate(rows):
        row["label"] = [1, 0, ""][index % 3]  # every third row has no label
    write_csv(layout_of(scoring_root).incoming / "some-labeled.csv", rows)
    summary = score(scoring_root)
    assert summary["rows_scored"] == 6
    return {"r-0": 1, "r-1": 0, "r-2": None, "r-3": 1, "r-4": 0, "r-5": None}


def test_pandas_reads_the_labels_of_a_scoring_run_as_nullable_integers(scoring_root):
    expected = labeled_and_not(scoring_root)
    frame = pd.read_parquet(layout_of(scoring_root).scored)
    assert frame["label"].dtype == pd.Int8Dtype()
    assert frame["predicted_label"].dtype == pd.Int8Dtype()
    got = dict(zip(frame["review_id"], frame["label"].astype(object).where(frame["label"].notna(), None)))
    assert got == expected
    assert set(frame["predicted_label"]) <= {0, 1}


def old_float_part(root) -> dict:
    """A part as it was written with float64 labels, in an earlier partition than today's,
    so a reader that takes the first part's schema meets it first."""
    folder = layout_of(root).scored / "scored_date=2020-01-01"
    folder.mkdir(parents=True)
    run = pd.Timestamp("2020-01-01T10:00:00Z")
    pq.write_table(pa.table({
        "review_id": ["old-0", "old-1", "old-2"],
        "score": pa.array([0.9, 0.2, 0.7], pa.float32()),
        "predicted_label": pa.array([1.0, 0.0, 1.0], pa.float64()),
        "label": pa.array([1.0, None, 0.0], pa.float64()),
        "model_version": ["v-old"] * 3, "source_file": ["old.csv"] * 3,
        "source_row": pa.array([1, 2, 3], pa.int64()), "source_sha256": ["0" * 64] * 3,
        "scored_at": pa.array([run] * 3, pa.timestamp("us", tz="UTC")),
    }), folder / "part-0000000000000000-v-old.parquet")
    return {"old-0": (1, 1), "old-1": (0, None), "old-2": (1, 0)}


def test_old_float_parts_and_new_int_parts_read_as_one_dataset_three_ways(scoring_root):
    labels = labeled_and_not(scoring_root)
    expected = {**old_float_part(scoring_root)}
    scored = layout_of(scoring_root).scored
    table = ds.dataset(scored, format="parquet", partitioning="hive",
                       schema=SCORED_DATASET_SCHEMA).to_table()
    assert table.schema.field("label").type == pa.int8()
    assert table.schema.field("predicted_label").type == pa.int8()
    arrow = {r["review_id"]: (r["predicted_label"], r["label"]) for r in table.to_pylist()}
    for review, label in labels.items():
        expected[review] = (arrow[review][0], label)
    assert arrow == expected
    assert {r["scored_date"] for r in table.to_pylist()} >= {"2020-01-01"}

    frame = pd.read_parquet(scored, schema=SCORED_DATASET_SCHEMA)
    assert frame["label"].dtype == pd.Int8Dtype() and frame["predicted_label"].dtype == pd.Int8Dtype()
    from_pandas = {r.review_id: (int(r.predicted_label), None if pd.isna(r.label) else int(r.label))
                   for r in frame.itertuples()}
    assert from_pandas == expected

    rows = duckdb.sql(
        "SELECT review_id, CAST(predicted_label AS TINYINT), CAST(label AS TINYINT) "
        f"FROM read_parquet('{scored}/**/*.parquet', hive_partitioning=true, union_by_name=true)")
    assert [str(t) for t in rows.types[1:]] == ["TINYINT", "TINYINT"]
    assert {review: (predicted, label) for review, predicted, label in rows.fetchall()} == expected

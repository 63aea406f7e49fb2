"""Readers keep the input's other columns when asked (``iter_review_batches(...,
passthrough=True)``, ``tasks.reading.passthrough``): every format, the careful CSV path,
names the output uses, names a file holds twice, and the settings that choose them."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.reading import NORMALIZED_SCHEMA, iter_review_batches
from tasks.reading.columns import ColumnMapping

HEADER = ["review_id", "text", "product_id", "stars", "score"]
ROWS = [["1", "good film", "p-1", "5", "x"], ["2", "bad film", "p-2", "1", "y"]]


def carried(path, columns: ColumnMapping | None = None, **options) -> list[dict]:
    rows = []
    for batch in iter_review_batches(path, columns or ColumnMapping(), 1000, 1 << 30,
                                     passthrough=True, **options):
        assert batch.schema.names[:len(NORMALIZED_SCHEMA)] == NORMALIZED_SCHEMA.names
        rows += batch.drop_columns(NORMALIZED_SCHEMA.names).to_pylist()
    return rows


EXPECTED = [{"product_id": "p-1", "stars": "5", "input_score": "x"},
            {"product_id": "p-2", "stars": "1", "input_score": "y"}]


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.tsv", "reviews.jsonl", "reviews.json"])
def test_every_text_format_carries_the_other_columns_as_strings(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".csv") or name.endswith(".tsv"):
        sep = "," if name.endswith(".csv") else "\t"
        path.write_text("\n".join(sep.join(r) for r in [HEADER, *ROWS]) + "\n")
    else:
        records = [dict(zip(HEADER, r)) for r in ROWS]
        path.write_text(json.dumps(records) if name.endswith(".json")
                        else "".join(json.dumps(r) + "\n" for r in records))
    assert carried(path) == EXPECTED
    plain = next(iter_review_batches(path, ColumnMapping(), 1000, 1 << 30))
    assert plain.schema.names == NORMALIZED_SCHEMA.names  # off unless asked


def test_the_careful_csv_path_carries_them_too(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("review_id,text,shop\n1,fine,s1\n2,too,many,fields\n3,ok,s3\n")
    rows = list(iter_review_batches(path, ColumnMapping(), 1000, 1 << 30, passthrough=True))
    table = pa.concat_tables(rows)
    assert table.column("read_error").null_count == 2  # the ragged line is a read error
    assert table.column("shop").to_pylist() == ["s1", None, "s3"]


def test_parquet_keeps_its_types_and_json_its_nested_values(tmp_path):
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({
        "id": pa.array([7, 8], pa.int64()), "review": ["a", "b"],
        "product_id": pa.array([101, 102], pa.int64()),
        "shop": pa.array(["x", "y"]).dictionary_encode(),
        "when": pa.array([1, 2], pa.timestamp("ms"))}), path)
    batch = next(iter_review_batches(path, ColumnMapping(), 1000, 1 << 30, passthrough=True))
    assert batch.schema.field("product_id").type == pa.int64()
    assert batch.schema.field("shop").type == pa.string()  # a category as its values
    assert batch.schema.field("when").type == pa.timestamp("ms")
    nested = tmp_path / "nested.jsonl"
    nested.write_text(json.dumps({"id": "1", "text": "t", "tags": ["a", "b"], "ok": True,
                                  "n": 3}) + "\n")
    assert carried(nested) == [{"tags": '["a", "b"]', "ok": "true", "n": "3"}]


def test_clashing_and_doubled_names(tmp_path):
    path = tmp_path / "names.csv"
    path.write_text("review_id,text,score,input_score,Shop,shop,Label_raw,kept\n"
                    "1,t,a,b,c,d,e,f\n")
    assert carried(path) == [{"input_input_score": "a", "input_score": "b",
                              "input_Label_raw": "e", "kept": "f"}]


def test_the_settings_name_a_subset_or_none(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(",".join(r) for r in [HEADER, *ROWS]) + "\n")
    subset = ColumnMapping(passthrough=["STARS", "absent"])
    assert carried(path, subset) == [{"stars": "5"}, {"stars": "1"}]
    assert carried(path, ColumnMapping(passthrough=[])) == [{}, {}]


def test_an_unknown_declared_type_is_refused():
    with pytest.raises(ValueError, match="unknown type 'integer' for column 'stars'"):
        ColumnMapping(types={"stars": "integer"})

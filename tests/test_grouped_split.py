"""Labeled files that name what each review is about (a movie, a product): the readers
carry that group column for training, and the slice column the settings name (a
category), scoring ignores both, and retraining holds out whole groups, so the gate
measures reviews of items the candidate never saw."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLES

from tasks.reading import GROUPED_SCHEMA, NORMALIZED_SCHEMA
from tasks.reading.columns import ColumnMapping
from tasks.training.registry import Registry
from tests.helpers import layout_of, read_reviews


def frame() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c"], "movie_id": ["tt1", "tt2", "tt1"],
                         "document": ["좋아요 최고", "so bad", "meh \"quoted\""],
                         "label": [1, 0, 0], "Category": ["books", "toys", "books"]})


@pytest.mark.parametrize("kind", ["csv", "tsv-quoted", "tsv-raw", "tsv-careful", "jsonl",
                                  "json-array", "parquet-int-group"])
def test_every_format_carries_the_group_for_training_only(tmp_path, kind):
    data = frame()
    if kind.startswith("tsv-"):
        data = data.drop(columns="Category")  # the lines below are written by hand
    if kind == "csv":
        path = tmp_path / "r.csv"
        data.to_csv(path, index=False)
    elif kind == "tsv-quoted":
        path = tmp_path / "r.tsv"
        data.to_csv(path, sep="\t", index=False)
    elif kind in ("tsv-raw", "tsv-careful"):
        path = tmp_path / "r.tsv"
        lines = ["id\tmovie_id\tdocument\tlabel"] + [
            "\t".join(map(str, row)) for row in data.itertuples(index=False)]
        if kind == "tsv-careful":  # a line with a field too many: read line by line
            lines.insert(2, "x\ttt9\tone\ttoo\tmany")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif kind == "jsonl":
        path = tmp_path / "r.jsonl"
        data.to_json(path, orient="records", lines=True, force_ascii=False)
    elif kind == "json-array":
        path = tmp_path / "r.json"
        path.write_text(json.dumps(data.to_dict("records"), ensure_ascii=False))
    else:
        path = tmp_path / "r.parquet"
        pq.write_table(pa.Table.from_pandas(data.assign(movie_id=[101, 102, 101])), path)
    grouped = read_reviews(path, with_group=True)
    assert grouped.schema == GROUPED_SCHEMA
    good = grouped.filter(pa.compute.is_null(grouped.column("read_error")))
    expected = ["101", "102", "101"] if kind.startswith("parquet") else ["tt1", "tt2", "tt1"]
    assert good.column("group").to_pylist() == expected
    assert good.column("text").to_pylist() == data["document"].tolist()
    assert good.column("slice").null_count == good.num_rows  # no slice column named
    # Scoring reads the same file without it: its output does not depend on extra columns.
    assert read_reviews(path).schema == NORMALIZED_SCHEMA
    assert read_reviews(path, columns=ColumnMapping(slice=["category"])).schema == \
        NORMALIZED_SCHEMA


@pytest.mark.parametrize("kind", ["csv", "tsv-careful", "jsonl", "json-array", "parquet"])
def test_every_format_carries_the_slice_column_the_settings_name(tmp_path, kind):
    data = frame()
    path = tmp_path / f"r.{kind.split('-')[0]}"
    if kind == "csv":
        data.to_csv(path, index=False)
    elif kind == "tsv-careful":  # a line with a field too many: read line by line
        lines = ["\t".join(data.columns)] + ["\t".join(map(str, row))
                                             for row in data.itertuples(index=False)]
        lines.insert(2, "x\ttt9\tone\ttoo\tmany\tfields")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif kind == "jsonl":
        data.to_json(path, orient="records", lines=True, force_ascii=False)
    elif kind == "json-array":
        path.write_text(json.dumps(data.to_dict("records"), ensure_ascii=False))
    else:
        pq.write_table(pa.Table.from_pandas(data.astype({"Category": "category"})), path)
    # Matched case-insensitively, like every column name; the group still read beside it.
    table = read_reviews(path, columns=ColumnMapping(slice=["segment", "category"]),
                         with_group=True)
    good = table.filter(pa.compute.is_null(table.column("read_error")))
    assert good.column("slice").to_pylist() == ["books", "toys", "books"]
    assert good.column("group").to_pylist() == ["tt1", "tt2", "tt1"]
    # The same column named as the group and the slice: read once, given to both.
    both = read_reviews(path, columns=ColumnMapping(group=["category"], slice=["category"]),
                        with_group=True)
    good = both.filter(pa.compute.is_null(both.column("read_error")))
    assert good.column("slice").to_pylist() == good.column("group").to_pylist()


def test_a_file_without_a_group_column_reads_null_groups(tmp_path):
    path = tmp_path / "r.csv"
    frame().drop(columns="movie_id").to_csv(path, index=False)
    grouped = read_reviews(path, with_group=True)
    assert grouped.schema == GROUPED_SCHEMA
    assert grouped.column("group").null_count == 3


def test_the_group_setting_names_the_column(tmp_path):
    path = tmp_path / "r.csv"
    frame().rename(columns={"movie_id": "asin"}).to_csv(path, index=False)
    mapping = ColumnMapping(group=["asin"])
    table = read_reviews(path, columns=mapping, with_group=True)
    assert table.column("group").to_pylist() == ["tt1", "tt2", "tt1"]


@pytest.mark.usefixtures("prefect_harness")
def test_retraining_holds_out_whole_movies(data_dir):
    """The bundled samples, each review given one of 60 movies: no movie has reviews in
    two parts, and the registry records that the split was by group."""
    from flows.retrain_model import retrain_model

    labeled = pd.concat([
        pd.read_csv(SAMPLES / "labeled" / "reviews-a.csv").rename(
            columns={"review": "text", "sentiment": "label"}).replace(
            {"positive": 1, "negative": 0}),
        pd.read_json(SAMPLES / "labeled" / "reviews-b.jsonl", lines=True)], ignore_index=True)
    labeled["movie_id"] = [f"tt{i % 60:04d}" for i in range(len(labeled))]
    labeled.to_csv(data_dir / "labeled" / "with-movies.csv", index=False)
    summary = retrain_model(data_dir=str(data_dir), architecture="seed", epochs=3)
    assert summary["split_by"] == "group"
    registry = Registry(layout_of(data_dir).models)
    parts = registry.read_version(summary["version"])["metrics"]["parts"]
    assert parts["split_by"] == "group"
    # Each movie counted in one part only: the gate's movies are unseen in training.
    assert parts["train"]["groups"] + parts["selection"]["groups"] + parts["gate"]["groups"] == 60
    assert min(parts[p]["groups"] for p in ("train", "selection", "gate")) >= 1
    assert summary["validation_rows"] == parts["gate"]["rows"]

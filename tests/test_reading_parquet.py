"""Parquet text columns of every string type (categories, views) are read; a column of
bytes that are not text makes the file unreadable.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.reading import UnreadableFileError
from tests.helpers import errors_of, read_reviews


def test_parquet_strings_of_every_kind_are_read(tmp_path):
    texts = ["good film", "bad film", "good film", "fine"]
    frame = pd.DataFrame({"review_id": pd.Categorical(["a", "b", "c", "d"]),
                          "text": pd.Categorical(texts),
                          "label": pd.Categorical(["positive", "negative", "positive", "1"])})
    frame.to_parquet(tmp_path / "category.parquet")
    pq.write_table(pa.table({"review_id": pa.array(["a", "b", "c", "d"], pa.string_view()),
                             "text": pa.array(texts, pa.string_view())}), tmp_path / "view.parquet")
    pq.write_table(pa.table({"review_id": pa.array([1, 2, 3, 4], pa.int32()),
                             "text": pa.array(texts, pa.large_string())}), tmp_path / "large.parquet")
    pq.write_table(pa.table({"review_id": ["a", "b", "c", "d"],
                             "text": pa.array([t.encode() for t in texts], pa.binary())}),
                   tmp_path / "binary.parquet")
    # Row groups with different dictionaries, read in batches that span them.
    pq.write_table(pa.table({"review_id": ["a", "b", "c", "d"],
                             "text": pa.array(texts).dictionary_encode()}),
                   tmp_path / "groups.parquet", row_group_size=1)
    for name in ("category", "view", "large", "binary", "groups"):
        table = read_reviews(tmp_path / f"{name}.parquet", batch_rows=3)
        assert table.column("text").to_pylist() == texts, name
        assert errors_of(table) == {}
    assert read_reviews(tmp_path / "category.parquet").column("label").to_pylist() == [1, 0, 1, 1]
    assert read_reviews(tmp_path / "large.parquet").column("review_id").to_pylist() == ["1", "2", "3", "4"]


def test_parquet_bytes_that_are_not_text_are_unreadable(tmp_path):
    path = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"review_id": ["a"], "text": pa.array([b"\xff\xfe"], pa.binary())}),
                   path)
    with pytest.raises(UnreadableFileError, match="not UTF-8 text"):
        read_reviews(path)

"""Property-based: whatever the records and the format, every row read is valid or
rejected, and the split never puts one text on both sides and drops only duplicates."""

from __future__ import annotations

import csv

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.reading import UnreadableFileError, iter_review_batches
from tasks.reading.columns import ColumnMapping
from tasks.training.split import split_labeled
from tests.helpers import packaged_validator

COLUMNS = ColumnMapping()

texts = st.one_of(st.none(), st.text(max_size=80), st.just("   "), st.just("a\nb \"q\""))
ids = st.one_of(st.none(), st.text(max_size=6), st.integers(0, 5).map(str))
labels = st.one_of(st.none(), st.sampled_from(["0", "1", "pos", "negative", "maybe", ""]))
rows = st.lists(st.tuples(ids, texts, labels), min_size=1, max_size=40)


@pytest.fixture(scope="module")
def validator():
    return packaged_validator(max_text_chars=60)


def write(path, records, fmt):
    frame = pd.DataFrame(records, columns=["review_id", "text", "label"])
    if fmt == "csv":
        frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        pq.write_table(pa.Table.from_pandas(frame.astype(object), preserve_index=False), path)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(records=rows, fmt=st.sampled_from(["csv", "jsonl", "parquet"]),
       batch_rows=st.integers(1, 17))
def test_every_row_is_valid_or_rejected(tmp_path_factory, validator, records, fmt, batch_rows):
    path = tmp_path_factory.mktemp("prop") / f"reviews.{fmt}"
    write(path, records, fmt)
    seen: dict = {}
    kept = rejected = read = 0
    try:
        for batch in iter_review_batches(path, COLUMNS, batch_rows, 10**8):
            result = validator.validate(batch, seen)
            read += batch.num_rows
            kept += result.valid.num_rows
            rejected += result.rejected.num_rows
            assert result.valid.num_rows + result.rejected.num_rows == batch.num_rows
    except UnreadableFileError:
        return  # the whole file goes to quarantine: nothing is split, nothing lost
    assert read == len(records) and kept + rejected == read


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=5), st.text(max_size=5),
                          st.integers(0, 1)), min_size=2, max_size=60, unique_by=lambda r: r[0]),
       st.floats(0.05, 0.95))
def test_split_never_leaks_and_loses_only_duplicates(records, fraction):
    frame = pd.DataFrame(records, columns=["review_id", "text", "label"])
    split = split_labeled(frame, fraction)
    assert set(split.train["text"]).isdisjoint(split.validation["text"])
    assert len(split.train) + len(split.validation) == frame["text"].nunique()
    assert len(split.train) + len(split.validation) + split.duplicates_removed == len(frame)

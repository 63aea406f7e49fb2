"""Odd and hostile inputs, and property-based checks that no row is ever lost."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.score_reviews import score_reviews
from tasks.reading import UnreadableFileError, iter_review_batches
from tasks.reading.columns import ColumnMapping
from tasks.training.split import split_labeled
from tests.helpers import packaged_validator, quarantined_rows, scored_rows

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


def test_hostile_files_in_one_run(scoring_root):
    inbox = scoring_root / "incoming"
    (inbox / "nul bytes.csv").write_bytes(b"review_id,text\nn1,before\x00after is great\nn2,fine\n")
    (inbox / "huge.jsonl").write_text(json.dumps({"review_id": "h1", "text": "word " * 10_000_000})
                                      + "\n" + json.dumps({"review_id": "h2", "text": "ok"}) + "\n")
    (inbox / "영화 리뷰 ..%.csv").write_text("review_id,text\nk1,정말 재미있어요\n", encoding="utf-8")
    (inbox / "with-bom.csv").write_bytes(b"\xef\xbb\xbfid,review\nb1,good\n")
    (inbox / "utf16.tsv").write_bytes("id\tdocument\nu1\tgood film\n".encode("utf-16"))
    (inbox / "first.csv").write_text("review_id,text\nsame,first file\n")
    (inbox / "second.csv").write_text("review_id,text\nsame,second file\n")
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)

    got = sorted(scored_rows(scoring_root).column("review_id").to_pylist())
    assert got == sorted(["n1", "n2", "h2", "k1", "b1", "u1", "same", "same"])
    bad = quarantined_rows(scoring_root).to_pylist()
    assert [r["review_id"] for r in bad] == ["h1"]  # the 50 MB review, over max_text_chars
    assert bad[0]["failed_expectations"] == ["expect_column_value_lengths_to_be_between(text)"]
    assert summary["rows_read"] == summary["rows_scored"] + summary["rows_quarantined"] == 9
    archived = [p.name for p in (scoring_root / "archive").rglob("*") if p.is_file()]
    assert any(name.endswith("영화 리뷰 __.csv") for name in archived)  # no "..", no "%"
    assert all(p.resolve().is_relative_to(scoring_root.resolve())
               for p in scoring_root.rglob("*"))

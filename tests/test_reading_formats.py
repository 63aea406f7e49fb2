"""Readers: every supported format normalizes to the same columns, in streamed batches."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.reading import NORMALIZED_SCHEMA, UnreadableFileError, detect_format, iter_review_batches
from tasks.reading.columns import ColumnMapping
from tests.helpers import read_reviews

COLUMNS = ColumnMapping()


def test_csv_with_aliases_word_labels_and_html(tmp_path):
    path = tmp_path / "imdb.csv"
    path.write_text('id,review,sentiment\n007,"Great, really.<br /><br />Loved it",positive\n'
                    '8,"Awful ""acting""\nand a second line",negative\n', encoding="utf-8")
    table = read_reviews(path)
    assert table.schema == NORMALIZED_SCHEMA
    assert table.column("review_id").to_pylist() == ["007", "8"]  # ids stay strings
    assert table.column("label").to_pylist() == [1, 0]
    assert table.column("text").to_pylist()[1] == 'Awful "acting"\nand a second line'
    assert table.column("source_row").to_pylist() == [1, 2]


def test_nsmc_tsv(tmp_path):
    path = tmp_path / "ratings.tsv"
    path.write_text('id\tdocument\tlabel\n9976970\t아 더빙.. 진짜 짜증나네요 "목소리\t0\n'
                    '3819312\t흠...포스터보고 초딩영화줄....오버연기조차 가볍지 않구나\t1\n',
                    encoding="utf-8")
    table = read_reviews(path)
    assert table.column("review_id").to_pylist() == ["9976970", "3819312"]
    assert table.column("text").to_pylist()[0] == '아 더빙.. 진짜 짜증나네요 "목소리'
    assert table.column("label").to_pylist() == [0, 1]


def test_jsonl_gzip_and_parquet_read_the_same(tmp_path):
    rows = [{"review_id": i, "text": f"review {i}", "label": i % 2} for i in range(50)]
    jsonl = tmp_path / "r.jsonl.gz"
    with gzip.open(jsonl, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in rows)
    parquet = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    a, b = read_reviews(jsonl, batch_rows=7), read_reviews(parquet, batch_rows=7)
    assert a.drop_columns(["label_raw"]).equals(b.drop_columns(["label_raw"]))
    assert a.column("review_id").to_pylist()[:3] == ["0", "1", "2"]


def test_large_file_streams_in_batches(tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8") as out:
        out.write("review_id,text\n")
        out.writelines(f"r{i},text number {i}\n" for i in range(25_000))
    batches = list(iter_review_batches(path, COLUMNS, 4096, 10**9))
    assert max(b.num_rows for b in batches) == 4096
    assert sum(b.num_rows for b in batches) == 25_000
    rows = pa.concat_tables(batches).column("source_row").to_pylist()
    assert rows == list(range(1, 25_001))


def test_jsonl_bad_lines_become_row_errors(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"review_id": "a", "text": "fine"}\n[1, 2]\nnot json\n'
                    '{"review_id": "d", "text": {"nested": true}}\n', encoding="utf-8")
    table = read_reviews(path)
    errors = table.column("read_error").to_pylist()
    assert errors[0] is None
    assert "not an object" in errors[1] and "not valid JSON" in errors[2]
    assert "not a string" in errors[3]


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"review_id,text\n", "no data rows"),
    (b"review_id,comment_count\n1,2\n", "missing required column text"),
    (b"review_id,text\n1,caf\xe9 \xff\xfe bad\n", "REVIEWFLOW_ENCODINGS=cp949"),
])
def test_unreadable_files_name_the_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad input.csv"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as caught:
        read_reviews(path)
    assert reason in str(caught.value)
    assert str(caught.value).startswith("bad input.csv:")


def test_parquet_with_numeric_text_column_is_unreadable(tmp_path):
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"review_id": ["a"], "text": [42]}), path)
    with pytest.raises(UnreadableFileError, match="holds int64, not text"):
        read_reviews(path)


def test_gzip_bomb_is_stopped_at_the_limit(tmp_path):
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb") as out:
        out.write(b"review_id,text\n" + b"1," + b"a" * 5_000_000 + b"\n")
    assert path.stat().st_size < 100_000
    with pytest.raises(UnreadableFileError, match="decompresses to more than"):
        read_reviews(path, max_decompressed_bytes=1_000_000)


def test_byte_order_marks(tmp_path):
    utf8 = tmp_path / "bom8.csv"
    utf8.write_bytes(b"\xef\xbb\xbfreview_id,text\n1,hello\n")
    utf16 = tmp_path / "bom16.csv"
    utf16.write_bytes("review_id,text\n1,héllo\n".encode("utf-16"))
    assert read_reviews(utf8).column("text").to_pylist() == ["hello"]
    assert read_reviews(utf16).column("text").to_pylist() == ["héllo"]


def test_formats_are_detected_by_name(tmp_path):
    assert detect_format(tmp_path / "a.TSV.gz").kind == "tsv"
    assert detect_format(tmp_path / "a.ndjson").kind == "jsonl"
    assert detect_format(tmp_path / "a.parquet.gz") is None
    assert detect_format(tmp_path / "notes.txt") is None

"""Review ids as files give them or leave them out: without an id column each row gets
a stable id from the content's hash and its row, the same in every format and shard;
ids past 64 bits stay exact.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.reading import ReadReport
from tasks.storage.local import file_sha256
from tests.helpers import read_reviews


def test_imdb_csv_without_ids_gets_stable_generated_ids(tmp_path):
    path = tmp_path / "IMDB Dataset.csv"
    pd.DataFrame({"review": ["One of the best films.", "Awful, just awful."],
                  "sentiment": ["positive", "negative"]}).to_csv(path, index=False)
    report = ReadReport()
    table = read_reviews(path, report=report)
    prefix = file_sha256(path)[:16]
    assert report.ids_generated
    assert table.column("review_id").to_pylist() == [f"{prefix}-row1", f"{prefix}-row2"]
    assert table.column("label").to_pylist() == [1, 0]
    # The same bytes under another name give the same ids: the ledger's once-only holds.
    copy = tmp_path / "renamed.csv"
    shutil.copy(path, copy)
    assert read_reviews(copy).column("review_id").equals(table.column("review_id"))
    # Other bytes, other ids; and a file with ids keeps its own.
    copy.write_text(path.read_text() + '"A third review.",positive\n')
    assert read_reviews(copy).column("review_id")[0].as_py() != f"{prefix}-row1"
    with_ids = tmp_path / "ids.csv"
    with_ids.write_text("id,review\n7,fine\n")
    report = ReadReport()
    assert read_reviews(with_ids, report=report).column("review_id").to_pylist() == ["7"]
    assert not report.ids_generated


def test_parquet_and_jsonl_without_ids_and_shards_agree(tmp_path):
    rows = [{"text": f"review {i}", "label": i % 2} for i in range(30)]
    parquet = tmp_path / "no-ids.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=7)
    whole = read_reviews(parquet, batch_rows=4)
    assert whole.column("review_id").to_pylist() == [
        f"{file_sha256(parquet)[:16]}-row{i}" for i in range(1, 31)]
    shard = read_reviews(parquet, 4, rows=(10, 20))
    assert shard.column("review_id").to_pylist() == whole.column("review_id").to_pylist()[10:20]
    jsonl = tmp_path / "no-ids.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    given = read_reviews(jsonl, sha256="ab" * 32)  # the flow passes the hash it already has
    assert given.column("review_id")[29].as_py() == "abababababababab-row30"


def test_ids_beyond_64_bits_stay_exact(tmp_path):
    """JSON number ids are kept as written: parsed as floats (as orjson does),
    123456789012345678901234567890 would lose digits."""
    big = "123456789012345678901234567890"
    lines = tmp_path / "big-ids.jsonl"
    lines.write_text(f'{{"review_id": {big}, "text": "a"}}\n'
                     f'{{"review_id": 18446744073709551616, "text": "b"}}\n'
                     '{"review_id": 2.50, "text": "c"}\n{"review_id": 7, "text": "d"}\n')
    assert read_reviews(lines).column("review_id").to_pylist() == [
        big, "18446744073709551616", "2.50", "7"]
    array = tmp_path / "big-ids.json"
    array.write_text(f'[{{"review_id": {big}, "text": "a"}}, {{"review_id": 7, "text": "b"}}]')
    assert read_reviews(array).column("review_id").to_pylist() == [big, "7"]

"""CSV and TSV as pandas, Excel and NSMC exports write them: quoting, the TSV convention
decided from the file, line breaks inside reviews, a malformed line or an unclosed quote
as one rejected row with its line number, duplicate columns, and when a whole file is
quarantined. Rows go through the real reader and the packaged expectation suite.
"""

from __future__ import annotations

import csv

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import PROJECT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.reading import ReadReport, UnreadableFileError, iter_review_batches, tsv_is_quoted
from tasks.reading.columns import ColumnMapping
from tests.helpers import HARD_TEXTS, frame_of_hard_texts, read_reviews

NSMC = PROJECT.parent / "shared" / "data" / "nsmc" / "train.parquet"

COLUMNS = ColumnMapping()


def validate_all(validator, path, batch_rows=1000):
    seen: dict = {}
    valid, rejected = [], []
    for batch in iter_review_batches(path, COLUMNS, batch_rows, 10**9):
        checked = validator.validate(batch, seen, source_name=path.name)
        valid.append(checked.valid)
        rejected.append(checked.rejected)
    return pa.concat_tables(valid), pa.concat_tables(rejected)


@pytest.mark.parametrize("name, write", [
    ("pandas.tsv", lambda frame, path: frame.to_csv(path, sep="\t", index=False)),
    ("pandas.csv", lambda frame, path: frame.to_csv(path, index=False)),
    ("excel.csv", lambda frame, path: frame.to_csv(path, index=False, lineterminator="\r\n",
                                                   quoting=csv.QUOTE_ALL, encoding="utf-8-sig")),
    ("excel-tab.tsv", lambda frame, path: frame.to_csv(path, sep="\t", index=False,
                                                       lineterminator="\r\n")),
])
def test_quoted_exports_read_exactly(tmp_path, name, write):
    frame = frame_of_hard_texts()
    path = tmp_path / name
    write(frame, path)
    report = ReadReport()
    table = read_reviews(path, batch_rows=3, report=report)
    assert table.column("text").to_pylist() == HARD_TEXTS
    assert table.column("review_id").to_pylist() == frame["id"].tolist()
    assert report.layout.endswith("quoted") and not report.layout.endswith("unquoted")
    assert table.column("read_error").null_count == table.num_rows


def test_nsmc_style_tsv_keeps_quotes_as_text(tmp_path):
    # NSMC writes no quoting: a tab or line break cannot be in a text, a quote is text.
    texts = [t for t in HARD_TEXTS if "\t" not in t and "\n" not in t and "\r" not in t]
    texts += ['"완전 ""좋아""', '""']
    path = tmp_path / "ratings_train.txt.tsv"
    path.write_text("id\tdocument\tlabel\n" + "".join(f"{i}\t{t}\t1\n" for i, t in
                                                     enumerate(texts)), encoding="utf-8")
    report = ReadReport()
    table = read_reviews(path, batch_rows=2, report=report)
    assert report.layout == "tsv unquoted"
    assert table.column("text").to_pylist() == texts


def test_tsv_convention_is_decided_from_the_file(tmp_path):
    if not NSMC.exists():
        pytest.skip(f"needs the NSMC reviews at {NSMC}")
    frame = pq.read_table(NSMC).slice(0, 20_000).to_pandas()
    raw = "id\tdocument\tlabel\n" + "".join(
        f"{i}\t{d}\t{lab}\n" for i, d, lab in zip(frame.id, frame.document.fillna(""), frame.label))
    assert raw.count('"') > 100  # the test means something: NSMC texts hold quotes
    assert not tsv_is_quoted(raw)
    quoted = frame.to_csv(sep="\t", index=False)
    assert tsv_is_quoted(quoted)
    # ... and both files read back to the same texts.
    (tmp_path / "raw.tsv").write_text(raw, encoding="utf-8")
    (tmp_path / "pandas.tsv").write_text(quoted, encoding="utf-8")
    a, b = read_reviews(tmp_path / "raw.tsv", 5000), read_reviews(tmp_path / "pandas.tsv", 5000)
    assert a.column("text").equals(b.column("text"))
    assert a.column("text").to_pylist() == frame.document.fillna("").tolist()


def test_pandas_tsv_with_line_breaks_in_reviews(tmp_path):
    """A pandas TSV of Korean reviews, some holding a line break (quoted): every row is
    read, the file not quarantined whole ("Expected 3 columns, got 2")."""
    texts = [f"리뷰 {i} 재미있어요" if i % 97 else f"첫 줄 {i}\n둘째 줄 \"인용\"" for i in range(3000)]
    frame = pd.DataFrame({"id": range(3000), "document": texts, "label": [1] * 3000})
    path = tmp_path / "korean.tsv"
    frame.to_csv(path, sep="\t", index=False)
    table = read_reviews(path, batch_rows=500)
    assert table.column("text").to_pylist() == texts
    assert table.column("read_error").null_count == 3000


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t")])
def test_one_malformed_line_rejects_one_row(tmp_path, validator, suffix, delimiter):
    path = tmp_path / f"reviews{suffix}"
    lines = [delimiter.join(["review_id", "text", "label"])]
    lines += [delimiter.join([f"r{i}", f"review number {i}", str(i % 2)]) for i in range(5000)]
    bad = delimiter.join(["r2500", "a review", "1", "an extra field"])
    lines[2501] = bad  # data row 2501 is on line 2502 (the header is line 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    valid, rejected = validate_all(validator, path, batch_rows=700)
    assert valid.num_rows == 4999 and rejected.num_rows == 1
    row = rejected.to_pylist()[0]
    assert row["source_row"] == 2501
    assert row["text"] == bad + "\n"  # the raw line, kept
    assert "line 2502: expected 3 fields, found 4" in row["reason"]
    assert row["reason"].startswith(f"reviews{suffix} row 2501")
    assert valid.column("source_row").to_pylist() == [r for r in range(1, 5001) if r != 2501]


def test_malformed_lines_after_quoted_line_breaks_keep_their_numbers(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(b'review_id,text\r\n1,"two\r\nlines"\r\n2,too,many\r\n3,"ok ""quoted"""\r\n')
    table = read_reviews(path)
    assert table.column("review_id").to_pylist() == ["1", None, "3"]
    assert table.column("text").to_pylist() == ["two\r\nlines", "2,too,many\r\n", 'ok "quoted"']
    assert table.column("read_error")[1].as_py() == "line 4: expected 2 fields, found 3"


def test_unclosed_quote_is_rejected_not_merged(tmp_path, validator):
    """pyarrow alone reads an unclosed quote to the end of the file as one text."""
    path = tmp_path / "open-quote.csv"
    path.write_text('review_id,text\n1,fine\n2,"never closed\n3,next\n4,last\n', encoding="utf-8")
    valid, rejected = validate_all(validator, path)
    assert valid.column("review_id").to_pylist() == ["1", "3", "4"]
    assert valid.column("text").to_pylist() == ["fine", "next", "last"]
    row = rejected.to_pylist()[0]
    assert (row["source_row"], row["text"]) == (2, '2,"never closed\n')
    assert "line 3: a quote opened in this line is never closed" in row["reason"]
    assert row["reason"].startswith("open-quote.csv row 2")


def test_a_review_that_really_ends_with_a_line_break_is_kept(tmp_path):
    path = tmp_path / "last-multiline.csv"
    path.write_text('review_id,text\n1,fine\n2,"ends on\ntwo lines"\n', encoding="utf-8")
    table = read_reviews(path)
    assert table.column("text").to_pylist() == ["fine", "ends on\ntwo lines"]
    assert table.column("read_error").null_count == 2


def test_duplicate_columns_are_a_clean_quarantine_reason(tmp_path):
    """Not pyarrow's KeyError 'Field "text" exists 2 times in schema': an
    UnreadableFileError naming the column and how often it appears (the file's
    quarantine reason), in CSV and in Parquet."""
    path = tmp_path / "dup.csv"
    path.write_text("review_id,text,text\n1,a,b\n", encoding="utf-8")
    with pytest.raises(UnreadableFileError, match=r"column 'text' \(the text column\) appears 2 "
                                                  "times in the header"):
        read_reviews(path)
    parquet = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["1"]), pa.array(["a"]), pa.array(["b"])],
                                        names=["review_id", "text", "text"]), parquet)
    with pytest.raises(UnreadableFileError, match="appears 2 times"):
        read_reviews(parquet)
    # A repeated column nobody reads is no reason to refuse the file.
    unused = tmp_path / "unused-dup.csv"
    unused.write_text("review_id,text,note,note\n1,a,x,y\n", encoding="utf-8")
    assert read_reviews(unused).column("text").to_pylist() == ["a"]


@pytest.mark.parametrize("content, reason", [
    (b'review_id,text\n1,a,b\n2,c,d\n', "not one of its 2 rows could be parsed"),
    (b'\n\n', "holds no column names"),
    (b'\x00\x01\x02\x03' * 50 + bytes(range(128, 256)) * 4, "REVIEWFLOW_ENCODINGS"),
])
def test_whole_file_quarantine_only_when_nothing_parses(tmp_path, content, reason):
    path = tmp_path / "nothing.csv"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError, match=reason):
        read_reviews(path)


def test_bad_line_after_the_first_block_keeps_every_row_once(tmp_path):
    """pyarrow reads 16 MiB blocks: rows of earlier blocks are already out when it meets
    the bad line, and the careful re-read must neither repeat nor skip any of them."""
    path = tmp_path / "long.csv"
    rows = 180_000
    bad_at = 170_000  # data row number, well past the first 16 MiB block
    with open(path, "w", encoding="utf-8") as out:
        out.write("review_id,text\n")
        for i in range(1, rows + 1):
            out.write(f"r{i},a,b,c\n" if i == bad_at else f"r{i},\"review {i} {'x' * 90}\"\n")
    assert path.stat().st_size > 17_000_000
    report = ReadReport()
    batches = list(iter_review_batches(path, COLUMNS, 50_000, 10**9, report=report))
    table = pa.concat_tables(batches)
    assert "Expected 2 columns, got 4" in report.careful
    assert table.column("source_row").to_pylist() == list(range(1, rows + 1))
    errors = table.column("read_error").to_pylist()
    assert [i + 1 for i, e in enumerate(errors) if e] == [bad_at]
    assert errors[bad_at - 1] == f"line {bad_at + 1}: expected 2 fields, found 4"
    ids = table.column("review_id").to_pylist()
    assert ids[:3] == ["r1", "r2", "r3"] and ids[-1] == f"r{rows}" and ids[bad_at - 1] is None


def test_shards_of_a_file_with_a_bad_line_match_the_whole(tmp_path):
    path = tmp_path / "sharded.tsv"
    lines = ["id\tdocument"] + [f"s{i}\t\"quoted\" {i}" for i in range(3000)]
    lines[1500] = "s1499\ttoo\tmany"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = read_reviews(path, batch_rows=400)
    assert whole.column("read_error").null_count == 2999
    for start, stop in ((0, 1000), (1000, 2000), (2000, None)):
        shard = read_reviews(path, 400, rows=(start, stop))
        assert shard.equals(whole.slice(start, (stop or 3000) - start))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(st.lists(st.sampled_from(["a", "b", " ", '"', "\t", "\n", "\r\n", ",", "한",
                                                "é"]), max_size=8).map("".join),
                      min_size=1, max_size=25),
       sep=st.sampled_from([",", "\t"]))
def test_whatever_pandas_writes_reads_back_exactly(tmp_path_factory, texts, sep):
    # Texts of quotes, tabs, commas, line breaks and \r\n. Not a lone \r: Python's csv
    # writer (pandas) leaves a field holding only \r unquoted, which no reader can undo.
    frame = pd.DataFrame({"review_id": [f"id{i}" for i in range(len(texts))], "text": texts})
    path = tmp_path_factory.mktemp("roundtrip") / ("r.tsv" if sep == "\t" else "r.csv")
    frame.to_csv(path, sep=sep, index=False)
    table = read_reviews(path, batch_rows=7)
    assert table.column("text").to_pylist() == texts
    assert table.column("review_id").to_pylist() == frame["review_id"].tolist()

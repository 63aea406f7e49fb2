"""Review files as they arrive in the wild (issue #16, and the reader side of #14).

No id column, pandas and Excel exports, NSMC-style TSV, legacy encodings, one bad line,
JSON arrays, duplicate columns, an unclosed quote, ids larger than 64 bits. Every file
here is written by the test; rows go through the real reader, the real expectation
suite and, in the flow tests, the real scoring and retraining flows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sqlite3
import tracemalloc

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import PROJECT, SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.reading import (
    ReadReport,
    UnreadableFileError,
    iter_review_batches,
    tsv_is_quoted,
)
from tasks.reading.columns import ColumnMapping
from tasks.settings import Settings
from tasks.state.ledger import Ledger, ScoredFile
from tasks.storage.local import file_sha256
from tests.helpers import (
    quarantine_files_folder,
    quarantined_reasons,
    quarantined_rows,
    read_reviews,
    scored_rows,
)

COLUMNS = ColumnMapping()
NSMC = PROJECT.parent / "shared" / "data" / "nsmc" / "train.parquet"

# Texts that break naive readers: quotes, tabs, line breaks of both kinds, a comma.
HARD_TEXTS = ['plain words', 'she said "wow", twice', 'a\ttab inside', 'two\nlines',
              'windows\r\nline break', '"starts and ends with quotes"', 'trailing quote"',
              '아 더빙.. 진짜 짜증나네요 "목소리']


def validate_all(validator, path, batch_rows=1000):
    seen: dict = {}
    valid, rejected = [], []
    for batch in iter_review_batches(path, COLUMNS, batch_rows, 10**9):
        checked = validator.validate(batch, seen, source_name=path.name)
        valid.append(checked.valid)
        rejected.append(checked.rejected)
    return pa.concat_tables(valid), pa.concat_tables(rejected)


# --------------------------------------------------------------------------- ids

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


# --------------------------------------------------------------------------- CSV and TSV

def frame_of_hard_texts() -> pd.DataFrame:
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(HARD_TEXTS))],
                         "document": HARD_TEXTS, "label": [i % 2 for i in range(len(HARD_TEXTS))]})


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
    """Issue #14 b: pyarrow reads an unclosed quote to the end of the file as one text."""
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
    """Issue #14 a: KeyError 'Field "text" exists 2 times in schema' escaped the reader."""
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


# --------------------------------------------------------------------------- encodings

def korean_reviews(n: int) -> list[str]:
    return [f"아 더빙.. 진짜 짜증나네요 목소리 {i}" for i in range(n)]


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr"])
def test_korean_legacy_encodings_are_detected(tmp_path, encoding):
    texts = korean_reviews(50)
    path = tmp_path / "ko.tsv"
    path.write_bytes(("id\tdocument\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts)))
                     .encode(encoding))
    report = ReadReport()
    assert read_reviews(path, report=report).column("text").to_pylist() == texts
    assert report.encoding in ("cp949", "euc_kr")


def test_western_legacy_encoding_needs_the_setting(tmp_path):
    texts = [f"Café naïve résumé – “fine” film №{i} ½" for i in range(60)]
    texts = [t.replace("№", "No") for t in texts]
    path = tmp_path / "en.csv"
    path.write_bytes(("id,review\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts)))
                     .encode("cp1252"))
    with pytest.raises(UnreadableFileError, match="REVIEWFLOW_ENCODINGS=") as caught:
        read_reviews(path)
    assert "cannot be decoded as UTF-8" in caught.value.reason
    report = ReadReport()
    table = read_reviews(path, report=report, encodings=["cp949", "cp1252"])
    assert table.column("text").to_pylist() == texts
    assert report.encoding == "cp1252"
    # Detection off and nothing configured: the file waits for the setting.
    with pytest.raises(UnreadableFileError, match="encodings setting"):
        read_reviews(tmp_path / "en.csv", detect_encoding=False)


def test_utf8_and_utf16_are_read_as_before(tmp_path):
    for name, data, encoding in (("bom.csv", "\ufeffid,review\n1,héllo\n".encode(), "utf-8"),
                                 ("plain.csv", "id,review\n1,héllo\n".encode(), "utf-8"),
                                 ("u16.tsv", "id\treview\n1\théllo\n".encode("utf-16"), "utf-16")):
        path = tmp_path / name
        path.write_bytes(data)
        report = ReadReport()
        assert read_reviews(path, report=report).column("text").to_pylist() == ["héllo"]
        assert report.encoding == encoding


def test_encodings_setting_from_the_environment(monkeypatch):
    monkeypatch.setenv("REVIEWFLOW_ENCODINGS", "cp949, cp1252")
    assert Settings().encodings == ["cp949", "cp1252"]
    monkeypatch.setenv("REVIEWFLOW_ENCODINGS", '["euc-kr"]')
    assert Settings().encodings == ["euc-kr"]
    monkeypatch.setenv("REVIEWFLOW_ENCODINGS", "klingon")
    with pytest.raises(ValueError, match="unknown encoding 'klingon'"):
        Settings()


# --------------------------------------------------------------------------- JSON

def test_json_array_export_is_read(tmp_path):
    path = tmp_path / "export.json"
    records = [{"id": i, "review": f"review {i}", "sentiment": "positive" if i % 2 else "negative"}
               for i in range(25)]
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    report = ReadReport()
    table = read_reviews(path, batch_rows=4, report=report)
    assert report.layout == "json array"
    assert table.column("review_id").to_pylist() == [str(i) for i in range(25)]
    assert table.column("label").to_pylist() == [i % 2 for i in range(25)]
    assert table.column("source_row").to_pylist() == list(range(1, 26))


def test_json_array_odd_elements_and_a_broken_tail(tmp_path):
    path = tmp_path / "odd.json"
    path.write_text('[{"review_id": "a", "text": "fine"}, 5, {"review_id": "c", "text": 3},'
                    ' {"review_id": "d", "text": "x" oops}, {"review_id": "e", "text": "lost"}]')
    table = read_reviews(path)
    errors = table.column("read_error").to_pylist()
    assert table.num_rows == 4 and errors[0] is None
    assert "element 2 is a JSON int" in errors[1] and "not a string" in errors[2]
    assert "element 4 is not valid JSON" in errors[3]
    assert table.column("text")[3].as_py().startswith('{"review_id": "d"')


def json_array_peak(path, elements: int) -> tuple[int, int]:
    """Rows read and peak bytes of Python objects reading a JSON array of ``elements``."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("[")
        for i in range(elements):
            out.write(("," if i else "") + json.dumps({"id": i, "review": "word " * 60}))
        out.write("]")
    tracemalloc.start()
    try:
        rows = sum(b.num_rows for b in iter_review_batches(path, COLUMNS, 2000, 10**9))
        return rows, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_json_array_is_streamed_in_bounded_memory(tmp_path):
    small_rows, small_peak = json_array_peak(tmp_path / "small.json", 15_000)
    big_rows, big_peak = json_array_peak(tmp_path / "big.json", 60_000)
    size = (tmp_path / "big.json").stat().st_size
    assert (small_rows, big_rows) == (15_000, 60_000) and size > 15_000_000
    # Four times the file, about the same memory: a chunk and a batch, not the array.
    assert big_peak < 1.5 * small_peak and big_peak < size / 2, (small_peak, big_peak, size)


def test_ids_beyond_64_bits_stay_exact(tmp_path):
    """Issue #14 c: orjson made 123456789012345678901234567890 a float."""
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


# --------------------------------------------------------------------------- ledger

OLD_LEDGER = """
CREATE TABLE scored_files (
    source_sha256 TEXT NOT NULL, model_version TEXT NOT NULL, source_file TEXT NOT NULL,
    rows_read INTEGER NOT NULL, rows_scored INTEGER NOT NULL,
    rows_quarantined INTEGER NOT NULL, scored_part TEXT, quarantine_part TEXT,
    finished_at TEXT NOT NULL, PRIMARY KEY (source_sha256, model_version));
INSERT INTO scored_files VALUES ('aa', 'v1', 'old.csv', 3, 2, 1, 'p', NULL, '2026-01-01');
"""


def test_a_ledger_from_before_the_encoding_column_still_opens(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_LEDGER)
    ledger = Ledger(path)
    old = ledger.scored("aa", "v1")
    assert (old.source_file, old.rows_read, old.encoding, old.rows_id_generated) == \
        ("old.csv", 3, None, None)
    ledger.record_scored_many([ScoredFile("bb", "v1", "new.csv", 2, 2, 0, "q", None,
                                    encoding="cp949", rows_id_generated=2)])
    new = Ledger(path).scored("bb", "v1")
    assert (new.encoding, new.rows_id_generated) == ("cp949", 2)
    assert ledger.totals()["rows_read"] == 5


# --------------------------------------------------------------------------- flows

def test_wild_files_in_one_scoring_run(scoring_root):
    from flows.score_reviews import score_reviews

    inbox = scoring_root / "incoming"
    pd.DataFrame({"review": ["A wonderful film.", "A dull mess."],
                  "sentiment": ["positive", "negative"]}).to_csv(inbox / "imdb.csv", index=False)
    ko = korean_reviews(40)
    (inbox / "ko.tsv").write_bytes(("id\tdocument\n" + "".join(
        f"k{i}\t{t}\n" for i, t in enumerate(ko))).encode("cp949"))
    frame_of_hard_texts().to_csv(inbox / "pandas.tsv", sep="\t", index=False)
    (inbox / "one-bad-line.csv").write_text("review_id,text\nb1,good\nb2,too,many\nb3,fine\n")
    (inbox / "dup.csv").write_text("review_id,text,text\nd1,a,b\n")
    (inbox / "export.json").write_text(json.dumps([{"id": "j1", "review": "fine"}]))
    imdb_bytes = (inbox / "imdb.csv").read_bytes()
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)

    assert summary["files_scored"] == 5 and summary["files_quarantined"] == 1
    assert summary["rows_read"] == 2 + 40 + len(HARD_TEXTS) + 3 + 1 == \
        summary["rows_scored"] + summary["rows_quarantined"]
    assert summary["rows_quarantined"] == 1
    assert summary["rows_id_generated"] == 2
    assert summary["encodings"] == {"utf-8": 4, "cp949": 1}
    reason = next(iter(quarantined_reasons(scoring_root, "*dup.csv")))
    assert "appears 2 times" in json.loads(reason.read_text())["reason"]
    bad = quarantined_rows(scoring_root)
    assert bad.column("text").to_pylist() == ["b2,too,many\n"]
    assert "line 3: expected 2 fields, found 3" in bad.column("reason")[0].as_py()
    scored = scored_rows(scoring_root)
    generated = [i for i in scored.column("review_id").to_pylist() if "-row" in i]
    prefix = hashlib.sha256(imdb_bytes).hexdigest()[:16]
    assert sorted(generated) == [f"{prefix}-row1", f"{prefix}-row2"]

    ledger = Ledger(scoring_root / "state" / "ledger.sqlite")
    with sqlite3.connect(ledger.path) as db:
        recorded = dict(db.execute("SELECT source_file, encoding FROM scored_files").fetchall())
        ids = dict(db.execute("SELECT source_file, rows_id_generated FROM scored_files"))
    assert recorded["ko.tsv"] == "cp949" and recorded["imdb.csv"] == "utf-8"
    assert ids["imdb.csv"] == 2 and ids["ko.tsv"] == 0

    # The same id-less bytes again: the same generated ids, so the ledger knows them.
    (inbox / "imdb-again.csv").write_bytes(imdb_bytes)
    again = score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert again["files_already_scored"] == 1 and again["rows_read"] == 0


def test_retraining_uses_labeled_files_without_ids(scoring_root):
    from flows.retrain_model import retrain_model

    labeled = scoring_root / "labeled"
    for sample in (SAMPLES / "labeled").iterdir():
        frame = (pd.read_csv(sample) if sample.suffix == ".csv"
                 else pd.read_json(sample, lines=True))
        # The IMDB Kaggle layout: review and sentiment, no id column.
        frame = frame.rename(columns={"text": "review", "label": "sentiment"})
        frame[["review", "sentiment"]].to_csv(labeled / f"{sample.stem}-no-ids.csv", index=False)
    summary = retrain_model(data_dir=str(scoring_root), architecture="seed", epochs=1)
    metrics = json.loads((scoring_root / "models" / "versions" / summary["version"] /
                          "metrics.json").read_text())
    data = metrics["training_data"]
    assert data["files"] == 2 and data["files_quarantined"] == 0
    assert data["rows_id_generated"] == data["rows_read"] > 0
    assert data["encodings"] == {"utf-8": 2}
    assert summary["train_rows"] + summary["validation_rows"] > 0
    assert not list(quarantine_files_folder(scoring_root).rglob("*"))


# --------------------------------------------------------------------------- more CSV/TSV

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

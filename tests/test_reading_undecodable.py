"""Files that decode but for a few records (issue 37, item 8).

A UTF-8 file with a few bytes that are not UTF-8 (a stray byte, a bad copy) keeps its
good rows: each record holding such bytes is one quarantined row naming its line and
the bytes, shown as ``\\xff``; every other row is scored, and rows read = scored +
quarantined. Beyond ``MAX_UNDECODABLE_RECORDS`` records or ``MAX_UNDECODABLE_SHARE`` of
them, the file is more likely in another encoding and is quarantined whole, the reason
naming the encodings setting. Every text format, gzipped or not, damage in
the first MiB (which decides the encoding) or after it, scoring and training alike.
"""

from __future__ import annotations

import gzip
import json
import logging
import math

import pyarrow as pa
import pytest

from tasks.layout import DataLayout
from tasks.reading import (
    MAX_UNDECODABLE_RECORDS,
    MAX_UNDECODABLE_SHARE,
    ReadReport,
    UnreadableFileError,
)
from tasks.settings import Settings
from tasks.training.labeled import read_labeled_reviews
from tests.helpers import (
    layout_of,
    packaged_validator,
    quarantined_files,
    quarantined_rows,
    read_reviews,
    score,
    scored_rows,
)

# Rows whose text gets a byte that is not UTF-8; every text also holds valid UTF-8
# ("très"), which a file misread in another encoding would garble.
BAD = (10, 77, 150)
ROWS = 200
# Long enough rows put the damage of a file of LONG rows past its first MiB.
LONG, PAD = 2_500, 600


def text(i: int, pad: int = 0, bad: tuple[int, ...] = BAD) -> bytes:
    body = f"Review {i} was très bien, a film to see{' ' + 'x' * pad if pad else ''}".encode()
    return body.replace(b"Review", b"Rev\xffiew") if i in bad else body


def csv_file(n: int = ROWS, pad: int = 0, bad: tuple[int, ...] = BAD) -> bytes:
    return b"review_id,text\n" + b"".join(b'%d,"%s"\n' % (i, text(i, pad, bad))
                                          for i in range(n))


def tsv_quoted() -> bytes:  # pandas' to_csv(sep="\t"): quoted fields holding tabs
    return b"review_id\ttext\n" + b"".join(b'%d\t"%s\twith a tab"\n' % (i, text(i))
                                           for i in range(ROWS))


def tsv_nsmc() -> bytes:  # NSMC style: a double quote is text
    return b"id\tdocument\tlabel\n" + b"".join(b'%d\t"%s\t%d\n' % (i, text(i), i % 2)
                                                for i in range(ROWS))


def json_lines(n: int = ROWS, pad: int = 0, bad: tuple[int, ...] = BAD) -> bytes:
    return b"".join(b'{"review_id": %d, "text": "%s"}\n' % (i, text(i, pad, bad))
                    for i in range(n))


def json_array(separator: bytes) -> bytes:
    return b"[" + separator.join(b'{"review_id": %d, "text": "%s"}' % (i, text(i))
                                 for i in range(ROWS)) + b"]"


def quoted_lines() -> bytes:
    """Row 3 is a quoted field over three lines with the bad byte on its second line."""
    rows = [f'{i},"Fine review {i}, très bien"\n'.encode() for i in range(ROWS)]
    rows[3] = b'3,"A review over\nthree li\xfenes\nof text"\n'
    return b"review_id,text\n" + b"".join(rows)


# file name -> (bytes, the source rows quarantined, how their reasons name where they are)
LINE = "line {line}"
CASES = {
    "plain.csv": (csv_file(), BAD, LINE),
    "quoted.tsv": (tsv_quoted(), BAD, LINE),
    "nsmc.tsv": (tsv_nsmc(), BAD, LINE),
    "lines.jsonl": (json_lines(), BAD, LINE),
    "one-line.json": (json_array(b", "), BAD, "element {row} (line 1)"),
    "indented.json": (json_array(b",\n"), BAD, "element {row} (line {row})"),
    "plain.csv.gz": (gzip.compress(csv_file()), BAD, LINE),
    "lines.jsonl.gz": (gzip.compress(json_lines()), BAD, LINE),
    "array.json.gz": (gzip.compress(json_array(b",\n")), BAD, "element {row} (line {row})"),
    "multi-line.csv": (quoted_lines(), (3,), "lines 5-7"),
    # Past the first MiB: the start decides UTF-8, the damage comes while reading.
    "late.csv": (csv_file(LONG, PAD, bad=(2_000, 2_400)), (2_000, 2_400), LINE),
    "late.jsonl.gz": (gzip.compress(json_lines(LONG, PAD, bad=(10, 2_000))), (10, 2_000), LINE),
}


def where(pattern: str, name: str, row: int) -> str:
    """Where a reason says a rejected row (0-based ``row``) is: CSV and TSV lines count
    the header, JSON Lines lines do not, JSON array elements count from 1."""
    line = row + (1 if name.endswith(".jsonl") or ".jsonl." in name else 2)
    return pattern.format(line=line, row=row + 1)


def test_a_few_records_that_are_not_utf8_are_quarantined_and_the_rest_scored(scoring_root,
                                                                             monkeypatch):
    """One run over every text format; every bad record has a good id and a bad text.
    Files big enough to shard are planned on the whole file and read shard by shard,
    each bad row quarantined once."""
    monkeypatch.setenv("REVIEWFLOW_ENCODINGS", "cp1252")  # set for other files: not taken
    inbox = layout_of(scoring_root).incoming
    for name, (data, _, _) in CASES.items():
        (inbox / name).write_bytes(data)
    summary = score(scoring_root, shard_rows=1_000)
    assert quarantined_files(scoring_root) == {}
    assert summary["files_scored"] == len(CASES) and summary["files_quarantined"] == 0
    assert summary["encodings"] == {"utf-8": len(CASES)}
    assert summary["shards"] > len(CASES)  # the long files were read in shards
    assert summary["rows_read"] == summary["rows_scored"] + summary["rows_quarantined"]

    rejected = quarantined_rows(scoring_root).to_pylist()
    scored = scored_rows(scoring_root, ["source_file", "review_id"]).to_pylist()
    total = sum(LONG if name.startswith("late") else ROWS for name in CASES)
    bad_rows = sum(len(rows) for _, rows, _ in CASES.values())
    assert summary["rows_read"] == total and summary["rows_quarantined"] == bad_rows
    assert len(rejected) == bad_rows and len(scored) == total - bad_rows
    for name, (_, rows, pattern) in CASES.items():
        mine = sorted((r for r in rejected if r["source_file"] == name),
                      key=lambda r: r["source_row"])
        assert [r["source_row"] - 1 for r in mine] == list(rows), name
        for row, found in zip(rows, mine):
            reason = found["reason"]
            assert f"{where(pattern, name, row)}: bytes 0x" in reason, (name, reason)
            assert "are not valid UTF-8" in reason, reason
            assert "cp1252" not in reason and "REVIEWFLOW_ENCODINGS" not in reason
            assert "\\xf" in found["text"], found["text"]  # the bytes shown, as text
        ids = {r["review_id"] for r in scored if r["source_file"] == name}
        assert len(ids) == (LONG if name.startswith("late") else ROWS) - len(rows), name


@pytest.mark.parametrize("name", ["plain.csv", "one-line.json", "nsmc.tsv"])
def test_the_good_rows_read_as_written_whatever_encodings_are_named(tmp_path, name):
    """UTF-8 with valid non-ASCII characters and a few bad bytes: charset-normalizer
    named cp932 for it, and a named cp1252 decodes it too; either would garble every
    row. It is read as UTF-8."""
    path = tmp_path / name
    path.write_bytes(CASES[name][0])
    for encodings in ((), ("cp1252",), ("cp949", "cp1252")):
        report = ReadReport()
        table = read_reviews(path, report=report, encodings=list(encodings))
        good = table.filter(pa.compute.is_null(table.column("read_error")))
        assert report.encoding == "utf-8" and report.undecodable == len(BAD)
        assert good.num_rows == ROWS - len(BAD)
        assert all("très bien" in t for t in good.column("text").to_pylist())


def too_many(n: int) -> int:
    """The fewest bad records of ``n`` that make a file unreadable."""
    return min(MAX_UNDECODABLE_RECORDS, math.floor(MAX_UNDECODABLE_SHARE * n)) + 1


@pytest.mark.parametrize("n, late", [(ROWS, False), (LONG, True), (40 * MAX_UNDECODABLE_RECORDS,
                                                                   False)])
def test_more_bad_records_than_a_few_quarantine_the_file_naming_the_setting(tmp_path, n, late):
    """At the limit the file is read; one record more and it is quarantined whole, its
    reason naming the encodings setting (a file in another encoding looks like this)."""
    start = n - too_many(n) if late else 0  # late: all of them past the first MiB
    path = tmp_path / "many.csv"
    for bad, readable in ((too_many(n) - 1, True), (too_many(n), False)):
        path.write_bytes(csv_file(n, PAD if late else 0, bad=tuple(range(start, start + bad))))
        if readable:
            report = ReadReport()
            table = read_reviews(path, report=report)
            assert table.num_rows == n and report.undecodable == bad
            continue
        with pytest.raises(UnreadableFileError) as caught:
            read_reviews(path)
        assert "REVIEWFLOW_ENCODINGS" in caught.value.reason, caught.value.reason
        assert "UTF-8" in caught.value.reason


def test_a_western_file_is_quarantined_whole_with_the_setting_named(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(("review_id,text\n" + "".join(f"{i},très bon film {i}\n" for i in range(60)))
                     .encode("cp1252"))
    with pytest.raises(UnreadableFileError, match="REVIEWFLOW_ENCODINGS=") as caught:
        read_reviews(path)
    assert "cannot be decoded as UTF-8" in caught.value.reason
    assert read_reviews(path, encodings=["cp1252"]).column("text")[0].as_py() == "très bon film 0"


def test_a_header_that_is_not_utf8_makes_the_file_unreadable(tmp_path):
    path = tmp_path / "header.csv"
    path.write_bytes(b"review_id,te\xffxt\n" + b"".join(b"%d,fine\n" % i for i in range(100)))
    with pytest.raises(UnreadableFileError, match="the header line: bytes 0xFF"):
        read_reviews(path)


def test_a_json_string_holding_half_a_surrogate_pair_is_one_rejected_row(tmp_path):
    """Sibling: the JSON array reader decodes "\\ud83d" to a lone surrogate that no
    Parquet string can hold: that row is rejected, not the whole file quarantined as
    'not valid utf-8'."""
    records = [{"review_id": i, "text": f"fine {i}"} for i in range(20)]
    data = json.dumps(records).replace('"fine 7"', '"half an emoji \\ud83d"')
    for name, content in (("array.json", data),
                          ("lines.jsonl", "\n".join(json.dumps(r) for r in records)
                           .replace('"fine 7"', '"half an emoji \\ud83d"'))):
        path = tmp_path / name
        path.write_text(content)
        table = read_reviews(path)
        errors = [(row, e) for row, e in zip(table.column("source_row").to_pylist(),
                                             table.column("read_error").to_pylist()) if e]
        assert table.num_rows == 20 and [row for row, _ in errors] == [8], (name, errors)


def test_training_reads_the_good_rows_of_a_labeled_file_with_a_few_bad_bytes(tmp_path):
    """Labeled files go through the same readers: the good rows are trained on, the bad
    ones are rejected rows of quarantine/training/; a file with too many is quarantined."""
    settings = Settings(data_dir=tmp_path / "data")
    layout = DataLayout.of(settings).ensure()
    rows = [f'r{i},"Review {i} was {"good" if i % 2 else "bad"}, très",{i % 2}\n'.encode()
            for i in range(ROWS)]
    for k in BAD:
        rows[k] = rows[k].replace(b"Review", b"Rev\xffiew")
    (layout.labeled / "few.csv").write_bytes(b"review_id,text,label\n" + b"".join(rows))
    latin = "".join(f"l{i},très bon {i},1\n" for i in range(40)).encode("cp1252")
    (layout.labeled / "latin.csv").write_bytes(b"review_id,text,label\n" + latin)
    reviews, stats = read_labeled_reviews(settings, packaged_validator(require_label=True),
                                          logging.getLogger("test"))
    assert len(reviews) == ROWS - len(BAD) and stats["rows_read"] == ROWS
    assert stats["rows_rejected"] == len(BAD) and stats["files_quarantined"] == 1
    assert all("très" in t for t in reviews["text"])
    rejected = quarantined_rows(tmp_path / "data", of="training").to_pylist()
    assert sorted(r["source_row"] - 1 for r in rejected) == list(BAD)
    assert all("not valid UTF-8" in r["reason"] for r in rejected)
    assert set(quarantined_files(tmp_path / "data")) == {"latin.csv"}

"""One record longer than any review among ordinary ones (CSV and TSV, quoted or not,
gzipped or not, JSON Lines, JSON arrays): one quarantined row naming its line, the rows
around it kept, read in bounded memory; the record limit follows max_text_chars.
Rows read = rows kept + rows rejected.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tasks.reading import iter_review_batches, record_chars
from tasks.reading.columns import ColumnMapping
from tests.helpers import errors_of, read_reviews


def _delimited(kind: str, quoted: bool, long_text: str) -> str:
    sep = "\t" if kind == "tsv" else ","
    q = '"' if quoted else ""
    # Quoted: a doubled quote in every text, the evidence a quoted TSV is told by.
    tail = ', ""fine""' if quoted else " fine"
    rows = [f"{q}r{i}{q}{sep}{q}review {i}{tail}{q}" for i in range(1, 6)]
    rows.insert(2, f"{q}big{q}{sep}{q}{long_text}{q}")
    return f"review_id{sep}text\n" + "\n".join(rows) + "\n"


COLUMNS = ColumnMapping()

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind, quoted", [("csv", True), ("csv", False), ("tsv", False),
                                          ("tsv", True)])
@pytest.mark.parametrize("gzipped", [False, True])
def test_a_review_past_the_block_size_is_one_quarantined_row(tmp_path, validator, kind,
                                                             quoted, gzipped):
    long_text = "x" * (20 << 20)  # past pyarrow's 16 MiB block
    body = _delimited(kind, quoted, long_text).encode()
    path = tmp_path / f"long.{kind}{'.gz' if gzipped else ''}"
    path.write_bytes(gzip.compress(body, 1) if gzipped else body)
    table = read_reviews(path)
    assert table.num_rows == 6
    kept = table.filter(pa.compute.not_equal(table.column("review_id"), "big"))
    assert errors_of(kept) == {}
    assert kept.column("review_id").to_pylist() == ["r1", "r2", "r3", "r4", "r5"]
    assert kept.column("text").to_pylist()[0] == ('review 1, "fine"' if quoted else "review 1 fine")
    # pyarrow reads the row whole when it fits its blocks (the suite then rejects its
    # length); otherwise the reader skips it. Either way: that row only, named.
    checked = validator.validate(table, {}, source_name=path.name)
    assert checked.valid.num_rows == 5 and checked.rejected.num_rows == 1
    reason = checked.rejected.column("reason")[0].as_py()
    assert reason.startswith(f"{path.name} row 3: failed ")
    assert "longer than any record" in reason or "lengths_to_be_between(text)" in reason


@pytest.mark.parametrize("quote", ['"', ""])
def test_a_50_mb_review_mid_file_is_one_quarantined_row(tmp_path, validator, quote):
    """The issue's case: 50 MB among many rows, cut by pyarrow's blocks (before: the
    reason blamed a quote never closed, or, TSV, the reader died)."""
    rows = "".join(f"r{i},review number {i} is fine\n" for i in range(60_000))
    path = tmp_path / "reviews.csv.gz"
    path.write_bytes(gzip.compress(("review_id,text\n" + rows + f"big,{quote}" + "b" * (50 << 20)
                                    + f"{quote}\n" + rows.replace("r", "s")).encode(), 1))
    rejected, read_rows, kept = [], 0, 0
    for batch in iter_review_batches(path, COLUMNS, 50_000, 1 << 32):
        checked = validator.validate(batch, {}, source_name=path.name)
        read_rows += batch.num_rows
        kept += checked.valid.num_rows
        rejected += checked.rejected.to_pylist()
    assert read_rows == 120_001 and kept == 120_000 and len(rejected) == 1
    assert rejected[0]["review_id"] == "big" and rejected[0]["source_row"] == 60_001
    assert rejected[0]["reason"] == (f"{path.name} row 60001: failed "
                                     "expect_column_value_lengths_to_be_between(text)")


@pytest.mark.parametrize("name", ["huge.jsonl.gz", "huge.json.gz", "huge.csv.gz", "huge.tsv.gz"])
def test_a_huge_line_is_skipped_in_bounded_memory(tmp_path, name):
    """One 300 MB line (300 KB gzipped) among small rows: read in a child process whose
    peak memory is measured; the line becomes one rejected row, every other row is read."""
    size = 300 << 20
    kind = name.split(".")[1]
    if kind == "jsonl":
        head = b"".join(b'{"review_id": "a%d", "text": "fine %d"}\n' % (i, i) for i in range(3))
        start, end, tail = b'{"review_id": "big", "text": "', b'"}\n', head.replace(b'"a', b'"b')
    elif kind == "json":
        head = b'[{"review_id": "a0", "text": "x"},'
        start, end, tail = b'{"review_id": "big", "text": "', b'"}', b',{"review_id": "b0", "text": "y"}]'
    else:
        sep = b"\t" if kind == "tsv" else b","
        rows = b"".join(b"a%d%sfine %d\n" % (i, sep, i) for i in range(3))
        head, tail = b"review_id%stext\n" % sep + rows, rows.replace(b"a", b"b")
        start, end = b"big" + sep, b"\n"
    path = tmp_path / name
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(head + start)
        chunk = b"a" * (1 << 20)
        for _ in range(size >> 20):
            out.write(chunk)
        out.write(end + tail)
    assert path.stat().st_size < 2_000_000
    child = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tasks.reading.columns import ColumnMapping\n"
        "from tasks.reading import iter_review_batches\n"
        "rows, errors = [], []\n"
        "for b in iter_review_batches(Path(sys.argv[1]), ColumnMapping(), 1000, 4 << 30):\n"
        "    rows += b.column('review_id').to_pylist(); errors += b.column('read_error').to_pylist()\n"
        # VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss over fork and exec.
        "peak = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "peak = peak[0] // 1024\n"
        "print(json.dumps({'rows': rows, 'errors': errors, 'peak_mib': peak}))\n")
    done = subprocess.run([sys.executable, "-c", child, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Held whole, the line would take over 500 MiB (JSON Lines, CSV); the TSV reader
    # must not die on it, nor a JSON array lose every element after it.
    assert result["peak_mib"] < 500, result["peak_mib"]
    bad = [e for e in result["errors"] if e]
    assert len(bad) == 1 and "longer than any record" in bad[0], bad
    assert len(result["rows"]) == (3 if kind == "json" else 7)
    good = [r for r, e in zip(result["rows"], result["errors"]) if not e]
    assert good == (["a0", "b0"] if kind == "json" else ["a0", "a1", "a2", "b0", "b1", "b2"])


def test_a_quoted_record_going_on_after_a_too_long_line_is_one_row(tmp_path):
    # The record's quote is still open at the end of the long line: its next line is
    # part of it, not a row of its own.
    path = tmp_path / "multi.csv"
    path.write_text('review_id,text\n1,ok\n2,"' + "x" * (70 << 20)
                    + '\nsecond ""line"" here"\n3,fine\n4,"a\nb"\n')
    table = read_reviews(path)
    assert table.column("review_id").to_pylist() == ["1", None, "3", "4"]
    errors = errors_of(table)
    assert list(errors) == [2] and errors[2].startswith("lines 3-4: 73,400,346 characters")
    assert table.column("text").to_pylist()[3] == "a\nb"


def test_the_record_limit_follows_max_text_chars(tmp_path):
    assert record_chars(None) == record_chars(100_000) == 64 << 20
    assert record_chars(10_000_000) > 12 * 10_000_000  # every character escaped, and more
    path = tmp_path / "r.tsv"
    path.write_text("review_id\ttext\n1\t" + "z" * (70 << 20) + "\n2\tok\n")
    assert list(errors_of(read_reviews(path))) == [1]
    assert errors_of(read_reviews(path, max_text_chars=10_000_000)) == {}

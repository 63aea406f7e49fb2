"""JSON arrays and JSON Lines: an exported array read whole, streamed in bounded memory,
odd elements and a broken tail as rejected rows; objects matched one by one (keys in any
order, aliases, extra keys, a missing text), each rejected row naming its line.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest

from tasks.reading import ReadReport, UnreadableFileError, iter_review_batches
from tasks.reading.columns import ColumnMapping
from tests.helpers import errors_of, read_reviews

COLUMNS = ColumnMapping()


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


JSON_OBJECTS = [
    {"review_id": "1", "label": 1},  # no text: that row only
    {"review_id": "2", "text": "plain", "label": 0},
    {"label": 1, "text": "keys in another order", "review_id": "3"},
    {"review_id": "4", "text": "extra keys", "stars": 5, "meta": {"a": [1]}},
    {"id": "5", "review": "aliases in one line only", "sentiment": "positive"},
    {"review_id": "6", "text": "last"},
]


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


def test_json_array_is_streamed_in_bounded_memory(tmp_path):
    small_rows, small_peak = json_array_peak(tmp_path / "small.json", 15_000)
    big_rows, big_peak = json_array_peak(tmp_path / "big.json", 60_000)
    size = (tmp_path / "big.json").stat().st_size
    assert (small_rows, big_rows) == (15_000, 60_000) and size > 15_000_000
    # Four times the file, about the same memory: a chunk and a batch, not the array.
    assert big_peak < 1.5 * small_peak and big_peak < size / 2, (small_peak, big_peak, size)


@pytest.mark.parametrize("layout", ["jsonl", "json", "jsonl-first-not-object"])
def test_json_objects_are_matched_one_by_one(tmp_path, validator, layout):
    objects = list(JSON_OBJECTS)
    if layout == "jsonl-first-not-object":
        objects.insert(0, ["not", "an", "object"])
    if layout == "json":
        path = tmp_path / "reviews.json"
        path.write_text(json.dumps(objects))
    else:
        path = tmp_path / "reviews.jsonl"
        path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    table = read_reviews(path, batch_rows=2)
    shift = len(objects) - len(JSON_OBJECTS)
    assert table.num_rows == len(objects)
    errors = errors_of(table)
    assert sorted(errors) == list(range(1, shift + 2))
    assert "missing required column text" in errors[shift + 1]
    kept = table.slice(shift + 1)
    assert kept.column("review_id").to_pylist() == ["2", "3", "4", "5", "6"]
    assert kept.column("text").to_pylist()[3] == "aliases in one line only"
    assert kept.column("label").to_pylist() == [0, 1, None, 1, None]
    checked = validator.validate(table, {}, source_name=path.name)
    assert checked.valid.num_rows == 5 and checked.rejected.num_rows == 1 + shift
    assert checked.rejected.column("reason").to_pylist()[-1].startswith(
        f"{path.name} row {shift + 1}: failed readable_row: ")


def test_json_lines_without_any_text_field_is_unreadable(tmp_path):
    path = tmp_path / "stars.jsonl"
    path.write_text('{"review_id": "1", "stars": 5}\n{"review_id": "2", "stars": 3}\n')
    with pytest.raises(UnreadableFileError, match="missing required column text"):
        read_reviews(path)

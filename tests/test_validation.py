"""Validation: the GX suite splits rows into valid and rejected, and loses none."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.reading import NORMALIZED_SCHEMA
from tasks.settings import PACKAGED_SUITE
from tasks.validation import ReviewValidator, SeenValues, SuiteError, load_suite_config
from tests.helpers import packaged_validator


def batch(rows: list[dict], first_row: int = 1) -> pa.Table:
    full = [{"source_row": first_row + i, "review_id": r.get("review_id"), "text": r.get("text"),
             "label": r.get("label"), "label_raw": None, "read_error": r.get("read_error")}
            for i, r in enumerate(rows)]
    return pa.Table.from_pylist(full, schema=NORMALIZED_SCHEMA)


@pytest.fixture(scope="module")
def validator() -> ReviewValidator:
    return packaged_validator(max_text_chars=50)


def test_each_bad_row_is_named_with_its_expectations(validator):
    result = validator.validate(batch([
        {"review_id": "a", "text": "good review"},
        {"review_id": "b", "text": "   "},
        {"review_id": "c", "text": None},
        {"review_id": None, "text": "no id"},
        {"review_id": "e", "text": "x" * 51},
        {"review_id": "f", "text": "bad label", "label": -1},
        {"review_id": "g", "text": "unparsable", "read_error": "line is not valid JSON"},
    ]), {}, source_name="in.csv")
    assert result.valid.column("review_id").to_pylist() == ["a"]
    failed = dict(zip(result.rejected.column("source_row").to_pylist(),
                      result.rejected.column("failed_expectations").to_pylist()))
    assert failed == {
        2: ["expect_column_values_to_not_match_regex(text)"],
        3: ["expect_column_values_to_not_be_null(text)"],
        4: ["expect_column_values_to_not_be_null(review_id)"],
        5: ["expect_column_value_lengths_to_be_between(text)"],
        6: ["expect_column_values_to_be_in_set(label)"],
        7: ["readable_row: line is not valid JSON"],
    }
    assert result.rejected.column("reason").to_pylist()[0] == (
        "in.csv row 2: failed expect_column_values_to_not_match_regex(text)")


def test_duplicate_ids_keep_the_first_across_batches(validator):
    seen: dict = {}
    first = validator.validate(batch([{"review_id": "a", "text": "one"},
                                      {"review_id": "a", "text": "two"}]), seen)
    second = validator.validate(batch([{"review_id": "a", "text": "three"},
                                       {"review_id": "b", "text": "four"}], first_row=3), seen)
    assert first.valid.column("text").to_pylist() == ["one"]
    assert second.valid.column("text").to_pylist() == ["four"]
    assert first.rejected.num_rows + second.rejected.num_rows == 2
    assert second.rejected.column("failed_expectations").to_pylist() == [
        ["expect_column_values_to_be_unique(review_id)"]]


def test_training_requires_a_label():
    strict = packaged_validator(max_text_chars=50, require_label=True)
    result = strict.validate(batch([{"review_id": "a", "text": "t", "label": 1},
                                    {"review_id": "b", "text": "t2", "label": None}]), {})
    assert result.valid.num_rows == 1
    assert result.rejected.column("failed_expectations").to_pylist() == [
        ["expect_column_values_to_not_be_null(label)"]]


def test_rows_in_equal_rows_out_on_a_large_mixed_batch(validator):
    rows = [{"review_id": f"r{i % 9000}", "text": "" if i % 7 == 0 else f"text {i}"}
            for i in range(12_000)]
    result = validator.validate(batch(rows), {})
    assert result.valid.num_rows + result.rejected.num_rows == 12_000
    assert set(result.valid.column("source_row").to_pylist()).isdisjoint(
        result.rejected.column("source_row").to_pylist())


def test_a_user_edited_suite_is_used(tmp_path):
    suite = load_suite_config(PACKAGED_SUITE)
    suite["expectations"].append({"type": "expect_column_value_lengths_to_be_between",
                                  "kwargs": {"column": "text", "min_value": 10}})
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    custom = ReviewValidator(load_suite_config(path), parameters={"max_text_chars": 100})
    result = custom.validate(batch([{"review_id": "a", "text": "short"}]), {})
    assert result.valid.num_rows == 0


def test_broken_suites_fail_clearly(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text("{not json")
    with pytest.raises(SuiteError, match="cannot read expectation suite"):
        load_suite_config(path)
    with pytest.raises(SuiteError, match="unknown expectation type"):
        ReviewValidator({"expectations": [{"type": "expect_the_moon", "kwargs": {}}]})


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=30), max_size=6))
def test_seen_values_keep_exactly_the_first_occurrence(batches):
    """The hashed memory of seen ids agrees with a plain set, batch after batch."""
    seen, reference = SeenValues(), set()
    for values in batches:
        expected = []
        for value in values:
            expected.append(value is None or value not in reference)
            if value is not None:
                reference.add(value)
        got = seen.first_seen(pa.array(values, pa.string()))
        assert got.tolist() == expected
    assert len(seen) == len(reference)
    probe = pa.array([*reference, None, "never given: too long"], pa.string())
    assert seen.contains(probe).tolist() == [True] * len(reference) + [False, False]
    merged = SeenValues(("never given: too long",))
    merged.update(seen)
    assert len(merged) == len(reference) + 1 and merged.contains(probe).sum() == len(reference) + 1


def test_many_batches_in_one_suite_run_split_as_one_at_a_time(validator):
    """validate_many (one suite run for a bundle of small files) gives each batch exactly
    what validate gives it alone: same valid rows, same rejections and reasons, and
    uniqueness per file (the same id in two files is fine; twice in one file is not)."""
    files = [
        ("a.csv", [batch([{"review_id": "1", "text": "fine"}, {"review_id": "2", "text": " "}]),
                   batch([{"review_id": "1", "text": "again"}], first_row=3)]),
        ("b.csv", [batch([{"review_id": "1", "text": "fine too"},
                          {"review_id": "3", "text": "x" * 51, "label": 7}])]),
        ("c.csv", [batch([{"review_id": None, "text": "no id", "read_error": "bad line"}])]),
    ]
    alone = [validator.validate(b, seen, source_name=name)
             for name, batches in files for seen in [{}] for b in batches]
    seen_per_file = [{} for _ in files]
    together = validator.validate_many([(b, seen_per_file[i], name)
                                        for i, (name, batches) in enumerate(files)
                                        for b in batches])
    assert len(together) == len(alone) == 4
    for one, many in zip(alone, together):
        assert one.valid.equals(many.valid)
        assert one.rejected.to_pylist() == many.rejected.to_pylist()
    assert sum(r.rejected.num_rows for r in together) == 4  # blank, repeat, long, no id
    assert validator.validate_many([]) == []


def test_a_batch_is_validated_without_hashing_its_rows(validator, monkeypatch):
    """GX's pandas engine would hash the whole frame of every batch for a fingerprint
    no result of reviewflow reads (tasks/validation.py); the validator turns it off, and
    the split is the same."""
    from great_expectations.execution_engine import pandas_execution_engine

    hashed = []
    real = pandas_execution_engine.hash_pandas_dataframe
    monkeypatch.setattr(pandas_execution_engine, "hash_pandas_dataframe",
                        lambda frame: hashed.append(len(frame)) or real(frame))
    result = validator.validate(batch([{"review_id": "a", "text": "fine"},
                                       {"review_id": "b", "text": " "}]), {})
    assert result.valid.column("review_id").to_pylist() == ["a"]
    assert result.rejected.column("source_row").to_pylist() == [2]
    assert hashed == []

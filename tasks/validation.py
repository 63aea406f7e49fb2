"""Split record batches into valid rows and rejected rows with a Great Expectations suite.

The suite is a JSON file a user can edit (``tasks/expectations/review_suite.json`` by
default). Row-level expectations run through Great Expectations on each batch with
the COMPLETE result format, so every failing row is named by its ``source_row``.
Uniqueness (``expect_column_values_to_be_unique``) must hold over a whole file that
arrives in several batches, so it is checked here over the file with the first
occurrence of an id kept and every later one rejected.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.heavy_imports import heavy_import

# Great Expectations sends usage analytics unless told not to; a batch job must not.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

UNIQUE = "expect_column_values_to_be_unique"


class SeenValues:
    """The values of one column already seen in a file, kept as sorted 64-bit hashes.

    Eight bytes a value, where a Python set of id strings would be the one part of a
    scoring run's memory that grows fast with the file (BENCHMARKS.md, memory). Two different
    ids share a hash with probability about n²/2^65 (3e-8 for a million-row file); the
    later one would then be quarantined as a duplicate, with its reason, never lost.
    """

    def __init__(self, values=()):
        self._hashes = np.empty(0, dtype=np.uint64)
        if values:
            self.first_seen(pa.array(list(values), pa.string()))

    def __len__(self) -> int:
        return len(self._hashes)

    def first_seen(self, values: pa.Array) -> np.ndarray:
        """For each value, True if neither an earlier value of ``values`` nor one seen
        before equals it (nulls: True, they are not ids); records the new ones."""
        first = np.ones(len(values), dtype=bool)
        present, hashes = _hashed(values)
        earliest = np.zeros(len(hashes), dtype=bool)
        earliest[np.unique(hashes, return_index=True)[1]] = True  # first in this batch
        keep = earliest & ~self._holds(hashes)
        first[present] = keep
        self._add(np.sort(hashes[keep]))
        return first

    def contains(self, values: pa.Array) -> np.ndarray:
        """For each value, True if it was seen before (nulls: False); records nothing."""
        found = np.zeros(len(values), dtype=bool)
        present, hashes = _hashed(values)
        found[present] = self._holds(hashes)
        return found

    def update(self, other: SeenValues) -> None:
        """Add every value ``other`` has seen."""
        self._add(other._hashes[~self._holds(other._hashes)])

    def _holds(self, hashes: np.ndarray) -> np.ndarray:
        if not len(self._hashes):
            return np.zeros(len(hashes), dtype=bool)
        at = np.minimum(np.searchsorted(self._hashes, hashes), len(self._hashes) - 1)
        return self._hashes[at] == hashes

    def _add(self, new: np.ndarray) -> None:
        """Insert ``new``: sorted, unique hashes not held yet (a merge, no re-sort)."""
        self._hashes = np.insert(self._hashes, np.searchsorted(self._hashes, new), new)


def _hashed(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the non-null values, and their 64-bit hashes."""
    present = np.flatnonzero(pc.is_valid(values).to_numpy(zero_copy_only=False))
    if len(present) == 0:
        return present, np.empty(0, dtype=np.uint64)
    texts = values.take(pa.array(present)).to_numpy(zero_copy_only=False).astype(object)
    return present, pd.util.hash_array(texts)


REJECTED_SCHEMA = pa.schema([
    ("source_row", pa.int64()),
    ("review_id", pa.string()),
    ("text", pa.string()),
    ("label_raw", pa.string()),
    ("failed_expectations", pa.list_(pa.string())),
    ("reason", pa.string()),
])
# Rejected rows as written to quarantine/rows/: where they came from and when.
QUARANTINE_SCHEMA = REJECTED_SCHEMA.append(pa.field("source_file", pa.string())).append(
    pa.field("source_sha256", pa.string())).append(
    pa.field("quarantined_at", pa.timestamp("us", tz="UTC")))




class SuiteError(Exception):
    """The expectation suite is invalid or an expectation could not be evaluated."""


def load_suite_config(path: Path) -> dict:
    """Read the suite JSON; errors name the file."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SuiteError(f"cannot read expectation suite {path}: {exc}") from exc
    if not isinstance(config.get("expectations"), list):
        raise SuiteError(f"expectation suite {path} has no 'expectations' list")
    return config


def expectation_name(config: dict) -> str:
    column = config.get("kwargs", {}).get("column")
    return f"{config['type']}({column})" if column else config["type"]


@dataclass
class ValidatedBatch:
    valid: pa.Table
    rejected: pa.Table


@dataclass
class ReviewValidator:
    """A Great Expectations suite bound to an in-memory data source, built once per run.

    ``require_label`` adds a not-null expectation on ``label`` (training data).
    """

    suite_config: dict
    parameters: dict = field(default_factory=dict)
    require_label: bool = False

    def __post_init__(self) -> None:
        with heavy_import("great_expectations"):  # seconds: only when validating
            import great_expectations as gx
        from great_expectations.execution_engine import pandas_execution_engine

        # For every batch it loads, GX's pandas engine hashes the whole DataFrame (every
        # review's text, twice per validation) into a "pandas_data_fingerprint" batch
        # marker, for frames under HASH_THRESHOLD bytes. No reviewflow result reads the
        # markers; on long reviews the hashing is a large share of the suite's time.
        pandas_execution_engine.HASH_THRESHOLD = 0
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        configs = list(self.suite_config["expectations"])
        if self.require_label:
            configs.append({"type": "expect_column_values_to_not_be_null",
                            "kwargs": {"column": "label"}})
        self.unique_columns = [c["kwargs"]["column"] for c in configs if c["type"] == UNIQUE]
        row_level = [c for c in configs if c["type"] != UNIQUE]
        try:
            self._suite = gx.ExpectationSuite(
                name=self.suite_config.get("name", "reviews"),
                expectations=[_build_expectation(c) for c in row_level])
        except Exception as exc:  # GX raises many types for a malformed expectation
            raise SuiteError(f"invalid expectation in suite: {exc}") from exc
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        # In memory, and without tqdm bars: a batch job's log is no place for them.
        context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            progress_bars=ProgressBarsConfig(globally=False)))
        asset = context.data_sources.add_pandas("reviews").add_dataframe_asset("batch")
        self._batch_definition = asset.add_batch_definition_whole_dataframe("whole")

    def validate(self, batch: pa.Table, seen_ids: dict[str, SeenValues],
                 source_name: str = "") -> ValidatedBatch:
        """Split ``batch`` into valid and rejected rows.

        ``seen_ids`` maps each unique-checked column to the values already seen in
        this file (``SeenValues``, or a set of values to start from); it is updated in
        place, so pass the same dict for every batch of a file. ``source_name``
        prefixes each rejection reason (the file's name).
        """
        return self.validate_many([(batch, seen_ids, source_name)])[0]

    def validate_many(self, items: list[tuple[pa.Table, dict[str, SeenValues], str]]
                      ) -> list[ValidatedBatch]:
        """``validate`` for several batches (of one file or of many) in one suite run.

        Great Expectations' cost is mostly fixed per run (building its metric graph),
        whatever the rows: for an inbox of small files, one run over
        all of them instead of one per file. The row-level expectations see each row
        alone, so the result is the same as batch by batch; uniqueness is checked per
        item against its own ``seen_ids`` (items of one file share one dict, in order).
        """
        if not items:
            return []
        failures: list[dict[int, list[str]]] = [{} for _ in items]
        frames = []
        for item, (batch, _, _) in enumerate(items):
            for row, error in zip(batch.column("source_row").to_pylist(),
                                  batch.column("read_error").to_pylist()):
                if error is not None:
                    failures[item].setdefault(row, []).append(f"readable_row: {error}")
            frame = batch.drop_columns(["label_raw", "read_error"]).to_pandas()
            frames.append(frame.assign(_item=item))
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        result = self._batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
            self._suite, expectation_parameters=self.parameters,
            result_format={"result_format": "COMPLETE",
                           "unexpected_index_column_names": ["_item", "source_row"]})
        for outcome in result.results:
            config = outcome.expectation_config
            name = expectation_name({"type": config.type, "kwargs": config.kwargs})
            if outcome.exception_info and outcome.exception_info.get("raised_exception"):
                raise SuiteError(f"expectation {name} could not be evaluated: "
                                 f"{outcome.exception_info.get('exception_message')}")
            if outcome.success:
                continue
            rows = outcome.result.get("unexpected_index_list") or []
            expected = outcome.result.get("unexpected_count")
            if expected is not None and len(rows) != expected:
                # A good/bad split that lost rows would silently drop or pass reviews.
                raise SuiteError(f"{name}: {expected} rows failed but {len(rows)} were listed")
            for found in rows:
                failures[int(found["_item"])].setdefault(int(found["source_row"]), []).append(name)

        validated = []
        for item, (batch, seen_ids, source_name) in enumerate(items):
            for column in self.unique_columns:
                seen = seen_ids.get(column)
                if not isinstance(seen, SeenValues):
                    seen = seen_ids[column] = SeenValues(seen or ())
                first = seen.first_seen(batch.column(column).combine_chunks())
                repeated = batch.column("source_row").to_numpy()[~first]
                for row in repeated.tolist():
                    failures[item].setdefault(row, []).append(f"{UNIQUE}({column})")
            validated.append(_split(batch, failures[item], source_name))
        return validated


def _build_expectation(config: dict):
    import great_expectations.expectations as gxe

    class_name = "".join(part.capitalize() for part in config["type"].split("_"))
    expectation_class = getattr(gxe, class_name, None)
    if expectation_class is None:
        raise SuiteError(f"unknown expectation type {config['type']!r}")
    return expectation_class(**config.get("kwargs", {}))


def _split(batch: pa.Table, failures: dict[int, list[str]], source_name: str) -> ValidatedBatch:
    if not failures:
        return ValidatedBatch(batch, pa.Table.from_pylist([], REJECTED_SCHEMA))
    failed_rows = pa.array(sorted(failures), pa.int64())
    is_failed = pc.is_in(batch.column("source_row"), value_set=failed_rows)
    rejected = batch.filter(is_failed)
    rows = rejected.column("source_row").to_pylist()
    names = [failures[row] for row in rows]
    prefix = f"{source_name} " if source_name else ""
    reasons = [f"{prefix}row {row}: failed {', '.join(found)}" for row, found in zip(rows, names)]
    rejected_table = pa.Table.from_arrays([
        rejected.column("source_row"), rejected.column("review_id"), rejected.column("text"),
        rejected.column("label_raw"), pa.array(names, pa.list_(pa.string())),
        pa.array(reasons, pa.string()),
    ], schema=REJECTED_SCHEMA)
    return ValidatedBatch(batch.filter(pc.invert(is_failed)), rejected_table)


def with_source(rejected: pa.Table, source_file: str, sha256: str, at: datetime) -> pa.Table:
    """Add the source file, its hash and the time to rejected rows."""
    n = rejected.num_rows
    return (rejected.append_column("source_file", pa.repeat(pa.scalar(source_file), n))
            .append_column("source_sha256", pa.repeat(pa.scalar(sha256), n))
            .append_column("quarantined_at",
                           pa.repeat(pa.scalar(at, pa.timestamp("us", tz="UTC")), n)))



"""Section 4, ``validation``: Great Expectations time per 100,000 rows.

``ReviewValidator.validate`` (the packaged suite, and the id-uniqueness check across the
file) on 100,000 IMDB rows with labels as ``NORMALIZED_SCHEMA`` batches of 50,000
(``--quick``: 20,000 in batches of 10,000), after a 1,000-row warm-up.
"""

from __future__ import annotations

import time

from benchmarks.common import Bench, log, md_table, rate

TITLE = "4. Validation cost (Great Expectations)"
NEEDS_SHARED_DATA = True


def run(bench: Bench) -> dict:
    """Great Expectations time per 100,000 rows: ``ReviewValidator.validate`` on IMDB rows."""
    import pyarrow as pa

    from flows.common import build_validator
    from tasks.reading import NORMALIZED_SCHEMA
    from tasks.settings import Settings

    reviews, sizes = bench.reviews(), bench.sizes
    total, batch_rows = sizes.validation_rows, sizes.validation_batch_rows
    started = time.perf_counter()
    validator = build_validator(Settings())
    build_seconds = time.perf_counter() - started

    def batch(first_row: int, rows: int) -> pa.Table:
        index = [(first_row - 1 + i) % len(reviews) for i in range(rows)]
        repeat = [(first_row - 1 + i) // len(reviews) for i in range(rows)]
        part = reviews.iloc[index]
        labels = part["label"].astype("int8").to_numpy()
        return pa.table({
            "source_row": pa.array(range(first_row, first_row + rows), pa.int64()),
            "review_id": pa.array([f"{i}-r{k}" for i, k in zip(part["review_id"], repeat)],
                                  pa.string()),
            "text": pa.array(part["text"], pa.string()),
            "label": pa.array(labels, pa.int8()),
            "label_raw": pa.array([str(v) for v in labels], pa.string()),
            "read_error": pa.nulls(rows, pa.string()),
        }, schema=NORMALIZED_SCHEMA)

    batches = [batch(first, min(batch_rows, total - first + 1))
               for first in range(1, total + 1, batch_rows)]
    started = time.perf_counter()
    validator.validate(batch(1, 1_000), {}, source_name="warm-up")
    warmup_seconds = time.perf_counter() - started
    log(f"validation: {total:,} rows in {len(batches)} batches of {batch_rows:,}")
    seen: dict[str, set[str]] = {}
    per_batch, rejected = [], 0
    for table in batches:
        started = time.perf_counter()
        checked = validator.validate(table, seen, source_name="bench")
        per_batch.append(time.perf_counter() - started)
        rejected += checked.rejected.num_rows
    seconds = sum(per_batch)
    per_100k = seconds * 100_000 / total
    log(f"validation: {seconds:.2f} s for {total:,} rows = {per_100k:.2f} s per 100,000 rows")
    return {"rows": total, "batch_rows": batch_rows, "batches": len(batches),
            "labels_present": True, "build_validator_seconds": round(build_seconds, 2),
            "first_call_seconds_1000_rows": round(warmup_seconds, 3),
            "batch_seconds": [round(s, 3) for s in per_batch], "seconds": round(seconds, 3),
            "seconds_per_100k_rows": round(per_100k, 2),
            "rows_per_second": rate(total, seconds), "rows_rejected": rejected}


def render(data: dict) -> list[str]:
    lines = [f"`ReviewValidator.validate` (the packaged suite through Great Expectations, plus "
             f"the id-uniqueness check across the file) on {data['rows']:,} IMDB rows with labels, "
             f"as `NORMALIZED_SCHEMA` batches of {data['batch_rows']:,}, after a 1,000-row warm-up.",
             ""]
    lines += md_table(["figure", "value"], [
        ["seconds per 100,000 rows", data["seconds_per_100k_rows"]],
        ["rows/s", round(data["rows_per_second"])],
        ["seconds per batch", ", ".join(f"{s:.2f}" for s in data["batch_seconds"])],
        ["building the validator (GX context, suite), s", data["build_validator_seconds"]],
        ["first call (1,000 rows), s", data["first_call_seconds_1000_rows"]],
        ["rows rejected (expected 0)", data["rows_rejected"]],
    ])
    return lines

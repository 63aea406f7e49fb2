"""The late labels of ``labeled/`` joined to the scores of ``scored/`` by ``review_id``.

The match rule (docs/monitoring.md, "Production accuracy"):

- a review id labeled in several rows of ``labeled/`` takes the label of the last one, in
  the order retraining reads the files (by path) and the rows of a file: a file of
  corrections named after the one it corrects (``labels-2025-06-02.csv`` after
  ``labels-2025-06-01.csv``) wins;
- each model version is matched with its own latest score of the id (``scored_at``; a
  tie goes to the part read last): a version credited once per review however often it
  scored it (a file uploaded again under another name), and each version that scored a
  review credited with it, so two champions are each measured on the reviews they scored;
- the slice of a review is the script most of its letters are in, by the drift
  monitor's own rule (``tasks.monitoring.main_scripts``), on the labeled text; ``none``
  for a text without letters;
- the week is the Monday (UTC) of the week the version scored the review.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.layout import SCORED_PARTS_GLOB
from tasks.monitoring import SCRIPTS, letters_per_row, main_scripts
from tasks.reading import UnreadableFileError, is_review_file, iter_review_batches
from tasks.scoring.schema import SCORED_SCHEMA
from tasks.settings import Settings
from tasks.storage.local import readable_name

NO_LETTERS = "none"  # the slice of a text without letters (main_scripts gives -1)
SLICES = (*SCRIPTS, NO_LETTERS)
SCORE_COLUMNS = ["review_id", "predicted_label", "model_version", "scored_at"]
# One row per model version, week and slice: what production_accuracy/ holds per version.
CELL_SCHEMA = pa.schema([
    ("model_version", pa.string()),
    ("week", pa.date32()),
    ("script", pa.string()),
    ("rows", pa.int64()),
    ("correct", pa.int64()),
])


@dataclass
class LateLabels:
    """The usable labels of ``labeled/``, one per review id (``review_id``, ``label``,
    ``text``), and what reading them met."""

    table: pa.Table
    files: int = 0
    rows_read: int = 0
    rows_unusable: int = 0  # no id, no label or one not understood, or not parsed
    rows_relabeled: int = 0  # rows whose id a later row labels again (the later one counts)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


@dataclass
class Join:
    """What the join found: ``cells`` (``CELL_SCHEMA``) and its counts."""

    cells: pa.Table
    labels: LateLabels
    scored_rows_read: int
    matched_scores: int  # (review, version) pairs: the rows the cells count
    matched_reviews: int  # labeled reviews some version scored
    seconds: float

    def counts(self) -> dict:
        """The join's counts, for a summary or ``monitor --json``."""
        labels = self.labels
        return {"labeled_files": labels.files, "labeled_rows_read": labels.rows_read,
                "labeled_rows_unusable": labels.rows_unusable,
                "labeled_rows_relabeled": labels.rows_relabeled,
                "labeled_reviews": labels.table.num_rows,
                "labeled_files_unreadable": len(labels.unreadable),
                "scored_rows_read": self.scored_rows_read,
                "matched_reviews": self.matched_reviews,
                "matched_scores": self.matched_scores, "seconds": round(self.seconds, 3)}


def read_late_labels(folder, settings: Settings) -> LateLabels:
    """Every usable label under ``folder`` (a local ``Path`` or an ``ObjectPath``), the
    last one of each review id. A file that cannot be read is named in ``unreadable``
    and left where it is (retraining quarantines it)."""
    empty = pa.table({"review_id": pa.array([], pa.string()), "label": pa.array([], pa.int8()),
                      "text": pa.array([], pa.string())})
    found = LateLabels(empty)
    paths = sorted((p for p in folder.rglob("*") if is_review_file(p)), key=str) \
        if folder.exists() else []
    kept = []
    for path in paths:
        batches = []
        try:
            for batch in iter_review_batches(path, settings.columns, settings.read_batch_rows,
                                             settings.max_decompressed_bytes,
                                             encodings=settings.encodings,
                                             detect_encoding=settings.detect_encoding,
                                             max_text_chars=settings.max_text_chars):
                found.rows_read += batch.num_rows
                good = batch.filter(usable_labels(batch)).select(["review_id", "label", "text"])
                found.rows_unusable += batch.num_rows - good.num_rows
                batches.append(good)
        except UnreadableFileError as exc:
            found.unreadable.append((readable_name(path.name), exc.reason))
            continue
        found.files += 1
        kept.extend(batches)
    if not kept:
        return found
    table = pa.concat_tables(kept)
    order = pa.array(np.arange(table.num_rows))
    last = table.append_column("order", order).group_by("review_id").aggregate(
        [("order", "max")])["order_max"]
    found.rows_relabeled = table.num_rows - len(last)
    found.table = table.take(pc.take(last, pc.sort_indices(last)))
    return found


def usable_labels(batch: pa.Table) -> pa.Array:
    """Rows of a read batch that can be matched and counted: parsed, with an id, a
    text and a label read as 0 or 1."""
    parsed = pc.is_null(batch["read_error"])
    labeled = pc.fill_null(pc.is_in(batch["label"], value_set=pa.array([0, 1], pa.int8())),
                           False)
    named = pc.greater(pc.utf8_length(pc.fill_null(batch["review_id"], "")), 0)
    return pc.and_(pc.and_(parsed, labeled), pc.and_(named, pc.is_valid(batch["text"])))


def matching_scores(scored_folder, ids: pa.Array) -> tuple[pa.Table, int]:
    """The rows of ``scored/`` (``SCORE_COLUMNS``) whose review id is in ``ids``, and how
    many rows were read. Only the committed parts are read, four columns of each."""
    import pyarrow.parquet as pq

    parts, read = [], 0
    lookup = pc.SetLookupOptions(value_set=ids)
    if scored_folder.exists():
        for part in sorted(scored_folder.glob(SCORED_PARTS_GLOB), key=str):
            with part.open("rb") as stream:
                # the schema: a part written with float64 labels reads as int8 too
                table = pq.read_table(stream, columns=SCORE_COLUMNS, schema=SCORED_SCHEMA)
            read += table.num_rows
            parts.append(table.filter(pc.is_in(table["review_id"], options=lookup)))
    if not parts:
        return pa.table({name: pa.array([], type) for name, type in
                         (("review_id", pa.string()), ("predicted_label", pa.int8()),
                          ("model_version", pa.string()),
                          ("scored_at", pa.timestamp("us", tz="UTC")))}), read
    return pa.concat_tables(parts, promote_options="permissive"), read


SLICE_CHUNK = 10_000  # texts whose letters are counted at once: each pass copies them


def slices_of(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The slice name of each text (``SLICES``): the drift monitor's main script."""
    main = np.concatenate([main_scripts(letters_per_row(texts.slice(start, SLICE_CHUNK)))
                           for start in range(0, len(texts), SLICE_CHUNK)] or [np.zeros(0, int)])
    return np.asarray(SLICES, dtype=object)[np.where(main >= 0, main, len(SCRIPTS))]


def week_of(moments) -> np.ndarray:
    """The Monday (UTC) of each moment's week, as ``datetime64[D]``."""
    days = np.asarray(moments, dtype="datetime64[us]").astype("datetime64[D]")
    # 1970-01-01 was a Thursday: days since a Monday, modulo 7.
    return days - ((days.astype(np.int64) + 3) % 7).astype("timedelta64[D]")


def accuracy_cells(labels: pa.Table, scores: pa.Table) -> tuple[pa.Table, int, int]:
    """``CELL_SCHEMA`` rows from ``labels`` (one per id, with text) and the ``scores`` of
    those ids (``SCORE_COLUMNS``, any number per id and version); also the matched
    (review, version) pairs and the matched reviews."""
    import pandas as pd

    if scores.num_rows == 0 or labels.num_rows == 0:
        return CELL_SCHEMA.empty_table(), 0, 0
    frame = scores.to_pandas()
    frame["order"] = np.arange(len(frame))
    latest = (frame.sort_values(["scored_at", "order"], kind="stable")
              .drop_duplicates(["review_id", "model_version"], keep="last"))
    ids = pa.array(latest["review_id"].unique(), pa.string())
    matched = labels.filter(pc.is_in(labels["review_id"], value_set=ids))
    truth = pd.DataFrame({"review_id": matched["review_id"].to_numpy(zero_copy_only=False),
                          "label": matched["label"].to_numpy(zero_copy_only=False),
                          "script": slices_of(matched["text"])})
    joined = latest.merge(truth, on="review_id", how="inner", validate="many_to_one")
    joined["week"] = week_of(joined["scored_at"].dt.tz_convert("UTC").dt.tz_localize(None))
    joined["correct"] = (joined["predicted_label"].astype(np.int64)
                         == joined["label"].astype(np.int64)).astype(np.int64)
    cells = (joined.groupby(["model_version", "week", "script"], sort=True)["correct"]
             .agg(rows="size", correct="sum").reset_index())
    table = pa.table({
        "model_version": pa.array(cells["model_version"], pa.string()),
        "week": pa.array([date.fromisoformat(str(w)[:10]) for w in cells["week"]], pa.date32()),
        "script": pa.array(cells["script"], pa.string()),
        "rows": pa.array(cells["rows"], pa.int64()),
        "correct": pa.array(cells["correct"], pa.int64()),
    }, schema=CELL_SCHEMA)
    return table, len(joined), matched.num_rows


def join_late_labels(labeled_folder, scored_folder, settings: Settings) -> Join:
    """Read the late labels, the scores of their ids, and count them per model version,
    week and slice (the rule in this module's docstring)."""
    started = time.perf_counter()
    labels = read_late_labels(labeled_folder, settings)
    scores, read = matching_scores(scored_folder, labels.table["review_id"])
    cells, pairs, reviews = accuracy_cells(labels.table, scores)
    return Join(cells, labels, read, pairs, reviews, time.perf_counter() - started)

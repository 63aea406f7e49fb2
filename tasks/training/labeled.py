"""Reading ``labeled/`` (and ``unlabeled/``) for training: every valid review, and what was read.

Plain I/O without Prefect: the retraining flow passes its validator and its logger.
Rejected rows go to ``quarantine/training/part-<sha>.parquet`` (``quarantine/unlabeled/``
for ``unlabeled/``; rewritten on every run,
so they are never counted twice); a file that cannot be read at all is moved to
quarantine (``tasks.state.quarantine.quarantine_file``).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from tasks.errors import NoLabeledDataError
from tasks.layout import DataLayout, part_name
from tasks.reading import (
    ReadReport,
    UnreadableFileError,
    describe_supported,
    is_review_file,
    iter_review_batches,
)
from tasks.settings import Settings
from tasks.state.backend import open_state
from tasks.state.quarantine import quarantine_file
from tasks.storage.local import StagedParquet, file_sha256, readable_name
from tasks.validation import QUARANTINE_SCHEMA, ReviewValidator, with_source

# The columns training keeps: "group" is the review's movie or product, or null; "slice"
# its value of the slice column (tasks.training.slices), or null.
KEPT_COLUMNS = ["review_id", "text", "label", "group", "slice"]
UNLABELED_COLUMNS = ["review_id", "text", "group"]


def read_labeled_reviews(settings: Settings, validator: ReviewValidator,
                         logger: logging.Logger | logging.LoggerAdapter
                         ) -> tuple[pd.DataFrame, dict]:
    """All valid labeled reviews (``KEPT_COLUMNS``) and counts of what was read.

    ``stats`` holds files read and quarantined, rows read, rejected, with generated ids
    and with a group, the encodings met, rows whose id another file also uses, and
    ``content_sha256``, a fingerprint of every file's name and content. Ids are unique
    within a file only, as for scoring: the same id in two files is two reviews, both
    kept (files of two years both numbered from 1). Raises ``NoLabeledDataError`` when
    no file gives a usable review.
    """
    layout = DataLayout.of(settings)
    reviews, stats = _read_folder(layout.labeled, layout.training_rejects, KEPT_COLUMNS,
                                  settings, validator, logger)
    if reviews is None:
        raise NoLabeledDataError(
            f"no usable labeled reviews in {layout.labeled}; add review files "
            f"{describe_supported()} with text and label (0/1 or negative/positive) columns "
            "(review_id optional)")
    return reviews, stats


def read_unlabeled_reviews(settings: Settings, validator: ReviewValidator,
                           logger: logging.Logger | logging.LoggerAdapter
                           ) -> tuple[pd.DataFrame, dict]:
    """Every valid review of ``unlabeled/`` (``UNLABELED_COLUMNS``: a label column, if a
    file has one, is not read), with the same counts as ``read_labeled_reviews``; an
    empty frame when the folder holds none. Rejected rows go to
    ``quarantine/unlabeled/``."""
    layout = DataLayout.of(settings)
    reviews, stats = _read_folder(layout.unlabeled, layout.unlabeled_rejects,
                                  UNLABELED_COLUMNS, settings, validator, logger)
    if reviews is None:
        reviews = pd.DataFrame({column: pd.Series(dtype=object) for column in UNLABELED_COLUMNS})
    return reviews, stats


def _read_folder(folder, rejects_folder, columns: list[str], settings: Settings,
                 validator: ReviewValidator, logger: logging.Logger | logging.LoggerAdapter
                 ) -> tuple[pd.DataFrame | None, dict]:
    """The valid rows (``columns``) of every review file under ``folder``, or None when no
    file gives one; rejected rows to ``rejects_folder``, unreadable files to quarantine."""
    layout = DataLayout.of(settings)
    # The quarantine records of labeled files go where the scoring runs' records go:
    # the SQLite ledger, or the state database of REVIEWFLOW_STATE_URL.
    state = open_state(settings.state_url, layout)
    try:
        return _read_files(folder, rejects_folder, columns, settings, validator, logger, state)
    finally:
        state.close()


def _read_files(folder, rejects_folder, columns: list[str], settings: Settings,
                validator: ReviewValidator, logger: logging.Logger | logging.LoggerAdapter,
                ledger) -> tuple[pd.DataFrame | None, dict]:
    layout = DataLayout.of(settings)
    frames, stats = [], {"files": 0, "files_quarantined": 0, "rows_read": 0, "rows_rejected": 0,
                         "rows_id_generated": 0, "rows_with_group": 0, "encodings": {}}
    now = datetime.now(UTC)
    contents = []  # (name, sha256) of every file read: the content fingerprint
    paths = sorted(p for p in folder.rglob("*") if is_review_file(p)) if folder.exists() else []
    for path in paths:
        sha256 = file_sha256(path)
        name = readable_name(path.name)  # what rows and logs record: a name pyarrow can write
        rejected = StagedParquet(rejects_folder / part_name(sha256), QUARANTINE_SCHEMA)
        seen: dict = {}  # column -> SeenValues, filled by the validator
        kept, read, dropped = [], 0, 0
        found = ReadReport()
        try:
            for batch in iter_review_batches(path, settings.columns, settings.read_batch_rows,
                                             settings.max_decompressed_bytes,
                                             encodings=settings.encodings,
                                             detect_encoding=settings.detect_encoding,
                                             max_text_chars=settings.max_text_chars,
                                             sha256=sha256, report=found, with_group=True):
                checked = validator.validate(batch, seen, source_name=name)
                kept.append(checked.valid.select(columns))
                rejected.write(with_source(checked.rejected, name, sha256, now))
                read += batch.num_rows
                dropped += checked.rejected.num_rows
        except UnreadableFileError as exc:
            rejected.abort()
            logger.warning("quarantined %s file %s: %s", folder.name, name, exc.reason)
            quarantine_file(path, layout, exc.reason, sha256, ledger)
            stats["files_quarantined"] += 1
            continue
        rejected.commit()
        contents.append(f"{readable_name(str(path.relative_to(folder)))}\t{sha256}")
        frame = pa.concat_tables(kept).to_pandas()
        stats["rows_with_group"] += int(frame["group"].notna().sum())
        frames.append(frame)
        stats["files"] += 1
        stats["rows_read"] += read
        stats["rows_rejected"] += dropped
        if found.ids_generated:  # no id column: ids made from the content hash and row
            stats["rows_id_generated"] += read
        if found.encoding:
            stats["encodings"][found.encoding] = stats["encodings"].get(found.encoding, 0) + 1
        logger.info("%s: %d rows, %d rejected%s", name, read, dropped,
                    ", ids generated" if found.ids_generated else "")
    # Ids and labels are fingerprinted per part (metrics.json "parts"); this also
    # notices a text corrected under the same id.
    stats["content_sha256"] = hashlib.sha256("\n".join(contents).encode()).hexdigest()
    if not frames:
        return None, stats
    reviews = pd.concat(frames, ignore_index=True)
    # Counted, never dropped: the validator already keeps one row per id within a file.
    stats["ids_repeated_across_files"] = int(reviews["review_id"].duplicated(keep=False).sum())
    if stats["ids_repeated_across_files"]:
        logger.info("%d rows share their review_id with a row of another file of %s; each "
                    "is kept as a review of its own (ids are unique within a file)",
                    stats["ids_repeated_across_files"], folder.name)
    return reviews, stats

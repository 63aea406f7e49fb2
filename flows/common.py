"""Pieces both flows use: settings from parameters, the validator, whole-file quarantine."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from tasks.inbox import release_claim_folder
from tasks.layout import DataLayout, day_of, kept_name, reason_file
from tasks.ledger import Ledger
from tasks.objectstore import ObjectPath
from tasks.settings import Settings
from tasks.storage import move_file_keeping, write_json_atomic
from tasks.validation import ReviewValidator, load_suite_config


@dataclass(kw_only=True)
class RowCounts:
    """What happened to the rows of a file or of one shard of it."""

    rows_read: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    positives: int = 0  # scored rows predicted positive
    labeled: int = 0    # scored rows that carried a label
    correct: int = 0    # ... and whose prediction matched it
    rows_id_generated: int = 0  # rows read whose review_id was generated (no id column)

    def add(self, other: RowCounts) -> None:
        for name in (f.name for f in fields(RowCounts)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class FileOutcome(RowCounts):
    file: str
    status: str  # scored | already scored | quarantined | unsupported | busy | read
    seconds: float = 0.0
    encoding: str = ""  # the text encoding it was read in ("" for Parquet)
    detail: str = ""
    # Where the file's work ran (README, "Scaling out"): its shards, and the Dask worker
    # addresses ("local" for the flow's own process), hosts and devices they ran on.
    shards: int = 0
    workers: str = ""
    hosts: str = ""
    devices: str = ""


def build_validator(settings: Settings, require_label: bool = False) -> ReviewValidator:
    return ReviewValidator(load_suite_config(settings.suite_path),
                           parameters={"max_text_chars": settings.max_text_chars},
                           require_label=require_label)


def settings_from(data_dir: str | None = None, **overrides) -> Settings:
    """Settings from the environment, with the flow's non-empty parameters on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        given["data_dir"] = data_dir  # a folder or a URL (s3://bucket/prefix); see Settings
    return Settings(**given)


def quarantine_file(path: Path | ObjectPath, layout: DataLayout, reason: str, sha256: str | None,
                    ledger: Ledger) -> FileOutcome:
    """Move a whole file to ``quarantine/files/<date>/`` beside a JSON reason file.

    Never replaces an earlier quarantined file or its reason: names that clean to one,
    or one name twice in a day, get ``~2``, ``~3``, … (``move_file_keeping``).
    """
    target_dir = layout.quarantined_files(day_of(datetime.now(UTC)))
    name = kept_name(sha256, path.name) if sha256 else path.name
    target = move_file_keeping(path, target_dir, name)
    release_claim_folder(path)
    write_json_atomic(reason_file(target),
                      {"file": path.name, "sha256": sha256, "reason": reason,
                       "quarantined_at": datetime.now(UTC).isoformat()})
    if sha256:
        ledger.record_quarantined_file(sha256, path.name, reason, str(target))
    return FileOutcome(path.name, "quarantined" if sha256 else "unsupported", detail=reason)


def terminal_progress(total: int, what: str, details: str):
    """A rich progress bar on standard error, or None when that is not a terminal.

    ``details`` is a rich format string over the task's fields, updated by the caller
    (``bar.update(task, advance=1, **fields)``). Prefect workers, cron and CI logs get
    plain log lines instead: a bar there would be noise.
    """
    import sys

    if total <= 0 or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn(details),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False)


"""Pieces both flows use: settings from parameters, the validator, a progress bar."""

from __future__ import annotations

from tasks.settings import Settings
from tasks.validation import ReviewValidator, load_suite_config


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



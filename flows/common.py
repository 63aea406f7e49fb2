"""Pieces both flows use: the validator, a progress bar, a flow module run as the command.

Their settings, from parameters and the environment, are built by ``flows.configuration``.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from tasks.settings import Settings
from tasks.validation import ReviewValidator, load_suite_config


def build_validator(settings: Settings, require_label: bool = False) -> ReviewValidator:
    return ReviewValidator(load_suite_config(settings.suite_path),
                           parameters={"max_text_chars": settings.max_text_chars},
                           require_label=require_label)


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


def run_as_command(command: str) -> NoReturn:
    """``python -m flows.<flow> ARGS``: the same as ``reviewflow COMMAND ARGS``.

    This process becomes ``python -m flows.cli COMMAND ARGS`` (an exec: the same process
    id, the CLI's exit status), so a flow module never imports the CLI that imports it,
    and the flow is not loaded twice (once as ``__main__``, once by the CLI).
    """
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "flows.cli", command, *sys.argv[1:]])

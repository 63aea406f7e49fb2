"""Pieces both flows use: settings from parameters, the validator, a progress bar."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from tasks.settings import Settings
from tasks.state.url import without_password
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



def environment_settings() -> Settings:
    """The settings this process's environment gives (``REVIEWFLOW_*`` over the defaults),
    for a flow's parameter defaults: a deployment then shows the values a run will use.

    Read once, when the flow's module is imported (on a worker, in the worker's
    environment). An environment that does not validate gives the plain defaults here,
    so the module still imports; the run itself then reports what is wrong. A state
    URL's password is left out.
    """
    from pydantic import ValidationError

    from tasks.errors import ReviewflowError

    try:
        settings = Settings()
    except (ValidationError, ReviewflowError):  # a state URL libpq cannot read, say
        return Settings.model_construct()
    # Prefect keeps and shows a run's parameters: the password stays in the environment,
    # where Settings finds it again (Settings._password_from_environment).
    return settings.model_copy(update={"state_url": without_password(settings.state_url)})


def run_as_command(command: str) -> NoReturn:
    """``python -m flows.<flow> ARGS``: the same as ``reviewflow COMMAND ARGS``.

    This process becomes ``python -m flows.cli COMMAND ARGS`` (an exec: the same process
    id, the CLI's exit status), so a flow module never imports the CLI that imports it,
    and the flow is not loaded twice (once as ``__main__``, once by the CLI).
    """
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "flows.cli", command, *sys.argv[1:]])

"""Pieces both flows use: settings from parameters, the validator, a progress bar, and
the line a command interrupted while running one says."""

from __future__ import annotations

import os
import sys
from pathlib import Path
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

    try:
        settings = Settings()
    except ValidationError:
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


def interrupted_line(under_way: dict, terminated: bool = False) -> str:
    """The one line a command interrupted by Ctrl-C (or SIGTERM: ``terminated``) prints:
    what was kept and what the next run does. ``under_way``: what the command was doing,
    ``{"command": "score", "layout": …, "ledger_totals": …}`` (``Ledger.totals()``
    before the run) or ``{"command": "retrain", "registry": …, "champion": …}`` (the
    champion before it), or empty before either had started."""
    how = "stopped by SIGTERM" if terminated else "interrupted"
    if under_way.get("command") == "retrain":
        return f"retrain {how}: {_retrain_kept(under_way)}"
    if under_way.get("command") == "score":
        return f"score {how}: {_score_kept(under_way)}"
    return how


def _score_kept(under_way: dict) -> str:
    from tasks.errors import ReviewflowError
    from tasks.layout import CLAIMS_FOLDER
    from tasks.state.backend import open_state
    from tasks.state.checkpoints import kept_rows
    from tasks.state.inbox import is_claimed, list_inbox

    layout, before = under_way["layout"], under_way["ledger_totals"]
    unarchived: set[str] = set()
    checkpointed = (0, 0)
    try:
        state = open_state(under_way.get("state_url"), layout)
        try:
            rows = state.totals()["rows_read"] - before["rows_read"]
            unarchived = {entry.source_file for entry in state.unarchived()}
            checkpointed = kept_rows(state)
        finally:
            state.close()
    except ReviewflowError:  # the state database is gone too: the line still says what is kept
        rows = "?"
    kept = (f"the files committed before the stop are kept ({rows} rows, in scored/ and "
            f"quarantine/; their inputs in archive/)")
    # Shards of unfinished files that stopped runs finished (tasks.state.checkpoints).
    resumable = (f"; {checkpointed[0]} rows of {checkpointed[1]} unfinished files are kept "
                 "in finished checkpoints: the next run scores only the rest of those files"
                 if checkpointed[0] else "")
    if not isinstance(layout.incoming, Path):
        return f"{kept}; the next `reviewflow score` finishes the rest{resumable}"
    left = list_inbox(layout.incoming, 0).ready
    # Stopped between a commit and its archive move: scored, only the move is left.
    archiving = [path for path in left if is_claimed(path) and path.name in unarchived]
    left = [path for path in left if path not in archiving]
    claimed = sum(1 for path in left if is_claimed(path))
    line = (f"{kept}; the next `reviewflow score` finishes the rest ({len(left)} files: "
            f"{claimed} this run had claimed, in incoming/{CLAIMS_FOLDER}/, and "
            f"{len(left) - claimed} not started)")
    if archiving:
        line += (f"; {len(archiving)} committed files are still in incoming/{CLAIMS_FOLDER}/: "
                 "the next run archives them without scoring them again")
    return line + resumable


def _retrain_kept(under_way: dict) -> str:
    registry, before = under_way["registry"], under_way["champion"]
    now = registry.current_version()
    if now != before:
        return (f"it had promoted {now} (now the champion, replacing {before or 'none'}) "
                f"before the stop; `reviewflow models list` shows its figures")
    half = (registry.staging.exists() and any(registry.staging.iterdir()))
    return (f"no version was promoted; the champion is still {before or 'none (no model yet)'}"
            + ("; the half-written version is removed by the next `reviewflow retrain`"
               if half else "")
            + ". Run `reviewflow retrain` again to train")

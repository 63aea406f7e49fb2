"""How the ``reviewflow`` command starts and ends, around its commands (``flows.cli``).

- ``quiet_defaults``: environment defaults that keep expected noise off the terminal.
- ``quiet_reported_tracebacks``: Prefect's terminal traceback of an error the command
  reports in one line itself is left to the Prefect run's log.
- ``starting_flow``: the Prefect API (``flows.prefect_api``: the user's server, or a
  temporary one started in a child process) comes up while the flow and the heavy
  libraries (TensorFlow, Great Expectations) import.
- ``run_program``: runs the command under its SIGINT and SIGTERM handlers
  (``flows.stopping.Stop``), then ends the process without the interpreter's teardown,
  with the command's exit code.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn

from flows.stopping import Stop, print_whole_lines, raise_if_stopped
from tasks.heavy_imports import (
    heavy_import,
    import_in_background,
    release_import_lock_left_held,
)
from tasks.native_logs import quiet_by_default


def quiet_defaults(verbose: bool) -> None:
    """Defaults that keep expected noise off a user's terminal; their own settings win.

    No usage analytics or telemetry (this host may have no internet: Prefect's temporary
    server would log an ERROR for each failed send), and no TensorFlow C++ logs below
    FATAL (a host without a GPU would print a CUDA probe ERROR on every run; the flow
    logs the device it scores on instead). ``--verbose`` keeps TensorFlow's errors.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    quiet_by_default(verbose)


class _ReportedByTheCommand(logging.Filter):
    """Drops a log record carrying an error the command reports itself, in one line
    naming what to do (``flows.cli.main``): a state database gone mid-run, a full disk.
    Prefect logs it with its traceback ("Encountered exception during execution") before
    the command's line; on the terminal that buries the line. The Prefect run's own
    log (its API handler) keeps the record, traceback and all."""

    def __init__(self, reported: tuple[type[BaseException], ...]):
        super().__init__()
        self.reported = reported

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, self.reported)


def reported_errors() -> tuple[type[BaseException], ...]:
    """The errors ``flows.cli.main`` reports in one line of its own."""
    import sqlite3

    from tasks.errors import ReviewflowError

    return ReviewflowError, OSError, sqlite3.OperationalError


def quiet_reported_tracebacks(reported: tuple[type[BaseException], ...]) -> None:
    """Filter ``reported`` errors' records out of the terminal's log handlers (those of
    the root logger, where Prefect's console handler sits). ``--verbose`` skips this."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ReportedByTheCommand) for f in handler.filters):
            handler.addFilter(_ReportedByTheCommand(reported))


@contextlib.contextmanager
def starting_flow(quiet: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Around the import of a flow: the Prefect API starts before it, and is answering
    after it (one line and exit 4 if there is none: ``PrefectAPI.connect``). ``quiet``:
    the errors whose Prefect tracebacks stay off the terminal (``quiet_reported_tracebacks``).

    From the main thread, first: a temporary server starts on the other core while this
    process imports (see flows/prefect_api.py), and TensorFlow and Great Expectations
    import in background threads meanwhile (``warm_heavy_imports``). The garbage
    collector is paused until all of it is imported (``tasks.heavy_imports``).
    """
    from flows.prefect_api import PrefectAPI

    # All of this imports (tasks/heavy_imports.py); a second flow in one process, none.
    with heavy_import("prefect", "tensorflow", "great_expectations"):
        api = PrefectAPI.launch()
        imported = warm_heavy_imports()
        yield  # the caller imports its flow: Prefect, with its logging set up
        raise_if_stopped()  # a stop an import dropped: no waiting for the API, no flow
        if quiet:
            quiet_reported_tracebacks(quiet)
        api.connect()  # before any flow
        imported()


# How often the wait for the warm-up threads checks for an import lock left held.
IMPORT_LOCK_CHECK_SECONDS = 2.0


def warm_heavy_imports() -> Callable[[], None]:
    """Import TensorFlow and Great Expectations in background threads, one each; return
    a function that waits for both.

    Until its first flow runs, this process imports Prefect and waits for its API (a
    temporary server starting in a child process); meanwhile it would leave the second
    core idle. The two heaviest libraries import then, not inside the flow. Each has a
    thread of its own: much of an import is loading and initializing native libraries,
    so the two overlap.

    Call the returned function before the flow: the flow imports the same packages, and
    two threads importing modules of one package that import each other can deadlock.
    Python then raises in one thread and leaves modules half made: a flow that reached
    Great Expectations before the warm-up thread had finished importing it would print
    "Exception in thread warm-gx" and never end.
    """
    def load_validation() -> None:
        with heavy_import("great_expectations"):
            import great_expectations  # noqa: F401

    def load_model() -> None:
        import tasks.model.serving  # noqa: F401 - TensorFlow, Keras and the registered layers

    # Their warnings are ignored (import_in_background): about the libraries' optional
    # parts, and the filters that would hide them race with this thread's.
    threads = [import_in_background(load, name)
               for name, load in (("warm-gx", load_validation), ("warm-tf", load_model))]

    def imported() -> None:
        for thread in threads:
            # An import that failed raises again, with its message, in the flow. A
            # thread still importing after a while may be waiting for the import lock
            # this thread holds, left held by an interrupted import step: released,
            # and said, rather than waited for for ever.
            thread.join(IMPORT_LOCK_CHECK_SECONDS)
            while thread.is_alive():
                if holds := release_import_lock_left_held():
                    logging.getLogger(__name__).warning(
                        "the start-up imports were waiting for Python's import lock, "
                        "which this process's main thread held outside any import "
                        "(%d hold(s) an interrupted import step left); released it", holds)
                thread.join(IMPORT_LOCK_CHECK_SECONDS)
    return imported


def run_program(main: Callable[[Stop], int]) -> NoReturn:
    """``main(stop)`` under the command's SIGINT and SIGTERM handlers (``Stop.run``),
    then an exit that skips the interpreter's teardown.

    A process that imported TensorFlow spends a noticeable time tearing it down after
    its last line is printed (module and C++ static destructors; BENCHMARKS.md section
    5). Nothing of reviewflow's needs that teardown: every file is written, fsynced and
    closed, and every ledger transaction committed, before the command returns. So once
    Python has done what an exit must (Prefect's log and event queues drained, the exit
    handlers run: the temporary server stopped, and so on), the last exit handler
    flushes the output and ends the process with the command's exit code, or a stop's
    when one came during those handlers. ``print`` writes a whole line at a time
    (``print_whole_lines``), so the line a stop says is never glued to one being printed.
    """
    status = {"code": 1}  # an unexpected exception: Python prints it, the exit code is 1
    print_whole_lines()
    stop = Stop()
    # Registered first, so it runs last (exit handlers run in reverse order).
    atexit.register(_exit_without_teardown, status, stop)
    # SIGTERM unwinds like Ctrl-C instead of ending the process on the spot, which would
    # leave its Prefect run "Running" for ever on a server.
    try:
        status["code"] = stop.run(main)
    except SystemExit as exc:
        status["code"] = (exc.code if isinstance(exc.code, int)
                          else 0 if exc.code is None else 1)  # a message: Python prints it
        if stop.ended:
            _exit_now()
        raise
    sys.exit(status["code"])


def _exit_now() -> None:
    """End an interrupted command once its line is printed, without joining its threads.

    Python's exit first waits for every worker thread, and a task thread caught mid-file
    by the interrupt can wait for ever on the flow that stopped under it. Nothing it
    holds needs finishing: its parts are temporaries the next run sweeps, its claim is
    picked up by the next run, as after a SIGKILL. The exit handlers still run
    (the temporary server stopped), the last of them ending the process with the exit
    code; Prefect's queues of log lines and events are drained before them.
    """
    _drain_prefect_queues()
    atexit._run_exitfuncs()


# How long an interrupted command waits for Prefect's last log lines and events to be sent.
DRAIN_SECONDS = 5.0


def _drain_prefect_queues() -> None:
    """Send what Prefect still queues (the run's last log lines, its Crashed state's
    events) before the exit handlers stop a temporary API server. A normal exit drains
    them in threading's exit hooks, which ``_exit_now`` skips; without this, a stop that
    comes right after the run's last lines leaves them to a server being stopped, and
    Prefect prints "Error logging to API" after the command's one line."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # an API already gone: nothing more to send
            worker.drain_all(timeout=DRAIN_SECONDS)


def _exit_without_teardown(status: dict, stop: Stop) -> None:
    import logging

    logging.shutdown()  # its own exit handler was registered before this one: it would not run
    if (signum := stop.received()) is not None and not stop.ended:  # came once main() was done
        status["code"] = stop.say(signum)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(status["code"])

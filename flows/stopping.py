"""How the ``reviewflow`` command stops on Ctrl-C (SIGINT) or SIGTERM, wherever it is.

A signal's Python handler runs in the main thread between two bytecodes of whatever
code runs there: an import, Prefect's engine, a library's finalizer, pydantic turning a
model into JSON. Not all of that code lets the KeyboardInterrupt through as it is:
pydantic's serializers turn it into ``PydanticSerializationError``, Python drops one
raised in a finalizer, Prefect's engine drops one that comes after the flow's last
state. So the command does not rely on the exception alone:

- ``Stop`` notes every SIGINT and SIGTERM the moment it arrives (Python's own C handler
  writes the signal's number to a pipe, whichever Python handler then runs). Whatever
  exception the command then ends with, or none, it ends as stopped: one line saying
  what was kept, exit 130 (SIGTERM: 143), no traceback (``Stop.end``).
  ``raise_if_stopped`` raises a stop that was dropped, at a flow's start and before
  each file or epoch.
- A signal that lands in the import system's own steps, in a finalizer, or inside
  pydantic while a Prefect run is under way is raised again a moment later, elsewhere:
  no import lock is left held, and Prefect's engine sees the KeyboardInterrupt itself
  and marks its run Crashed.
- Once the command's own code has returned (Python's exit handlers running: the
  temporary API server stopping, Prefect's queues draining), a signal only changes the
  exit code and adds the line; a second one ends the process at once, as it does after
  any first stop.
- ``Terminated``: SIGTERM raised like Ctrl-C's KeyboardInterrupt, so both unwind the
  same way: locks released, Prefect told the run crashed, the temporary server stopped.
- ``critical``: a step a stop waits for, since cut in two it would leave what only the
  next run puts right (a file's parts published, its ledger record not yet made: the
  interrupted line would count fewer rows than ``scored/`` holds). It takes
  milliseconds; a stop that lands inside is noted and raised as it ends.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from tasks.heavy_imports import IMPORT_MACHINERY

# A stop can interrupt Prefect's engine between making a coroutine and awaiting it; the
# warning Python gives as it is collected says nothing a user can act on.
NEVER_AWAITED = re.compile(r"coroutine '.*' was never awaited")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# How soon a signal is raised again after landing where it would be dropped or turned
# into another exception.
REDELIVER_SECONDS = 0.05

# Packages that turn a KeyboardInterrupt raised in Python code they call into their own
# exception: pydantic's serializers (called from its Rust core) raise
# PydanticSerializationError for any exception, and Prefect passes its settings and
# every API payload through them.
WRAPPING_PACKAGES = frozenset({"pydantic", "pydantic_core"})
# Functions Python itself calls and whose exception it wraps in another: creating a
# class turns one raised in an attribute's ``__set_name__`` into a RuntimeError (a
# dataclass's fields, a pydantic model's: while Prefect's task engine is imported at a
# flow's first task, or while Prefect loads its plugins as it is imported, where any
# Exception is printed with its traceback and passed over). Never raised there, in a
# run or not: as an Exception, any ``except Exception`` would take the stop for an error.
WRAPPED_BY_PYTHON = frozenset({"__set_name__"})
# The modules of Prefect's engine that run a flow or a task and decide its final state
# by the exception's type.
RUN_ENGINES = frozenset({"prefect.flow_engine", "prefect.task_engine"})
# Packages a KeyboardInterrupt would leave half updated: rich (Prefect's console log
# handler) writes its buffer and then empties it, and one raised between the two has
# the next log line write the last one again.
KEPT_WHOLE = frozenset({"rich"})

# Packages whose context managers keep a stack of scopes beside the interpreter's:
# TensorFlow's device and graph scopes set the scope and then push it, and a
# KeyboardInterrupt between the two has the enclosing scope's exit raise a RuntimeError
# ("Exiting device scope without proper scope nesting") that replaces it. A stop is not
# raised inside their ``__enter__`` or ``__exit__`` (short: a moment later it lands
# outside).
SCOPE_KEEPING = frozenset({"tensorflow", "keras"})
SCOPE_METHODS = frozenset({"__enter__", "__exit__"})



def exit_code(signum: int) -> int:
    """The shell's convention for a command a signal stopped: 128 + its number."""
    return 128 + signum


class Terminated(KeyboardInterrupt):
    """SIGTERM (a supervisor stopping the command, ``kill``), raised in the main thread
    like Ctrl-C's KeyboardInterrupt."""


def as_exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def print_whole_lines() -> None:
    """Have ``print`` write each line in one piece, in this process.

    Python's own ``print`` writes a line's text and its end apart, and a signal's handler
    can run between the two. On a terminal that line's text would come after the
    command's stop line, without its newline (the shell's prompt after it); with
    unbuffered output (``PYTHONUNBUFFERED=1`` or ``python -u``, which containers and
    process supervisors often set) the stop line would be glued to its end. One write
    per call leaves a stop before a line or after it, never inside.
    """
    builtins.print = _print_in_one_write


def _print_in_one_write(*values, sep: str | None = " ", end: str | None = "\n", file=None,
                        flush: bool = False) -> None:
    stream = sys.stdout if file is None else file
    if stream is None:  # no standard output (pythonw, a closed descriptor): as print does
        return
    text = (" " if sep is None else sep).join(map(str, values))
    stream.write(text + ("\n" if end is None else end))
    if flush:
        stream.flush()


def say_stopped(signum: int, command: str | None = None, under_way: dict | None = None) -> int:
    """Print the line of a command stopped by ``signum``, with what was kept
    (``interrupted_line``: ``under_way`` is what the command was doing); return its
    exit code."""
    terminated = signum == signal.SIGTERM
    try:
        line = interrupted_line(under_way or {}, terminated)
    except Exception:  # noqa: BLE001 - what was kept is a courtesy; the exit code is not
        line = "stopped by SIGTERM" if terminated else "interrupted"
    # What the output still holds goes first: the stop may have come while a line was
    # being written to a terminal slower than the command, and the stop's line is last.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stdout.flush()
    print(f"reviewflow: {command} {line}" if command and not under_way else f"reviewflow: {line}",
          file=sys.stderr)
    return exit_code(signum)


def interrupted_line(under_way: dict, terminated: bool = False) -> str:
    """The one line a command interrupted by Ctrl-C (or SIGTERM: ``terminated``) prints:
    what was kept and what the next run does. ``under_way``: what the command was doing,
    ``{"command": "score", "layout": …, "ledger_totals": …}`` (``Ledger.totals()``
    before the run), ``{"command": "retrain" or "models", "registry": …, "champion": …}``
    (the champion before it; for retrain also ``"latest"``, the latest version), or
    empty before any of them had started.

    It imports only modules the command had imported before it filled ``under_way``: a
    stop can land in the middle of an import, after which importing anything new may
    wait for ever on the import lock of a module left half made, or find a package
    without its submodules.
    """
    how = "stopped by SIGTERM" if terminated else "interrupted"
    if under_way.get("command") == "retrain":
        return f"retrain {how}: {_retrain_kept(under_way)}"
    if under_way.get("command") == "score":
        return f"score {how}: {_score_kept(under_way)}"
    if under_way.get("command") == "rescore":
        return (f"rescore {how}: the files committed before the stop are kept; the next "
                "reviewflow rescore skips them and scores the rest")
    if under_way.get("command") == "models":
        now, before = under_way["registry"].current_version(), under_way["champion"]
        return (f"models {how}: the champion is still {before}" if now == before else
                f"models {how}: the champion is now {now} (it was {before}): the change "
                "was made before the stop")
    return how


class Stop:
    """A command's SIGINT and SIGTERM: its handlers, and the stops it was sent.

    ``run(main)`` runs ``main(stop)`` under the handlers. The command sets ``say`` (its
    line: ``say_stopped`` with what it was doing) and ``traceback`` (``--verbose``: the
    stop's traceback before the line). ``main()`` called as a function makes a ``Stop``
    that is never installed: it notes nothing and only says the line.
    """

    def __init__(self):
        self._pipe: tuple[int, int] | None = None
        self._noted: list[int] = []
        self._resent = 0  # signals this process sent itself again: not new stops
        self.ended = False  # the command is ending as stopped: a further stop ends it at once
        self.say: Callable[[int], int] = say_stopped
        self.traceback = False
        self.deferring = 0  # inside ``critical``: a stop is noted, raised as it ends

    def run(self, main: Callable[[Stop], int]) -> int:
        """``main(self)`` with this stop's handlers installed; its exit code, or
        SystemExit with a stop's. A signal that lands outside ``main()`` (before or
        after it, in this frame or in the exit handlers) is noted, not raised."""
        self._install()
        try:
            self.raise_if_stopped()
            code = main(self)
        except BaseException as exc:  # whatever a library made of a stop, or none came
            if self.ended or (signum := self.stopped_by(exc)) is None:
                raise
            self.end(signum, exc)
        if (signum := self.received()) is not None:  # dropped by a library on the way
            self.end(signum, None)
        return code

    def match(self, text: str) -> bool:
        """As an "ignore" filter's message: ``NEVER_AWAITED`` once a stop is received."""
        return NEVER_AWAITED.match(text) is not None and self.received() is not None

    def _install(self) -> None:
        # First, before any thread starts: in every filter list a ``catch_warnings``
        # saves (tasks.heavy_imports says why); not under the user's own -W options.
        if not sys.warnoptions:
            warnings.filters.insert(0, ("ignore", self, RuntimeWarning, None, 0))
        read, write = self._pipe = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        # Python's C handler writes each caught signal's number here before any Python
        # handler runs: noted even while Prefect's own SIGTERM handler is in place.
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handle)
        previous = sys.unraisablehook

        def hook(unraisable) -> None:
            # A KeyboardInterrupt raised in a finalizer (a __del__, a weakref callback)
            # cannot unwind the command: Python prints it as "Exception ignored" and
            # goes on. Sent again to the main thread, it unwinds as any other.
            kind = unraisable.exc_type
            if kind is not None and issubclass(kind, KeyboardInterrupt):
                self._send_again(signal.SIGTERM if issubclass(kind, Terminated)
                                 else signal.SIGINT)
                return
            previous(unraisable)

        sys.unraisablehook = hook

    def received(self) -> int | None:
        """The first SIGINT or SIGTERM this process was sent, or None."""
        while self._pipe is not None:
            try:
                chunk = os.read(self._pipe[0], 512)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._noted.extend(number for number in chunk if number in STOP_SIGNALS)
        return self._noted[0] if self._noted else None

    def handle(self, signum: int, frame) -> None:
        """The handler of SIGINT and SIGTERM."""
        first = self.received()
        if self.ended or frame is None or not _inside(frame.f_back if _is_run(frame)
                                                      else frame, _is_run):
            # Ending already, or outside main(): noted (the exit code and the line say
            # it), not raised into the exit handlers; a second stop ends it at once.
            if len(self._noted) - self._resent > 1:
                os._exit(exit_code(first))
            return
        if self.deferring:  # noted; ``critical`` raises it once its step is done
            return
        if _raise_later(frame):
            self._send_again(signum)
            return
        raise as_exception(signum)

    def _send_again(self, signum: int) -> None:
        """``signum`` again to the main thread, from another thread a moment later:
        raised now, it would be dropped or turned into something else again. A signal,
        not a flag: it also wakes the main thread if it is waiting on a lock by then."""
        self._resent += 1
        resend = threading.Timer(REDELIVER_SECONDS, signal.pthread_kill,
                                 (threading.main_thread().ident, signum))
        resend.daemon = True
        resend.start()

    def raise_if_stopped(self) -> None:
        """Raise a stop that a library dropped (before a long step: the stop stops)."""
        if not self.ended and (signum := self.received()) is not None:
            raise as_exception(signum)

    def stopped_by(self, exc: BaseException) -> int | None:
        """The signal that ended the command with ``exc``, or None if none did: the
        stop noted (whatever ``exc`` a library made of it), else ``exc`` itself if it is
        a KeyboardInterrupt."""
        if (signum := self.received()) is not None:
            return signum
        if isinstance(exc, KeyboardInterrupt):
            return signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        return None

    def end(self, signum: int, exc: BaseException | None) -> NoReturn:
        """End the command stopped by ``signum``: its line, its exit code (SystemExit)."""
        self.ended = True
        if self.traceback and exc is not None:
            traceback.print_exception(exc)
        sys.exit(self.say(signum))


def _is_run(frame) -> bool:
    return frame.f_code is Stop.run.__code__


def _waiting_for_an_import() -> bool:
    """Whether the main thread waits for a module another thread is importing (the
    warm-up threads of ``flows.startup``): it holds no lock of that module yet, so an
    exception raised there unwinds cleanly, and it may wait for seconds."""
    bootstrap = sys.modules["_frozen_importlib"]  # importlib._bootstrap, always loaded
    main = threading.get_ident()
    lock = getattr(bootstrap, "_blocking_on", {}).get(main)
    return lock is not None and getattr(lock, "owner", main) != main


def _raise_later(frame) -> bool:
    """Whether a stop that lands at ``frame`` is sent again instead of raised there: in
    the import system's own steps (unless the main thread only waits there), in code
    whose state it would leave half updated (rich; a TensorFlow scope's enter or exit),
    inside a ``__set_name__`` (Python would make it a RuntimeError), or where pydantic
    would make it an error of its own that reaches Prefect's engine, which would mark the
    run Failed instead of Crashed. Outside a run pydantic's serializers are left alone:
    Prefect's own import spends seconds in pydantic, and what it makes of the stop there
    ends the command as stopped all the same (``Stop.stopped_by``)."""
    if frame.f_globals.get("__name__") in IMPORT_MACHINERY:
        return not _waiting_for_an_import()
    modules, functions, in_scope, callee = set(), set(), False, None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        modules.add(module)
        functions.add(frame.f_code.co_name)
        if frame.f_code.co_name in SCOPE_METHODS:
            # A class's own method, or contextlib's running a generator (the callee).
            owner = callee if module == "contextlib" and callee is not None else module
            in_scope = in_scope or owner.partition(".")[0] in SCOPE_KEEPING
        callee, frame = module, frame.f_back
    packages = {name.partition(".")[0] for name in modules}
    return (bool(packages & KEPT_WHOLE) or in_scope or bool(functions & WRAPPED_BY_PYTHON)
            or bool(packages & WRAPPING_PACKAGES and modules & RUN_ENGINES))


def _inside(frame, test: Callable) -> bool:
    while frame is not None:
        if test(frame):
            return True
        frame = frame.f_back
    return False


def _command_stop() -> Stop | None:
    """The command's ``Stop``, when its handler is in place and this is the main thread."""
    stop = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    if isinstance(stop, Stop) and threading.current_thread() is threading.main_thread():
        return stop
    return None


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A step a stop waits for (see the module's docstring): a SIGINT or SIGTERM that
    lands inside is raised once it is done. A no-op where ``raise_if_stopped`` is one.
    The command's SIGTERM handler is put back first: Prefect's engine, while a flow
    runs, may have its own in place, which would raise inside."""
    stop = _command_stop()
    if stop is None:
        yield
        return
    signal.signal(signal.SIGTERM, stop.handle)
    stop.deferring += 1
    try:
        yield
    finally:
        stop.deferring -= 1
    stop.raise_if_stopped()


def raise_if_stopped() -> None:
    """For a flow's start and its long steps, under the command (a ``Stop`` handles
    SIGINT): the command's SIGTERM handler back in place, and a stop a library dropped
    raised. A no-op in a flow a Prefect worker runs, or off the main thread.

    Prefect's engine puts a SIGTERM handler of its own in place while a flow runs, one
    that raises wherever the signal lands, in pydantic or the import system too; with
    the command's handler the run still ends Crashed, and Prefect's engine puts it back
    when the run ends."""
    stop = _command_stop()
    if stop is not None:
        signal.signal(signal.SIGTERM, stop.handle)
        stop.raise_if_stopped()


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
    # why: what is left is counted from a local inbox's claim folders; a bucket's inbox
    # would cost a listing of every object in it, for a line of a stopped run.
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
    if (trained := registry.latest_version()) != under_way.get("latest", trained):
        return (f"it had trained {trained} before the stop, not promoted (`reviewflow models "
                f"list` says why); the champion is still {before or 'none (no model yet)'}")
    half = (registry.staging.exists() and any(registry.staging.iterdir()))
    return (f"no version was promoted; the champion is still {before or 'none (no model yet)'}"
            + ("; the half-written version is removed by the next `reviewflow retrain`"
               if half else "")
            + ". Run `reviewflow retrain` again to train")

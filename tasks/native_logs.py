"""Hold native libraries' start-up log lines to the level the user asked for.

TensorFlow's shared libraries log while they load, before their logging is set up
(absl's "All log messages before absl::InitializeLog() is called are written to
STDERR"), and those lines ignore ``TF_CPP_MIN_LOG_LEVEL``: every ``import tensorflow``
on a host without a GPU printed six lines (twice "oneDNN custom operations are on" and
"Could not find cuda drivers on your machine, GPU will not be used"), even with the
level at 3. They are written by C++ straight to file descriptor 2, so no Python logging
setting reaches them.

``native_log_filter()`` applies ``TF_CPP_MIN_LOG_LEVEL`` to those lines while a
block runs (the import): file descriptor 2 goes through a pipe whose reader thread
passes every line on at once, except absl-format lines (``I0000 …``, ``W0000 …``)
below the level and absl's preamble line when the level hides warnings. Python's own
stderr goes through the same pipe meanwhile, so nothing else is held back or
reordered. With the level at 0 nothing is filtered.

``quiet_by_default()`` sets the level every process that loads TensorFlow gets when
the user set none (``QUIET_LEVEL``): ``tasks.model.backend`` calls it before the import,
so the ``reviewflow`` command, a worker's flow run, a Dask worker and
``deployments/serve.py``'s runs all get it, whoever started them.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# TensorFlow's C++ log level where the user set none: FATAL lines only. Below it, a host
# without a GPU prints the CUDA probe's ERROR ("failed call to cuInit") in every process
# that looks for a device; the flows log the device they score on instead.
QUIET_LEVEL = 3
# What `reviewflow --verbose` shows: TensorFlow's errors too.
VERBOSE_LEVEL = 2

# absl's line prefix: severity letter, month and day (0000 before logging is set up).
_ABSL_LINE = re.compile(rb"^([IWEF])\d{4} ")
_ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}


def quiet_by_default(verbose: bool = False) -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` to ``QUIET_LEVEL`` (``VERBOSE_LEVEL`` with ``verbose``)
    unless the user set it: before TensorFlow loads, since it reads the level once."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(VERBOSE_LEVEL if verbose else QUIET_LEVEL))


def min_log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as a number (0 show all ... 3 errors hidden); 0 if unset."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def is_hidden(line: bytes, level: int) -> bool:
    """Whether a native log ``line`` is below ``level`` (a ``TF_CPP_MIN_LOG_LEVEL``).

    Fatal lines are never hidden; lines that are not absl's pass.
    """
    if line.startswith(_ABSL_PREAMBLE):
        return level >= 1
    match = _ABSL_LINE.match(line)
    return bool(match) and _SEVERITY[match.group(1)] < min(level, 3)


@contextmanager
def native_log_filter(level: int | None = None) -> Iterator[None]:
    """Run the block with file descriptor 2 filtered by ``is_hidden`` at ``level``
    (default ``min_log_level()``); a no-op at level 0 or where stderr has no descriptor.

    Other threads may write and the process may exit while the block runs (a command
    that fails fast while TensorFlow still imports in a background thread): an exit
    handler then ends the filter, so what they wrote is passed on, not lost.
    """
    level = min_log_level() if level is None else level
    try:
        target = sys.__stderr__.fileno() if sys.__stderr__ else None
    except (AttributeError, OSError, ValueError):  # stderr replaced by a non-file
        target = None
    if level <= 0 or target != 2:
        yield
        return
    active = _Filter(level)
    try:
        yield
    finally:
        active.stop()


class _Filter:
    """File descriptor 2 through a pipe and a reader thread, until ``stop()``."""

    def __init__(self, level: int):
        sys.__stderr__.flush()
        self._lock = threading.Lock()
        self._original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._reader = threading.Thread(target=self._forward, args=(read_end, level),
                                        name="native-log-filter", daemon=True)
        self._reader.start()
        atexit.register(self.stop)

    def _forward(self, read_end: int, level: int) -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                _write_all(self._original, b"".join(line + b"\n" for line in lines
                                                    if not is_hidden(line, level)))
            if pending and not is_hidden(pending, level):
                _write_all(self._original, pending)

    def stop(self) -> None:
        """Put file descriptor 2 back and pass on what is still in the pipe. Idempotent."""
        with self._lock:
            if self._original is None:
                return
            atexit.unregister(self.stop)
            if sys.__stderr__:
                sys.__stderr__.flush()
            os.dup2(self._original, 2)  # the pipe's last writer closes: the reader drains
            self._reader.join(timeout=5)
            if not self._reader.is_alive():  # else a child process still holds the pipe
                os.close(self._original)     # and the reader may still write there
            self._original = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

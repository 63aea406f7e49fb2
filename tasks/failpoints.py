"""Named crash and pause points for the crash-consistency tests.

With ``REVIEWFLOW_FAILPOINT=<name>`` in its environment, a process kills itself with
SIGKILL when it reaches ``failpoint(<name>)``: no cleanup runs, as when a worker is
killed or its machine loses power.

With ``REVIEWFLOW_FAILPOINT_FILE=<file name>`` as well, only a point reached while
that file is worked on (a caller that passes ``file``) kills: a file that kills every
run that reads it, as one that exhausts memory would.

Two points cover every write whose temporary a kill can leave behind; name the file
with ``REVIEWFLOW_FAILPOINT_FILE`` to choose which write. ``storage:written``: a one-shot
write's bytes are durable (tasks.storage.local ``atomic_path``, ``write_bytes_atomic``,
a copy across file systems): locally still under the temporary name, on object storage
already whole under the final one. ``storage:staged``: a staged part's temporary is
whole (``StagedParquet.finish``), not yet published by a commit.

With ``REVIEWFLOW_PAUSEPOINT=<name>`` and ``REVIEWFLOW_PAUSEPOINT_DIR=<folder>``, it
instead writes ``<folder>/reached`` and waits (at most ``PAUSE_LIMIT_SECONDS``) until
``<folder>/go`` exists, so a test can change the world at exactly that point (replace
a file while it is read) without guessing at timing. Unset (always, outside tests),
both do nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

FAILPOINT_VARIABLE = "REVIEWFLOW_FAILPOINT"
FAILPOINT_FILE_VARIABLE = "REVIEWFLOW_FAILPOINT_FILE"
PAUSEPOINT_VARIABLE = "REVIEWFLOW_PAUSEPOINT"
PAUSEPOINT_DIR_VARIABLE = "REVIEWFLOW_PAUSEPOINT_DIR"
PAUSE_LIMIT_SECONDS = 600


def failpoint(name: str, file: str | None = None) -> None:
    if os.environ.get(FAILPOINT_VARIABLE) == name and os.environ.get(
            FAILPOINT_FILE_VARIABLE) in (None, file):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSEPOINT_VARIABLE) == name:
        folder = Path(os.environ[PAUSEPOINT_DIR_VARIABLE])
        if (folder / "reached").exists():
            return  # pause once per process: the first time the point is reached
        (folder / "reached").touch()
        deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
        while not (folder / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

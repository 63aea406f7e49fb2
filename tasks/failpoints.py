"""Named crash points for the crash-consistency tests.

With ``REVIEWFLOW_FAILPOINT=<name>`` in its environment, a process kills itself with
SIGKILL when it reaches ``failpoint(<name>)``: no cleanup runs, as when a worker is
killed or its machine loses power. Unset (always, outside tests), it does nothing.
"""

from __future__ import annotations

import os
import signal

FAILPOINT_VARIABLE = "REVIEWFLOW_FAILPOINT"


def failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)

"""Keep glibc's allocator from giving every thread of a scoring process a heap of its own.

glibc's ``malloc`` gives a thread that meets a locked heap ("arena") a new one, up to
eight per core, and memory freed in one arena is not reused by threads of another.
The threads that predict slices at once (``tasks.model.serving.SLICES_IN_FLIGHT``), the
read, the write and Prefect's own threads then each hold freed memory of their own: on a
file of a million reviews the peak RSS rose past the benchmark's memory target
(BENCHMARKS.md, section 3), with no gain in speed.

``limit_malloc_arenas()`` caps the arenas at ``MALLOC_ARENAS`` for the rest of the
process, as ``MALLOC_ARENA_MAX`` would have from its start: ``tasks.model.backend``
calls it before TensorFlow loads, so the ``reviewflow`` command, a worker's flow run, a
Dask worker and ``deployments/serve.py``'s runs all get it. A ``MALLOC_ARENA_MAX`` the
user set wins; elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

# Arenas a scoring process may have: the main one and one more, shared by the threads.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt() parameter for the arena limit (<malloc.h>)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process; whether it was applied
    (False where the user set ``MALLOC_ARENA_MAX``, or the C library is not glibc)."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False  # glibc read the user's value at start; there is nothing to set
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
        libc.gnu_get_libc_version  # noqa: B018 - glibc's own symbol: raises elsewhere
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_ARENA_MAX, arenas) == 1

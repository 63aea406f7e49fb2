"""glibc's malloc arenas capped in processes that load TensorFlow (tasks/native_memory.py).

Each case runs in a fresh interpreter (arenas already made in this one stay): six threads
hold memory at once, then glibc's ``malloc_stats()`` lists the process's arenas.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import PROJECT

PROBE = """
import ctypes, sys, threading
{setup}
together = threading.Barrier(6)
def hold():
    blocks = [ctypes.create_string_buffer(200_000) for _ in range(20)]
    together.wait()
threads = [threading.Thread(target=hold) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="malloc arenas are glibc's (Linux)")


def arenas_after(setup: str, **env: str) -> int:
    """The arenas of a fresh interpreter that ran ``setup``, then six threads at once."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], cwd=PROJECT,
                          env={**{k: v for k, v in os.environ.items()
                                  if k != "MALLOC_ARENA_MAX"}, **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def test_threads_share_the_capped_arenas():
    from tasks.native_memory import MALLOC_ARENAS

    assert arenas_after("") > MALLOC_ARENAS  # glibc's default: an arena per thread
    limited = "from tasks.native_memory import limit_malloc_arenas\nassert limit_malloc_arenas()"
    assert arenas_after(limited) <= MALLOC_ARENAS


def test_a_users_malloc_arena_max_wins():
    kept = "from tasks.native_memory import limit_malloc_arenas\nassert not limit_malloc_arenas()"
    assert 2 < arenas_after(kept, MALLOC_ARENA_MAX="4") <= 4


def test_loading_tensorflow_through_tasks_model_caps_the_arenas():
    from tasks.native_memory import MALLOC_ARENAS

    assert arenas_after("import tasks.model.backend") <= MALLOC_ARENAS

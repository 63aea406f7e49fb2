"""The command's start-up and exit (flows/startup.py), in a plain Python process: no Prefect,
TensorFlow or data root, so each case takes about as long as Python's start."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from conftest import PROJECT

# A command whose interrupt lands while a finalizer runs: Python raises the
# KeyboardInterrupt inside ``__del__`` and, unless run_program sends it again, drops it
# with an "Exception ignored" traceback while the command works on to the end.
LANDS_IN_A_FINALIZER = """
import os, signal, sys, time
from flows.startup import interrupted, run_program

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.{name})
        for _ in range(10_000):
            pass

def main():
    try:
        Finalized()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.01)
        print("worked on to the end")
        return 0
    except KeyboardInterrupt as exc:
        return interrupted(exc, "score", {{}})

run_program(main)
"""


@pytest.mark.parametrize("name, line", [("SIGINT", "reviewflow: score interrupted"),
                                        ("SIGTERM", "reviewflow: score stopped by SIGTERM")])
def test_an_interrupt_that_lands_in_a_finalizer_still_stops_the_command(name, line):
    done = subprocess.run([sys.executable, "-c", LANDS_IN_A_FINALIZER.format(name=name)],
                          cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 128 + getattr(signal, name), done.stdout + done.stderr
    assert "worked on to the end" not in done.stdout
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == line, done.stderr

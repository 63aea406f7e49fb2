"""The command's start-up and exit (flows/startup.py), in a plain Python process: no Prefect,
TensorFlow or data root, so each case takes about as long as Python's start."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from conftest import PROJECT

# A command whose interrupt lands while a finalizer runs: Python raises the
# KeyboardInterrupt inside ``__del__`` and, unless run_program sends it again, drops it
# with an "Exception ignored" traceback while the command works on to the end.
LANDS_IN_A_FINALIZER = """
import functools, os, signal, sys, time
from flows.startup import run_program
from flows.stopping import say_stopped

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.{name})
        for _ in range(10_000):
            pass

def main(stop):
    stop.say = functools.partial(say_stopped, command="score")
    Finalized()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.01)
    print("worked on to the end")
    return 0

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


# A command's main() for run_program, in a plain Python process; PLACE is where the stop
# lands and what the code there makes of it.
STOPPED_AT = """
import atexit, functools, os, signal, sys, time
from flows.startup import run_program
from flows.stopping import say_stopped

def wait(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)

def main(stop):
    stop.say = functools.partial(say_stopped, command="score")
{place}

run_program(main)
"""

PLACES = {
    # pydantic's serializers: a PydanticSerializationError instead of the interrupt
    "wrapped": """
    try:
        os.kill(os.getpid(), signal.{name})
        wait(120)
    except KeyboardInterrupt as exc:
        raise ValueError("Error calling function `_ser_model`: KeyboardInterrupt") from None
    print("worked on to the end")
    return 0""",
    # a library that catches it and goes on: the command's next step stops
    "swallowed": """
    from flows.stopping import raise_if_stopped
    try:
        os.kill(os.getpid(), signal.{name})
        wait(120)
    except KeyboardInterrupt:
        pass
    raise_if_stopped()  # as the flows do before each file, each epoch
    print("worked on to the end")
    return 0""",
    # the command is done and its exit handlers run (the temporary server stopping)
    "exiting": """
    def stopping_the_server():
        os.kill(os.getpid(), signal.{name})
        wait(1)
        print("the server stopped", flush=True)
    atexit.register(stopping_the_server)
    print("worked on to the end")
    return 0""",
    # a second stop while the exit handlers run ends the process at once
    "twice": """
    def stopping_the_server():
        os.kill(os.getpid(), signal.{name})
        wait(0.5)
        os.kill(os.getpid(), signal.{name})
        wait(60)
        print("the server stopped", flush=True)
    atexit.register(stopping_the_server)
    print("worked on to the end")
    return 0""",
}


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("place", PLACES)
def test_a_stop_ends_the_command_as_stopped_whatever_became_of_it(place, name):
    """Whatever a library makes of the KeyboardInterrupt (another exception, nothing)
    and whenever it comes (during the exit handlers too): exit 128 + signal, the
    command's one line last, no traceback; a second stop ends the process at once."""
    script = STOPPED_AT.format(place=PLACES[place].format(name=name))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, capture_output=True,
                          text=True, timeout=300)
    said = done.stdout + done.stderr
    assert done.returncode == 128 + getattr(signal, name), said
    assert "Traceback" not in said and "Exception ignored" not in said, said
    line = "reviewflow: score " + ("interrupted" if name == "SIGINT" else "stopped by SIGTERM")
    if place == "twice":
        assert "the server stopped" not in done.stdout and time.monotonic() - started < 30
        assert line not in done.stderr  # at once: no line
        return
    assert done.stderr.strip().splitlines()[-1] == line, said
    assert ("worked on to the end" in done.stdout) == (place == "exiting"), said
    assert ("the server stopped" in done.stdout) == (place == "exiting"), said


# A command whose stop leaves a coroutine never awaited (Prefect's engine, interrupted
# between making one and awaiting it): Python warns when it is collected as the command
# unwinds, a line beside the stop's own. STOP says whether a stop comes; without one the
# warning is shown.
NEVER_AWAITED = """
import functools, gc, os, signal, time
from flows.startup import run_program
from flows.stopping import say_stopped

async def state_result():
    return None

def main(stop):
    stop.say = functools.partial(say_stopped, command="score")
    pending = state_result()
    try:
        if {stop}:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(120)
    finally:  # as the engine unwinds: what it made is dropped and collected
        del pending
        gc.collect()
    return 0

run_program(main)
"""


def test_a_coroutine_a_stop_left_unawaited_adds_no_warning_beside_the_line():
    stopped = subprocess.run([sys.executable, "-c", NEVER_AWAITED.format(stop=True)],
                             cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr
    assert "never awaited" not in stopped.stderr, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == "reviewflow: score interrupted"
    # Without a stop the same warning is shown: only a stop's unwinding is quieted.
    ran = subprocess.run([sys.executable, "-c", NEVER_AWAITED.format(stop=False)],
                         cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "coroutine 'state_result' was never awaited" in ran.stderr

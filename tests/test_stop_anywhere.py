"""Ctrl-C (SIGINT) and SIGTERM at any point of a command (flows/stopping.py): while it
imports, while its temporary Prefect API starts, while Prefect creates the flow run,
while the model loads, while it scores, between a commit and the next file, and while it
exits. Each time: exit 130 (143), no traceback, the command's one line last, no process
left behind, the Prefect run Crashed; the next run finishes the work, every row once.

The real CLI in a subprocess; each stop waits for the phase it aims at in the command's
own output or data root (a fixed delay counts from the moment its handlers are in place,
read in /proc), so a loaded host shifts nothing. One data root per command and signal:
each stop starts where the one before left off.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PROJECT, SAMPLES

from tasks.native_logs import is_hidden
from tests.helpers import cli_exit_code, layout_of, scored_rows

PREFECT_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| ")
# The last lines a command prints before its exit handlers run.
EXITING = ("run took", "\nreason: ")
MARK = "REVIEWFLOW_STOP_TEST_RUN"  # not a setting: marks this run's processes in /proc


@dataclass
class Stopped:
    code: int
    said: str  # all the command printed
    after: str  # what it printed after the signal


def handlers_in_place(pid: int) -> bool:
    """Whether the process catches SIGTERM: ``Stop`` has installed its handlers."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def processes_marked(mark: str) -> list[int]:
    """The processes whose environment carries ``MARK=mark`` (the command and the
    temporary API server it started, which inherits it)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"{MARK}={mark}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def stop_at(argv: list[str], env: dict, log: Path, signum: int, when) -> Stopped | None:
    """Run ``reviewflow ARGV``; once ``when`` holds (a line in its output, a number of
    seconds after its handlers are in place, or a function of nothing), send ``signum``:
    SIGINT to its process group, as Ctrl-C at a terminal does, SIGTERM to the process,
    as a supervisor does. Then wait for it and for every process it started.

    None if ``when`` is one of ``EXITING`` and the command had ended, with exit 0, before
    the signal could be sent: its exit handlers may take only some milliseconds.
    (tests/test_startup.py stops a command in its exit handlers every time.)"""
    mark = f"{log}"
    env = dict(env, **{MARK: mark, "PYTHONUNBUFFERED": "1"})
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "flows.cli", *argv], cwd=PROJECT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 600

        def ready() -> bool:
            if process.poll() is not None and when in EXITING and process.returncode == 0:
                return True
            assert process.poll() is None, f"ended before {when!r}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"never reached {when!r}"
            if isinstance(when, str):
                return when in log.read_text()
            if callable(when):
                return when()
            return handlers_in_place(process.pid)

        while not ready():
            time.sleep(0.005)
        if isinstance(when, float | int):
            time.sleep(when)
        if process.poll() is not None:
            return None
        before = len(log.read_text())
        if signum == signal.SIGINT:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        code = process.wait(timeout=120)  # seconds when right; minutes when not
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    deadline = time.monotonic() + 10  # a killed child takes a moment to go
    while processes_marked(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_marked(mark), f"left running after {when!r}: {processes_marked(mark)}"
    said = log.read_text()
    return Stopped(code, said, said[before:])


def own_lines(text: str) -> list[str]:
    """The command's own lines: not Prefect's log lines, nor the native libraries'
    start-up lines a library still loading in another thread prints as the process ends."""
    return [line for line in text.splitlines()
            if line.strip() and not PREFECT_LOG_LINE.match(line)
            and "Finished in state" not in line and not is_hidden(line.encode(), 3)]


def check_stopped(stopped: Stopped, signum: int, line: str, when) -> str:
    """Exit 128 + signal, no traceback, one line of its own after the signal, starting
    with ``line``; that line."""
    context = f"stopped at {when!r}:\n{stopped.said[-4000:]}"
    assert stopped.code == 128 + signum, context
    assert "Traceback" not in stopped.said and "Exception ignored" not in stopped.said, context
    assert len(own_lines(stopped.after)) == 1, context
    assert own_lines(stopped.said)[-1] == own_lines(stopped.after)[0], context
    assert own_lines(stopped.after)[0].startswith(line), context
    return own_lines(stopped.after)[0]


def flow_run_states(names: list[str]) -> dict[str, str]:
    """The state type of each named flow run on the session's Prefect server."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async def read() -> dict[str, str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=names)))
            return {run.name: run.state_type.value for run in runs}

    return asyncio.run(read())


def run_names(said: str) -> list[str]:
    return re.findall(r"Beginning flow run '([^']+)'", said)


def how(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else "stopped by SIGTERM"


def archived_any(root: Path):
    archive = layout_of(root).archive
    return lambda: archive.is_dir() and any(p.is_file() for p in archive.rglob("*"))


# Where each stop lands, by signal: together they cover every phase of `score` with
# both signals around the start. "temporary" runs start their own Prefect API (no
# PREFECT_API_URL); the others use the session's server, where their runs are read.
SCORE_STOPS = {
    signal.SIGINT: [(0.5, "temporary"),                      # imports
                    ("Starting temporary server", "temporary"),  # the API starting
                    ("scoring on", "session"),                # the model loading
                    ("archived", "session")],                 # between a commit and the next
    signal.SIGTERM: [(2.0, "temporary"),                      # imports
                     ("Beginning flow run", "session"),       # the flow run just created
                     ("run took", "session")],                # the exit
}
# (Stops while files are scored: tests/test_cli.py, test_an_interrupted_score_says_what_it_kept.)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_stop_anywhere_in_score_ends_in_one_line_and_the_next_run_finishes(
        scoring_root, subprocess_env, tmp_path, signum):
    """`score` stopped in each of its phases (SCORE_STOPS), one stop after another on one
    inbox: each ends in its line, the runs it began Crashed; then every row once."""

    files, rows = 8, 25_000  # each over 1 MiB: scored one by one, not in a bundle
    for f in range(files):
        (layout_of(scoring_root).incoming / f"batch{f}.csv").write_text(
            "review_id,text\n" + "".join(f"{f}-{i},A {'fine' if i % 2 else 'dull'} film "
                                         f"with a cast to match; take {i}.\n"
                                         for i in range(rows)))
    session = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0")
    runs = []
    for n, (when, api) in enumerate(SCORE_STOPS[signum]):
        env = dict(session)
        if api == "temporary":
            env.pop("PREFECT_API_URL")
            env["PREFECT_HOME"] = str(tmp_path / f"prefect-{n}")
        stopped = stop_at(["score", "--data-dir", str(scoring_root)], env,
                          tmp_path / f"score-{n}.log", signum,
                          archived_any(scoring_root) if when == "archived" else when)
        if stopped is None:  # ended before its exit could be stopped
            continue
        line = check_stopped(stopped, signum, f"reviewflow: score {how(signum)}", when)
        if when not in (0.5, 2.0, "Starting temporary server"):  # its ledger was read
            assert "the files committed before the stop are kept" in line, line
        runs += run_names(stopped.said)

    states = flow_run_states(runs)
    # The last stop of SIGTERM's came as it exited, its run done.
    finished = run_names(stopped.said) if stopped and signum == signal.SIGTERM else []
    assert all(states[name] == ("COMPLETED" if name in finished else "CRASHED")
               for name in runs), states

    assert cli_exit_code(["score", "--data-dir", str(scoring_root), "--settle-seconds", "0"]) == 0
    scored = scored_rows(scoring_root, columns=["review_id"]).column("review_id").to_pylist()
    assert sorted(scored) == sorted(f"{f}-{i}" for f in range(files) for i in range(rows))
    assert not [p for p in layout_of(scoring_root).incoming.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_a_stop_anywhere_in_retrain_says_what_became_of_the_champion(
        scoring_root, subprocess_env, tmp_path):
    """Retraining stopped while its temporary API starts and while it trains: the
    champion and the published versions untouched. Stopped as it exits, after a short
    training: the line says what it trained and whether it promoted it."""
    import shutil

    from tasks.training.registry import Registry

    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, scoring_root / "labeled" / sample.name)
    registry = Registry(layout_of(scoring_root).models)
    champion, versions = registry.champion_version(), sorted(registry.versions.iterdir())
    session = dict(subprocess_env, REVIEWFLOW_EPOCHS="400", REVIEWFLOW_PATIENCE="400",
                   REVIEWFLOW_ARCHITECTURE="seed")
    runs = []
    for n, (signum, when, api) in enumerate([
            (signal.SIGINT, "Starting temporary server", "temporary"),
            (signal.SIGTERM, "epoch 1/", "session")]):
        env = dict(session)
        if api == "temporary":
            env.pop("PREFECT_API_URL")
            env["PREFECT_HOME"] = str(tmp_path / f"prefect-{n}")
        stopped = stop_at(["retrain", "--force", "--data-dir", str(scoring_root)], env,
                          tmp_path / f"retrain-{n}.log", signum, when)
        line = check_stopped(stopped, signum, f"reviewflow: retrain {how(signum)}", when)
        assert f"no version was promoted; the champion is still {champion}" in line, line
        runs += run_names(stopped.said)
    assert set(flow_run_states(runs).values()) == {"CRASHED"}, flow_run_states(runs)
    assert registry.champion_version() == champion
    assert sorted(registry.versions.iterdir()) == versions

    stopped = stop_at(["retrain", "--force", "--epochs", "2", "--data-dir", str(scoring_root)],
                      session, tmp_path / "retrain-exit.log", signal.SIGINT, "\nreason: ")
    if stopped is None:  # ended before its exit could be stopped
        return
    line = check_stopped(stopped, signal.SIGINT, "reviewflow: retrain interrupted: ", "exit")
    now, trained = registry.champion_version(), registry.latest_version()
    assert line.endswith(f"it had trained {trained} before the stop, not promoted (`reviewflow "
                         f"models list` says why); the champion is still {champion}") if (
        now == champion) else f"it had promoted {now} (now the champion, replacing {champion})" \
        in line, line
    assert flow_run_states(run_names(stopped.said)) == {run_names(stopped.said)[0]: "COMPLETED"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_stop_in_a_quick_command_ends_in_one_line(scoring_root, subprocess_env, tmp_path,
                                                    signum):
    """`models promote` and `models list` stopped as soon as their handlers are in place
    (reading the command line, the settings, the registry): one line, 130/143 (a stop
    before the command line is read cannot name the command), the champion one of the
    two it can be."""
    from tasks.training.registry import Registry
    from tests.helpers import add_version

    registry = Registry(layout_of(scoring_root).models)
    champion = registry.champion_version()
    other = add_version(scoring_root, "v-other")
    for n, argv in enumerate([["models", "promote", other, "--reason", "try", "--force"],
                              ["models", "list"]]):
        stopped = stop_at([*argv, "--data-dir", str(scoring_root)], subprocess_env,
                          tmp_path / f"models-{n}.log", signum, 0.0)
        after = own_lines(stopped.after)
        if len(after) > 1:  # the stop landed once the command had done its work and said so
            assert stopped.code == 128 + signum and "Traceback" not in stopped.said, after
            assert after[-1].startswith(f"reviewflow: models {how(signum)}"), after
            assert not any(line.startswith("reviewflow:") for line in after[:-1]), after
            continue
        line = check_stopped(stopped, signum, "reviewflow: ", argv)
        assert line == f"reviewflow: {how(signum)}" or line.startswith(
            f"reviewflow: models {how(signum)}"), line
    assert registry.champion_version() in (champion, other)


# A flow whose run is stopped where a library or Python itself would turn the
# KeyboardInterrupt into another exception: inside a pydantic model's serializer (as
# Prefect's engine serializes every API payload), which pydantic turns into a
# PydanticSerializationError, and inside an attribute's __set_name__ while a class is
# made (as when Prefect's task engine is imported at a flow's first task), which Python
# turns into a RuntimeError, and inside a TensorFlow device scope's enter, between
# setting the scope and pushing it, where the enclosing scope's exit would raise a
# RuntimeError of its own in its place (as a stop during training can land).
STOPPED_INSIDE = """
import functools, os, signal, time
from pydantic import BaseModel, model_serializer
from prefect import flow
from flows.startup import run_program
from flows.stopping import raise_if_stopped, say_stopped

STOPPED = []

def stop_here():
    if STOPPED:
        return
    STOPPED.append(True)
    os.kill(os.getpid(), signal.{name})
    for _ in range(100_000):  # the handler runs here, the wrapping code below
        pass

class Payload(BaseModel):
    size: int = 1

    @model_serializer(mode="wrap")
    def serialize(self, handler):
        stop_here()
        return handler(self)

class Named:
    def __set_name__(self, owner, name):
        stop_here()

def in_pydantic():
    Payload().model_dump()

def in_set_name():
    type("Made", (), {{"attribute": Named()}})

def in_a_tensorflow_scope():
    import tensorflow as tf
    from tensorflow.python.eager import context

    set_device = context.Context._set_device

    def set_then_stop(self, *args):  # the scope is set, not yet pushed on its stack
        set_device(self, *args)
        stop_here()

    with tf.device("/CPU:0"):
        context.Context._set_device = set_then_stop
        try:
            with tf.device("/device:CPU:0"):
                pass
        finally:
            context.Context._set_device = set_device

@flow(name="stopped-inside")
def stopped_inside():
    raise_if_stopped()  # as the flows begin: SIGTERM back from Prefect's own handler
    {place}()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.01)
    print("worked on to the end")

def main(stop):
    stop.say = functools.partial(say_stopped, command="score")
    stopped_inside()
    return 0

run_program(main)
"""


@pytest.mark.parametrize("place", ["in_pydantic", "in_set_name", "in_a_tensorflow_scope"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_stop_where_it_would_be_wrapped_during_a_run_crashes_the_run(
        subprocess_env, signum, place):
    """Raised a moment later, outside the wrapping code: Prefect's engine sees the
    interrupt itself and marks the run Crashed (not Failed by a
    PydanticSerializationError or a RuntimeError), and the command says one line."""
    script = STOPPED_INSIDE.format(name=signal.Signals(signum).name, place=place)
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, env=subprocess_env,
                          capture_output=True, text=True, timeout=300)
    said = done.stdout + done.stderr
    assert done.returncode == 128 + signum, said
    assert "Traceback" not in said and "worked on to the end" not in said, said
    assert own_lines(done.stderr)[-1] == f"reviewflow: score {how(signum)}", said
    assert set(flow_run_states(run_names(said)).values()) == {"CRASHED"}, said


# A command stopped, outside any run, inside an attribute's __set_name__ while a class is
# made, under code that prints any Exception and goes on: as Prefect loads its plugins
# when it is imported (pydantic models are made there), and Python turns a
# KeyboardInterrupt raised in __set_name__ into a RuntimeError.
STOPPED_OUTSIDE_A_RUN = """
import os, signal, time, traceback
from flows.startup import run_program

class Named:
    def __set_name__(self, owner, name):
        os.kill(os.getpid(), signal.{name})
        for _ in range(100_000):  # the handler runs here
            pass

def main(stop):
    try:
        type("Made", (), {{"attribute": Named()}})
    except Exception:
        traceback.print_exc()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.01)
    print("worked on to the end")
    return 0

run_program(main)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_stop_that_python_would_wrap_is_raised_outside_the_wrapping_also_outside_a_run(
        signum):
    """Raised a moment later, where it stays a KeyboardInterrupt: no library prints it as
    an error, and the command ends in its one line."""
    script = STOPPED_OUTSIDE_A_RUN.format(name=signal.Signals(signum).name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWFLOW_")}
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == 128 + signum, said
    assert "Traceback" not in said and "worked on to the end" not in said, said
    assert own_lines(done.stderr) == [f"reviewflow: {how(signum)}"], said


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_stop_during_a_commit_waits_for_its_ledger_record(scoring_root, subprocess_env,
                                                             tmp_path, signum):
    """A stop that lands between a file's parts being published and its ledger record
    (a pause point there) waits for the record: the line counts every row in scored/,
    and the next run archives the files without scoring them again."""
    import threading

    from flows.cli import main
    from tests.helpers import good_rows, write_csv

    for name in ("a", "b"):  # small: one bundle, committed in one transaction
        write_csv(layout_of(scoring_root).incoming / f"{name}.csv", good_rows(name, 20))
    pause = tmp_path / "pause"
    pause.mkdir()
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0",
               REVIEWFLOW_PAUSEPOINT="score:parts-published",
               REVIEWFLOW_PAUSEPOINT_DIR=str(pause))

    def published() -> bool:
        if not (pause / "reached").exists():
            return False
        # Go on a moment after the stop is sent: it lands while the commit is paused.
        threading.Timer(1.0, (pause / "go").touch).start()
        return True

    stopped = stop_at(["score", "--data-dir", str(scoring_root)], env,
                      tmp_path / "score.log", signum, published)
    line = check_stopped(stopped, signum, f"reviewflow: score {how(signum)}", "published")
    in_scored = scored_rows(scoring_root, columns=["review_id"]).num_rows
    assert in_scored == 40 and f"are kept ({in_scored} rows" in line, line
    assert "2 committed files are still in incoming/.claimed/" in line, line

    assert main(["score", "--data-dir", str(scoring_root), "--settle-seconds", "0"]) == 0
    scored = scored_rows(scoring_root, columns=["review_id"]).column("review_id").to_pylist()
    assert sorted(scored) == sorted(r["review_id"] for r in good_rows("a", 20)
                                    + good_rows("b", 20))
    assert not [p for p in layout_of(scoring_root).incoming.rglob("*") if p.is_file()]


def test_a_stop_while_a_file_is_quarantined_waits_for_its_reason_and_record(
        scoring_root, subprocess_env, tmp_path):
    """A stop that lands after a file that cannot be read was moved to quarantine/files/
    (a pause point there) waits for its reason file and its ledger record: nothing
    would write them later, since the file has left the inbox."""
    import threading

    from tasks.state.ledger import Ledger
    from tests.helpers import quarantined_copies, quarantined_reasons

    (layout_of(scoring_root).incoming / "broken.parquet").write_bytes(b"not a Parquet file at all")
    pause = tmp_path / "pause"
    pause.mkdir()
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0",
               REVIEWFLOW_PAUSEPOINT="quarantine:moved", REVIEWFLOW_PAUSEPOINT_DIR=str(pause))

    def moved() -> bool:
        if not (pause / "reached").exists():
            return False
        threading.Timer(1.0, (pause / "go").touch).start()
        return True

    stopped = stop_at(["score", "--data-dir", str(scoring_root)], env,
                      tmp_path / "score.log", signal.SIGINT, moved)
    check_stopped(stopped, signal.SIGINT, "reviewflow: score interrupted", "moved")
    assert len(quarantined_copies(scoring_root, "*broken.parquet")) == 1
    assert len(quarantined_reasons(scoring_root)) == 1
    assert Ledger(layout_of(scoring_root).ledger).totals()["files_quarantined"] == 1


# A command that prints long lines for as long as it runs.
PRINTING = """
from flows.startup import run_program

def main(stop):
    while True:
        print("x" * 500)

run_program(main)
"""


def output_of_a_stopped_printer(env: dict, terminal: bool) -> tuple[int, str]:
    """Run PRINTING with its output on a terminal (a pseudo-terminal) or in a file, stop
    it with SIGINT once it has printed 100 kB; its exit code and all it printed."""
    import pty
    import threading

    said = bytearray()
    if terminal:
        reader, writer = pty.openpty()
    else:
        reader, writer = os.pipe()
    process = subprocess.Popen([sys.executable, "-c", PRINTING], cwd=PROJECT, env=env,
                               stdout=writer, stderr=writer)
    os.close(writer)

    def read_all() -> None:
        while True:
            try:
                chunk = os.read(reader, 65536)
            except OSError:  # a terminal whose last writer closed: EIO
                return
            if not chunk:
                return
            said.extend(chunk)

    draining = threading.Thread(target=read_all, daemon=True)
    draining.start()
    deadline = time.monotonic() + 60
    while len(said) < 100_000 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=60)
    draining.join(timeout=60)
    os.close(reader)
    return code, said.decode().replace("\r\n", "\n")


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "unbuffered"])
def test_a_stop_while_a_line_is_printed_says_its_line_on_a_line_of_its_own(terminal):
    """`print` writes a line's text and its newline apart, and Python runs a signal's
    handler between the two. Stopped at a dozen moments of a command that prints lines,
    on a terminal (line-buffered) and unbuffered (PYTHONUNBUFFERED=1, as containers
    often run commands), each output is whole lines, the stop's the last."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REVIEWFLOW_") and k != "PYTHONUNBUFFERED"}
    if not terminal:
        env["PYTHONUNBUFFERED"] = "1"
    for _ in range(12):
        code, said = output_of_a_stopped_printer(env, terminal)
        assert code == 130
        lines = said.split("\n")
        assert lines[-2:] == ["reviewflow: interrupted", ""], lines[-2:][-100:]
        assert set(lines[:-2]) == {"x" * 500}, {line[-100:] for line in lines[:-2]}

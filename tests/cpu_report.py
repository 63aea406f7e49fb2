"""``pytest --cpu-report=PATH``: what each test costs in CPU, its own and its child processes'.

The suite is CPU-bound on two cores (docs/development.md, "Tests"), so its wall time
follows its CPU, which ``--durations`` (wall seconds per test, slowed by whatever the
other workers run) does not show. With the option, each test process (every
pytest-xdist worker) appends one line per test to PATH, tab-separated:

- the test's node id;
- ``own``: CPU seconds (user + system) of the test's process while it ran, its setup and
  teardown included: the flows and the training that run inside pytest;
- ``children``: CPU seconds of the child processes reaped while it ran (the commands and
  servers it started and waited for, with what they reaped in turn);
- ``wall``: its wall seconds; ``worker``: the xdist worker (``-`` without xdist).

What a worker tears down after its last test (its session's fixtures: the Prefect test
server, the PostgreSQL cluster) is one line of its own, ``(teardown of <worker>)``, not
its last test's. At the end the test files costing the most are printed.

A child's CPU counts only once it is reaped, so a process a test leaves behind counts
where it is reaped, and a process that is not a child (a daemon) not at all.

Give it as ``--cpu-report=PATH``. pytest reads its arguments once before it loads this
plugin (``-p tests.cpu_report``, in pyproject.toml's ``addopts``, so that pytest-xdist's
workers load it too), to find the project; then ``--cpu-report PATH`` with a space is
unknown and PATH taken for a test path, which finds no project outside it.
"""

from __future__ import annotations

import fcntl
import resource
import time
from collections import defaultdict
from pathlib import Path

import pytest

COLUMNS = ("test", "own", "children", "wall", "worker")
SHOWN_FILES = 15  # how many test files the end-of-run table lists


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--cpu-report", metavar="PATH", default=None,
        help="write each test's CPU seconds (its own and its reaped child processes') to PATH "
             "and print the test files costing the most; give it as --cpu-report=PATH "
             "(tests/cpu_report.py)")


def pytest_configure(config) -> None:
    """Register the report when ``--cpu-report`` is given. The first process (pytest-xdist's
    controller, or pytest alone) empties the file before any test runs."""
    path = config.getoption("--cpu-report")
    if not path:
        return
    path = Path(path).resolve()
    if not hasattr(config, "workerinput"):
        path.write_text("\t".join(COLUMNS) + "\n")
    # From the worker's own input, not PYTEST_XDIST_WORKER: a pytest that a test starts
    # inherits that variable without being a worker.
    worker = config.workerinput["workerid"] if hasattr(config, "workerinput") else "-"
    config.pluginmanager.register(CpuReport(path, worker), "cpu-report")


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class _Clock:
    """CPU of this process and of its reaped children, and wall time, since it was made."""

    def __init__(self) -> None:
        self.own = _cpu_seconds(resource.RUSAGE_SELF)
        self.children = _cpu_seconds(resource.RUSAGE_CHILDREN)
        self.wall = time.monotonic()

    def elapsed(self) -> tuple[float, float, float]:
        return (_cpu_seconds(resource.RUSAGE_SELF) - self.own,
                _cpu_seconds(resource.RUSAGE_CHILDREN) - self.children,
                time.monotonic() - self.wall)


class CpuReport:
    def __init__(self, path: Path, worker: str) -> None:
        self.path = path
        self.worker = worker
        self.last_teardown: tuple[float, float, float] | None = None

    def _append(self, name: str, figures: tuple[float, float, float]) -> None:
        line = "\t".join([name, *(f"{value:.2f}" for value in figures), self.worker]) + "\n"
        with open(self.path, "a", encoding="utf-8") as report:
            fcntl.flock(report, fcntl.LOCK_EX)  # the workers share the file
            report.write(line)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        clock = _Clock()
        self.last_teardown = None
        yield
        figures = clock.elapsed()
        if self.last_teardown is not None:
            figures = tuple(a - b for a, b in zip(figures, self.last_teardown, strict=True))
            self._append(f"(teardown of {self.worker})", self.last_teardown)
        self._append(item.nodeid, figures)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item, nextitem):
        clock = _Clock()
        yield
        if nextitem is None:  # the worker's last test: its session's fixtures end here
            self.last_teardown = clock.elapsed()

    def pytest_terminal_summary(self, terminalreporter):
        if hasattr(terminalreporter.config, "workerinput"):
            return
        by_file = per_file(self.path)
        if not by_file:
            return
        own = sum(figures["own"] for figures in by_file.values())
        children = sum(figures["children"] for figures in by_file.values())
        terminalreporter.write_sep("=", f"CPU seconds per test file ({self.path})")
        terminalreporter.write_line(f"all: {own + children:,.0f} ({own:,.0f} in the test "
                                    f"processes, {children:,.0f} in their children)")
        terminalreporter.write_line(f"{'total':>8} {'own':>8} {'children':>8} {'tests':>5}  file")
        ranked = sorted(by_file.items(), key=lambda kv: -(kv[1]["own"] + kv[1]["children"]))
        for name, figures in ranked[:SHOWN_FILES]:
            terminalreporter.write_line(
                f"{figures['own'] + figures['children']:8.1f} {figures['own']:8.1f} "
                f"{figures['children']:8.1f} {figures['tests']:5d}  {name}")


TEARDOWNS = "(each worker's teardown after its last test)"


def per_file(path: Path) -> dict[str, dict]:
    """The report at ``path`` summed per test file; the workers' teardowns are one entry,
    ``TEARDOWNS``."""
    totals: dict[str, dict] = defaultdict(lambda: {"own": 0.0, "children": 0.0, "tests": 0})
    lines = path.read_text(encoding="utf-8").splitlines()[1:] if path.exists() else []
    for line in lines:
        test, own, children, _wall, _worker = line.split("\t")
        entry = totals[TEARDOWNS if test.startswith("(teardown of ") else test.split("::")[0]]
        entry["own"] += float(own)
        entry["children"] += float(children)
        entry["tests"] += 1
    return dict(totals)

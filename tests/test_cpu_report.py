"""``pytest --cpu-report=PATH`` (tests/cpu_report.py) puts each test's CPU where it was spent:
in the test's process, in the child processes it waited for, or in the teardown after a
worker's last test; alone and under pytest-xdist."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import PROJECT

from tests.cpu_report import TEARDOWNS, per_file

BURN = 0.4  # CPU seconds each burner spends, counted on its own process's clock

# As pyproject.toml has it: the plugin by name, the tests found through testpaths.
INI = "[pytest]\ntestpaths = test_costs.py\naddopts = -p tests.cpu_report\n"

TESTS = f"""\
import subprocess, sys, time
import pytest

BURNER = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < {BURN}: pass"


@pytest.fixture(scope="session", autouse=True)
def burns_at_the_end():
    yield
    exec(BURNER)


def test_a_burns_itself():
    exec(BURNER)


def test_b_burns_in_a_child():
    subprocess.run([sys.executable, "-c", BURNER], check=True)


def test_c_sleeps():
    time.sleep(0.3)
"""


def run_with_report(tmp_path, *options: str) -> tuple[dict[str, list[float]], str]:
    """The report of a run as ``make test`` starts one: no test path on the command line,
    the report outside the project, left there by an earlier run."""
    project, report = tmp_path / "project", tmp_path / "reports" / "cpu.tsv"
    project.mkdir()
    report.parent.mkdir()
    (project / "test_costs.py").write_text(TESTS)
    (project / "pytest.ini").write_text(INI)
    report.write_text("left by an earlier run\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--cpu-report={report}",
         *options],
        cwd=project, env=dict(os.environ, PYTHONPATH=str(PROJECT)), capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = report.read_text().splitlines()
    assert lines[0].split("\t") == ["test", "own", "children", "wall", "worker"]
    rows = {}
    for line in lines[1:]:
        test, *figures, _worker = line.split("\t")
        rows[test.rsplit("::", 1)[-1]] = [float(value) for value in figures]
    return rows, done.stdout


def test_each_test_is_charged_its_own_cpu_its_childrens_and_not_the_last_teardown(tmp_path):
    rows, printed = run_with_report(tmp_path)
    own, children, _ = rows["test_a_burns_itself"]
    assert own >= BURN and children == 0
    own, children, _ = rows["test_b_burns_in_a_child"]
    assert children >= BURN and own < BURN / 2
    own, children, wall = rows["test_c_sleeps"]  # the last test: the teardown is not its
    assert own < BURN / 2 and children == 0 and wall >= 0.3
    own, children, _ = rows["(teardown of -)"]
    assert own >= BURN and children == 0
    assert set(rows) == {"test_a_burns_itself", "test_b_burns_in_a_child", "test_c_sleeps",
                         "(teardown of -)"}

    by_file = per_file(tmp_path / "reports" / "cpu.tsv")
    assert set(by_file) == {"test_costs.py", TEARDOWNS}
    assert by_file["test_costs.py"]["tests"] == 3
    assert by_file["test_costs.py"]["children"] >= BURN
    assert "CPU seconds per test file" in printed
    figures = by_file["test_costs.py"]
    assert (f"{figures['own'] + figures['children']:8.1f} {figures['own']:8.1f} "
            f"{figures['children']:8.1f} {3:5d}  test_costs.py") in printed


def test_under_xdist_every_worker_reports_and_the_controller_prints_the_table(tmp_path):
    rows, printed = run_with_report(tmp_path, "-n", "2")
    tests = {"test_a_burns_itself", "test_b_burns_in_a_child", "test_c_sleeps"}
    assert tests <= set(rows)
    teardowns = set(rows) - tests
    assert teardowns and teardowns <= {"(teardown of gw0)", "(teardown of gw1)"}
    assert max(rows[name][0] for name in teardowns) >= BURN  # the session fixture's end
    assert rows["test_b_burns_in_a_child"][1] >= BURN
    assert printed.count("CPU seconds per test file") == 1

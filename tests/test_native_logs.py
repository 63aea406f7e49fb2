"""Native libraries' start-up log lines held to TF_CPP_MIN_LOG_LEVEL (tasks/native_logs.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import PROJECT

from tasks.native_logs import is_hidden
from tests.helpers import layout_of

PREAMBLE = (b"WARNING: All log messages before absl::InitializeLog() is called are written "
            b"to STDERR")
INFO = b"I0000 00:00:1795985781.411965    4990 port.cc:153] oneDNN custom operations are on."
WARNING = b"W0000 00:00:1795985781.411965    4990 some.cc:1] a warning"
ERROR = b"E0000 00:00:1795985781.413319    4990 cuda_platform.cc:52] failed call to cuInit"
FATAL = b"F0000 00:00:1795985781.413319    4990 x.cc:1] fatal"


@pytest.mark.parametrize("level, hidden", [
    (0, []), (1, [PREAMBLE, INFO]), (2, [PREAMBLE, INFO, WARNING]),
    (3, [PREAMBLE, INFO, WARNING, ERROR]), (9, [PREAMBLE, INFO, WARNING, ERROR])])
def test_lines_below_the_level_are_hidden_and_fatal_never(level, hidden):
    lines = [PREAMBLE, INFO, WARNING, ERROR, FATAL, b"Traceback (most recent call last):",
             b"I0000", b"plain text"]
    assert [line for line in lines if is_hidden(line, level)] == hidden


SCRIPT = r"""
import os, sys
from tasks.native_logs import native_log_filter
print("before", file=sys.stderr, flush=True)
with native_log_filter():
    os.write(2, b"%s\n%s\nnative error\n" % (PREAMBLE, INFO))
    print("python inside", file=sys.stderr, flush=True)
    os.write(2, b"%s\nlast line without newline" % ERROR)
os.write(2, b"\n%s\nafter\n" % INFO)
"""


@pytest.mark.parametrize("level", ["0", "2", "3"])
def test_the_filter_passes_everything_else_in_order_and_restores_stderr(level):
    """Run in a process of its own: the filter redirects file descriptor 2."""
    constants = f"PREAMBLE = {PREAMBLE!r}\nINFO = {INFO!r}\nERROR = {ERROR!r}\n"
    done = subprocess.run([sys.executable, "-c", constants + SCRIPT], cwd=PROJECT,
                          capture_output=True, env={"TF_CPP_MIN_LOG_LEVEL": level,
                                                    "PYTHONPATH": str(PROJECT)}, timeout=60)
    assert done.returncode == 0, done.stderr
    inside = [PREAMBLE, INFO, b"native error", b"python inside", ERROR,
              b"last line without newline"]
    if level != "0":
        inside = [line for line in inside if not is_hidden(line, int(level))]
    # After the block nothing is filtered: the INFO line written then stays.
    assert done.stderr.split(b"\n") == [b"before", *inside, INFO, b"after", b""]


# What a process that no `reviewflow` command started runs: a Prefect worker's flow run
# (`python -m prefect.engine` loads the deployment's entry point and calls the flow), a
# Dask worker placing its first shard (``here()`` asks TensorFlow for the device).
WORKER_STARTS = {
    "flow run": "from prefect.flows import load_flow_from_entrypoint\n"
                "flow = load_flow_from_entrypoint('flows/score_reviews.py:score_reviews')\n"
                "print(flow(data_dir={root!r}, settle_seconds=0)['rows_scored'])\n",
    "dask worker": "from tasks.scoring.workers import here\nprint(here()['device'])\n",
}
CUDA_PROBE = (b"cuInit", b"cuda drivers", b"CUDA error", b"E0000", b"absl::InitializeLog")


@pytest.mark.slow
@pytest.mark.parametrize("start", sorted(WORKER_STARTS))
def test_a_process_a_worker_starts_prints_no_cuda_probe(start, scoring_root, tmp_path,
                                                       subprocess_env):
    """Started without the command's defaults and without TF_CPP_MIN_LOG_LEVEL, as a
    worker's environment has it (the Prefect API a worker's flow run reports to: the
    session's server): on a host without a GPU (this one), TensorFlow's CUDA probe would
    print "failed call to cuInit" when the device is looked up."""
    (layout_of(scoring_root).incoming / "a.csv").write_text("review_id,text\n1,A fine film.\n")
    home = tmp_path / "prefect-home"
    home.mkdir()
    env = {k: v for k, v in subprocess_env.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PREFECT_HOME=str(home), PREFECT_LOGGING_LEVEL="INFO", PYTHONPATH=str(PROJECT))
    done = subprocess.run([sys.executable, "-c", WORKER_STARTS[start].format(root=str(scoring_root))],
                          cwd=PROJECT, capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] in (b"1", b"CPU") or done.stdout.startswith(b"GPU")
    for probe in CUDA_PROBE:
        assert probe not in done.stderr, done.stderr[-3000:]

"""Shared fixtures: an isolated Prefect, a fresh data root per test, a champion trained once,
the packaged validator, a PostgreSQL cluster and an S3 server for the tests that need them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Before Prefect, TensorFlow or GX are imported anywhere: a private Prefect home, no
# analytics, quiet TensorFlow.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="reviewflow-test-prefect-")
os.environ.pop("PREFECT_API_URL", None)
os.environ["GX_ANALYTICS_ENABLED"] = "False"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
for name in list(os.environ):
    if name.startswith("REVIEWFLOW_"):
        del os.environ[name]  # the suite sets what it needs explicitly

import pytest  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
SAMPLES = PROJECT / "data" / "samples"
IMDB = PROJECT.parent / "shared" / "data" / "imdb" / "train.parquet"


def pytest_addoption(parser):
    parser.addoption(
        "--cpu-burners", type=int, default=0, metavar="N",
        help="run the suite next to N processes that each keep a CPU core busy, as on a "
             "host shared with other work (make test-under-load)")


# Test files that take minutes (servers, real CLI processes killed at each step, real
# text), run first: with pytest-xdist (make test) a worker that picks one up late would
# leave the other idle at the end. Only the order changes; every test still runs.
SLOWEST_FIRST = (
    "test_multi_host_e2e.py", "test_many_scorers.py", "test_checkpoints.py",
    "test_deployments_e2e.py", "test_sliced_gate.py", "test_state_url.py",
    "test_stop_anywhere.py", "test_retrain_flow.py", "test_scale_out.py",
    "test_state_pg_kills.py", "test_registry_objects.py", "test_reliability.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept within


@pytest.fixture(scope="session", autouse=True)
def cpu_burners(request):
    """Processes that burn CPU for the whole session (``--cpu-burners N``; none by default).

    Started before the Prefect server, so everything the suite does, that start
    included, competes for the cores. Each dies with pytest, even if pytest is killed.
    Under pytest-xdist the first worker starts them, so N is the whole run's.
    """
    import subprocess
    import sys

    from flows.prefect_api import die_with_parent

    first = os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0"
    count = request.config.getoption("--cpu-burners") if first else 0
    burners = [subprocess.Popen(die_with_parent([sys.executable, "-c", "while True: pass"]))
               for _ in range(count)]
    yield len(burners)
    for burner in burners:
        burner.kill()
        burner.wait()


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(cpu_burners):
    """One temporary Prefect server for the whole session (flows run against it)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def data_dir(tmp_path) -> Path:
    from tasks.layout import DataLayout

    root = tmp_path / "data"
    DataLayout(root=root).ensure()
    return root


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> Path:
    """A registry whose champion was trained on the bundled sample, made once per run.

    Tests only read it (they copy it into their own root). Under pytest-xdist the first
    worker to ask trains it, holding a lock in the folder the run's workers share, and
    the others take the same registry: one training instead of one per worker."""
    import fcntl

    from flows.retrain_model import retrain_model
    from tests.helpers import layout_of

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # pytest-N/, above each worker's popen-gwK/
    models = layout_of(shared / "sample-champion").models  # only its models/ is kept
    with open(shared / "sample-champion.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not models.exists():
            root = tmp_path_factory.mktemp("champion") / "data"
            shutil.copytree(SAMPLES / "labeled", layout_of(root).labeled)
            summary = retrain_model(data_dir=str(root), architecture="seed", epochs=10)
            assert summary["promoted"], summary
            staging = shared / "sample-champion.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(layout_of(root).models, staging)
            models.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, models)
    return models


@pytest.fixture
def scoring_root(data_dir, trained_models) -> Path:
    """A data root with a champion, ready to score."""
    from tests.helpers import layout_of

    shutil.rmtree(layout_of(data_dir).models)
    shutil.copytree(trained_models, layout_of(data_dir).models)
    return data_dir


@pytest.fixture
def labeled_root(scoring_root) -> Path:
    """A data root with the sample champion and the sample's labeled files."""
    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, scoring_root / "labeled" / sample.name)
    return scoring_root


@pytest.fixture
def warnings_seen():
    """The messages of the WARNING lines flow runs log during the test (Prefect's run
    logger does not reach the root logger, so caplog does not see them)."""
    import logging

    class Warnings(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.lines: list[str] = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    handler = Warnings()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.fixture(scope="module")
def validator():
    """A ``ReviewValidator`` with the packaged suite, as scoring checks rows (a module
    that needs other settings overrides it with ``tests.helpers.packaged_validator``)."""
    from tests.helpers import packaged_validator

    return packaged_validator()


@pytest.fixture(scope="session")
def pg_cluster():
    """One temporary PostgreSQL cluster for the session (tests/postgres.py); a test
    creates its own database in it. Skips where PostgreSQL cannot start."""
    from tests import postgres

    if (why := postgres.available()) is not None:
        pytest.skip(why)
    cluster = postgres.temporary_cluster()
    yield cluster
    cluster.stop()
    shutil.rmtree(cluster.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 (a free port), with dummy credentials."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """The S3 endpoint and an s3fs file system on it, with the credentials moto takes."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    return s3_endpoint, fs


@pytest.fixture
def imdb_path() -> Path:
    if not IMDB.exists():
        pytest.skip(f"needs the IMDB training reviews at {IMDB} (../shared/data beside the "
                    "project root); absent on this machine")
    return IMDB


@pytest.fixture
def subprocess_env() -> dict:
    """Environment for a `reviewflow` subprocess that talks to the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWFLOW_")}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["PREFECT_LOGGING_LEVEL"] = "INFO"
    return env


def reviewflow_command(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "flows.cli", *args]


# How far apart two runs' scores of the same review by the same model may be. A score is
# a float32 sum over the review's features, and TensorFlow (oneDNN) adds in an order
# that depends on the batch the row arrives in and on how the process splits the work
# over threads, so runs that batch rows differently (shards, read batch sizes), in
# other processes, may differ in the last bits (issue 13: 17 of 607 rows, loaded host). The
# output contract is the row, its label and its model, with the score to float32
# round-off; a different model or text moves a score by far more than this.
SCORE_TOLERANCE = 1e-5


def assert_same_scored_rows(got, expected) -> None:
    """Two scored-row DataFrames (same columns, same order) hold the same rows: every
    column equal, ``score`` within ``SCORE_TOLERANCE``."""
    import numpy as np
    import pandas as pd

    assert list(got.columns) == list(expected.columns)
    exact = [c for c in expected.columns if c != "score"]
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_exact=True)
    if "predicted_label" in exact:  # else a label could flip within the tolerance
        assert not (abs(expected["score"] - 0.5) <= SCORE_TOLERANCE).any()
    np.testing.assert_allclose(got["score"].to_numpy(), expected["score"].to_numpy(),
                               rtol=0, atol=SCORE_TOLERANCE)


"""Stack smoke test: the locked Prefect, FastAPI and SQLAlchemy work together as a server.

Two breaks of the locked set went unseen by every other test (docs/development.md):
with SQLAlchemy 2.1 the server's scheduler logs an ``InvalidRequestError`` once a
minute and never creates a run; with FastAPI 0.153/0.154 the server answers 422 to the
``null``s in Prefect's own filter requests, so ``prefect deploy`` and every ``ls``
command fail. This test starts a real ``prefect server start`` with all its services on
and checks, in well under a minute:

1. Prefect's own list commands exit 0 against it;
2. its scheduler creates runs for a deployment with a 60 s interval schedule, marked
   ``auto_scheduled``, without anybody starting one;
3. its log holds no error.

It runs twice: on the server's default SQLite database and on PostgreSQL (issue 31), as
deployments/README.md sets it up: a role with a password that owns the database and is
no superuser (Prefect's migrations create the ``pg_trgm`` extension, trusted since
PostgreSQL 13), reached through ``postgresql+asyncpg://``. The PostgreSQL run uses the
session's test cluster (tests/postgres.py) and is skipped where none can start.

It runs as part of ``make test``, so a refreshed lock that breaks scheduling or the CLI
fails the suite.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tests.prefect_server import PrefectServer, scheduler_errors

SCHEDULE_TIMEOUT = 60
PG_ROLE, PG_DATABASE = "prefect_stack", "prefect_stack"
PG_PASSWORD = "pf-stack-secret-3K"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def prefect_harness():
    """This module brings its own server; skip the suite's in-process test harness."""
    yield


def auto_scheduled_runs(client, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return [run for run in runs if run.auto_scheduled]


def prefect_database(cluster) -> str:
    """A fresh database owned by a password role that is no superuser; its asyncpg URL."""
    import psycopg

    with psycopg.connect(cluster.url, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        db.execute(f'DROP ROLE IF EXISTS "{PG_ROLE}"')
        db.execute(f"CREATE ROLE \"{PG_ROLE}\" LOGIN PASSWORD '{PG_PASSWORD}'")
        db.execute(f'CREATE DATABASE "{PG_DATABASE}" OWNER "{PG_ROLE}"')
    return (f"postgresql+asyncpg://{PG_ROLE}:{PG_PASSWORD}@{cluster.host}:{cluster.port}/"
            f"{PG_DATABASE}")


def in_postgres(cluster) -> tuple[list[str], list[str]]:
    """The deployments in Prefect's database, and its extensions."""
    import psycopg

    url = f"postgresql://{PG_ROLE}:{PG_PASSWORD}@{cluster.host}:{cluster.port}/{PG_DATABASE}"
    with psycopg.connect(url) as db:
        return ([name for (name,) in db.execute("SELECT name FROM deployment")],
                [name for (name,) in db.execute("SELECT extname FROM pg_extension")])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_locked_prefect_stack_lists_and_schedules(tmp_path, request, database):
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule

    cluster = request.getfixturevalue("pg_cluster") if database == "postgresql" else None
    server = PrefectServer(tmp_path,
                           database_url=prefect_database(cluster) if cluster else None)
    try:
        server.start()
        for command in (["work-pool", "ls"], ["deployment", "ls"], ["flow-run", "ls"],
                        ["artifact", "ls"]):
            server.prefect("-".join(command), *command)

        with server.client() as client:
            flow_id = client.create_flow_from_name("stack-smoke")
            deployment_id = client.create_deployment(
                flow_id=flow_id, name="every-minute",
                schedules=[DeploymentScheduleCreate(
                    schedule=IntervalSchedule(interval=timedelta(seconds=60)))])
            # The server's recent-deployments scheduler visits a new deployment within
            # seconds; the main loop (every 60 s) would find it too.
            deadline = time.monotonic() + SCHEDULE_TIMEOUT
            while not (runs := auto_scheduled_runs(client, deployment_id)):
                if time.monotonic() > deadline:
                    pytest.fail(f"the scheduler created no run in {SCHEDULE_TIMEOUT} s:\n"
                                f"{server.processes.tail('server')}")
                time.sleep(1)
        assert all(run.state_type.value == "SCHEDULED" for run in runs)
        assert "every-minute" in server.prefect("deployment-ls-after", "deployment", "ls")
        assert "stack-smoke" in server.prefect("flow-run-ls-after", "flow-run", "ls")
    finally:
        server.stop()
    assert scheduler_errors(server.server_log()) == []
    sqlite_file = tmp_path / "prefect-home" / "prefect.db"
    if cluster is not None:  # the server kept its state in PostgreSQL, not beside it
        deployments, extensions = in_postgres(cluster)
        assert deployments == ["every-minute"] and "pg_trgm" in extensions
        assert not sqlite_file.exists()
    else:
        assert sqlite_file.exists()

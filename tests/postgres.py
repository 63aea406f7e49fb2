"""The tests' throwaway PostgreSQL cluster: ``deployments.local_postgres``, the module
``make postgres`` runs, under the name the tests import it by (``conftest.pg_cluster``,
a fresh database per test; the multi-host and many-scorer tests start their own)."""

import time

import psycopg

from deployments.local_postgres import (
    PASSWORD,
    USER,
    Cluster,
    available,
    free_port,
    temporary_cluster,
)

__all__ = ["PASSWORD", "USER", "Cluster", "advisory_locks_left", "available", "free_port",
           "temporary_cluster"]


OTHER_CLIENTS = ("SELECT pid, backend_type, application_name, state, wait_event_type,"
                  " wait_event, client_addr, now() - backend_start, now() - state_change,"
                  " left(query, 300) FROM pg_stat_activity"
                  " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                  " AND backend_type = 'client backend'")


def advisory_locks_left(url: str, deadline_s: float = 60) -> int:
    """The advisory locks held on ``url``'s database once every other client's session
    on it has ended. A killed client's backends end when the server reads its closed
    socket, after the client's death, not with it: counted before, the locks a dying
    backend is about to release would look leaked. The server's own workers on the
    database (autovacuum) hold no advisory lock and are not waited for. Fails if a
    client's session outlives ``deadline_s``, naming what each session was doing.

    Each look is a transaction of its own (autocommit): within one transaction
    PostgreSQL answers pg_stat_activity from one snapshot, so a session seen ending at
    the first look would be seen for as long as the transaction lasted."""
    with psycopg.connect(url, autocommit=True) as db:
        deadline = time.monotonic() + deadline_s
        while clients := db.execute(OTHER_CLIENTS).fetchall():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"a session on {url.rpartition('/')[2]} never ended in {deadline_s} s: "
                    "(pid, backend type, application, state, wait event type, wait event, "
                    f"client, age, in this state for, query): {clients}")
            time.sleep(0.05)
        return db.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND"
                          " database = (SELECT oid FROM pg_database"
                          " WHERE datname = current_database())").fetchone()[0]

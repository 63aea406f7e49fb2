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


def advisory_locks_left(url: str, deadline_s: float = 60) -> int:
    """The advisory locks held on ``url``'s database once every other session on it has
    ended. A killed client's backends end when the server reads its closed socket, after
    the client's death, not with it: counted before, the locks a dying backend is about
    to release would look leaked. Fails if a session outlives ``deadline_s``."""
    with psycopg.connect(url) as db:
        deadline = time.monotonic() + deadline_s
        while db.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname ="
                         " current_database() AND pid <> pg_backend_pid()").fetchone()[0]:
            assert time.monotonic() < deadline, f"a session on {url.rpartition('/')[2]} never ended"
            time.sleep(0.05)
        return db.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND"
                          " database = (SELECT oid FROM pg_database"
                          " WHERE datname = current_database())").fetchone()[0]

"""The tests' throwaway PostgreSQL cluster: ``deployments.local_postgres``, the module
``make postgres`` runs, under the name the tests import it by (``conftest.pg_cluster``,
a fresh database per test; the multi-host and many-scorer tests start their own)."""

from deployments.local_postgres import (
    PASSWORD,
    USER,
    Cluster,
    available,
    free_port,
    temporary_cluster,
)

__all__ = ["PASSWORD", "USER", "Cluster", "available", "free_port", "temporary_cluster"]

"""Operator tooling for running reviewflow's flows as Prefect deployments.

``deployments/prefect.yaml`` (work pools and workers, deployed with plain
``prefect deploy --all --prefect-file deployments/prefect.yaml``) and ``deployments/serve.py``
(one process, no work pool); ``deployments/local_postgres.py`` (``make postgres``: a
throwaway PostgreSQL to try ``REVIEWFLOW_STATE_URL`` on one machine, also the tests' and
the benchmarks' cluster). See ``deployments/README.md``; what a Prefect server saves per
run is measured by bench section ``orchestration`` (``benchmarks/sections/orchestration.py``).
"""

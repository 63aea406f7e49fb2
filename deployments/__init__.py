"""Operator tooling for running reviewflow's flows as Prefect deployments.

``deployments/prefect.yaml`` (work pools and workers, deployed with plain
``prefect deploy --all --prefect-file deployments/prefect.yaml``), ``deployments/serve.py``
(one process, no work pool), ``deployments/measure_overhead.py`` (what a Prefect server
saves per run). See ``deployments/README.md``.
"""

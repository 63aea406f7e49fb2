"""Operator tooling for running reviewflow's flows as Prefect deployments.

``deployments/prefect.yaml`` (work pools and workers, deployed with plain
``prefect deploy --all --prefect-file deployments/prefect.yaml``) and ``deployments/serve.py``
(one process, no work pool). See ``deployments/README.md``; what a Prefect server saves
per run is measured by ``benchmarks/measure_overhead.py``.
"""

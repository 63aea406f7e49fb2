"""Serve the reviewflow flows on their schedules from one process: no work pool, no worker.

The single-machine alternative to ``prefect.yaml`` + workers. Run it from anywhere:

    REVIEWFLOW_DATA_DIR=/srv/reviews python deployments/serve.py

It registers ``score-reviews/scheduled-served``, ``rescore-archive/backfill-served`` (no
schedule: started by hand), ``retrain-model/nightly-served`` and
``measure-accuracy/daily-served`` and runs their flow runs (scheduled or started with ``prefect deployment run``) as
subprocesses of this process until it is stopped; on Ctrl-C their schedules are paused.
The names differ from the work-pool deployments so both setups can share one server.

Schedules, descriptions, tags, parameters and the retraining concurrency limit are read
from ``deployments/prefect.yaml``, so the two setups cannot drift apart. The data root
is the settings' (``REVIEWFLOW_DATA_DIR``; default ``<project>/data``), a folder made
absolute here because the runs do not start in this directory.

Point ``PREFECT_API_URL`` at a running server (``make server``) to see the runs in the
UI; without it Prefect starts a temporary server inside this process.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
PREFECT_YAML = Path(__file__).with_name("prefect.yaml")
SERVED_SUFFIX = "-served"

# TensorFlow's log level and Great Expectations' analytics are left to tasks.model
# (tasks/native_logs.py) and tasks.validation, in the flow runs' own processes.


def data_dir_from_settings() -> Path | str:
    """The data root the settings name (``REVIEWFLOW_DATA_DIR``), a folder made absolute,
    or ``<project>/data`` when none is set."""
    from flows.configuration import command_settings

    settings = command_settings()
    if "data_dir" not in settings.model_fields_set:
        return PROJECT / "data"
    return settings.data_dir.resolve() if isinstance(settings.data_dir, Path) else settings.data_dir


def deployment_specs(path: Path = PREFECT_YAML) -> dict[str, dict[str, Any]]:
    """The deployments of ``prefect.yaml`` keyed by entry point (``file.py:function``)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {spec["entrypoint"]: spec for spec in document["deployments"]}


def schedules_from(entries: list[dict[str, Any]]) -> list:
    """Prefect schedules from the ``schedules:`` entries of a prefect.yaml deployment."""
    from prefect.schedules import Cron, Interval

    schedules = []
    for entry in entries or []:
        common = {"timezone": entry.get("timezone"), "active": entry.get("active", True)}
        if "cron" in entry:
            schedules.append(Cron(entry["cron"], **common))
        elif "interval" in entry:
            anchor = entry.get("anchor_date")
            schedules.append(Interval(
                int(entry["interval"]),
                anchor_date=datetime.fromisoformat(anchor) if anchor else None, **common))
        else:
            raise ValueError(f"schedule {entry!r} in {PREFECT_YAML} has neither 'cron' nor"
                             " 'interval'; serve.py understands only those two")
    return schedules


def build_deployments(data_dir: Path | str) -> list:
    """Runner deployments for the flows, configured like their prefect.yaml namesakes."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.deployments.runner import EntrypointType

    from flows.accuracy import measure_accuracy
    from flows.rescore_archive import rescore_archive
    from flows.retrain_model import retrain_model
    from flows.score_reviews import score_reviews

    specs = deployment_specs()
    deployments = []
    for flow_fn in (score_reviews, rescore_archive, retrain_model, measure_accuracy):
        entrypoint = f"flows/{flow_fn.fn.__module__.rsplit('.', 1)[-1]}.py:{flow_fn.fn.__name__}"
        spec = specs[entrypoint]
        # data_dir is templated from the deploy-time environment in prefect.yaml; here the
        # environment of this process decides it.
        parameters = {**spec.get("parameters", {}), "data_dir": str(data_dir)}
        limit = spec.get("concurrency_limit")
        if isinstance(limit, dict):
            limit = ConcurrencyLimitConfig(**limit)
        deployments.append(flow_fn.to_deployment(
            name=spec["name"] + SERVED_SUFFIX,
            schedules=schedules_from(spec.get("schedules")),
            parameters=parameters,
            description=spec.get("description"),
            tags=[*spec.get("tags", []), "served"],
            concurrency_limit=limit,
            # Import the flows by module name: they run in subprocesses whose working
            # directory is not the project, and the package is installed in the venv.
            entrypoint_type=EntrypointType.MODULE_PATH,
        ))
    return deployments


def main() -> None:
    from prefect import serve
    from prefect.settings import get_current_settings

    from tasks.errors import ReviewflowError

    try:
        data_dir = data_dir_from_settings()
    except ReviewflowError as exc:  # a setting it cannot take: one line, no traceback
        print(f"reviewflow: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    api = get_current_settings().api.url
    print(f"reviewflow: serving score-reviews, rescore-archive, retrain-model and measure-accuracy on data root {data_dir}"
          f" (Prefect API: {api or 'temporary in-process server'})")
    serve(*build_deployments(data_dir))


if __name__ == "__main__":
    main()

"""Flow ``measure-accuracy``: each model version's accuracy on the late labels of
``labeled/`` (docs/monitoring.md, "Production accuracy").

A flow of its own, which the ``measure-accuracy/daily`` deployment schedules, because
late labels arrive on their own time, not with a scoring run: a scoring run (every 15
minutes, and skipped when the inbox is empty) would read all of ``scored/`` again for
labels that did not change, and the retraining reads the same labels to learn from them,
so a drop it found would come after the retraining it should have started. Here, once a
day, the join (``tasks.late_labels``) rewrites ``production_accuracy/``; when the
champion's production accuracy dropped, a WARNING names it and the figures, and the
event ``reviewflow.accuracy.dropped`` lets a deployment trigger start a retraining
(``deployments/prefect.yaml``). ``reviewflow monitor`` runs the same join and prints it.
"""

from __future__ import annotations

import json

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.accuracy_report import publish_accuracy
from flows.configuration import settings_from
from flows.drift import drift_resource
from flows.run_messages import accuracy_message, finished
from flows.stopping import raise_if_stopped
from tasks.late_labels import Measurement, drop_message, measure_production_accuracy, write_accuracy
from tasks.layout import DataLayout
from tasks.settings import Settings
from tasks.training.registry import Registry

ACCURACY_EVENT = "reviewflow.accuracy.dropped"


@task(name="join-late-labels", cache_policy=NO_CACHE)
def join_late_labels(settings: Settings) -> Measurement:
    """``tasks.late_labels.measure_production_accuracy`` as a task, and its dataset written."""
    layout = DataLayout.of(settings)
    measured = measure_production_accuracy(layout, settings, Registry(layout.models))
    write_accuracy(layout, measured.parts)
    return measured


# A parameter left None takes the setting where the run runs (REVIEWFLOW_DATA_DIR,
# REVIEWFLOW_MONITOR_EMIT_EVENTS), as on a worker whose environment names them.
@flow(name="measure-accuracy", log_prints=True)
def measure_accuracy(data_dir: str | None = None, emit_events: bool | None = None) -> dict:
    """Join the late labels of ``labeled/`` to ``scored/``; write ``production_accuracy/``;
    warn, and emit ``reviewflow.accuracy.dropped``, when the champion's production
    accuracy fell more than ``accuracy_max_drop`` below its gate accuracy. Returns the
    measurement (``Measurement.summary``)."""
    raise_if_stopped()
    logger = get_run_logger()
    settings = settings_from(data_dir, monitor_emit_events=emit_events)
    layout = DataLayout.of(settings)
    layout.check_contained()
    measured = join_late_labels(settings)
    for name, reason in measured.join.labels.unreadable:
        logger.warning("labeled file %s was not read: %s", name, reason)
    champion = Registry(layout.models).current_version()
    from prefect.runtime import flow_run

    summary = measured.summary() | {"champion": champion, "flow_run_id": flow_run.id}
    logger.info("late labels: %d labeled reviews, %d of them scored; %d scored rows read in "
                "%.2f s", summary["labeled_reviews"], summary["matched_reviews"],
                summary["scored_rows_read"], summary["seconds"])
    figures = measured.versions.get(champion) if champion else None
    if figures and figures["dropped"]:
        message = drop_message(champion, figures, measured.limits)
        logger.warning(message)
        if settings.monitor_emit_events:
            emit_accuracy_event(champion, figures, message, flow_run.id)
    publish_accuracy(measured, champion)
    print(json.dumps(summary))
    return finished(summary, accuracy_message(summary))


def emit_accuracy_event(version: str, figures: dict, message: str,
                        flow_run_id: str | None = None) -> None:
    """Tell Prefect that ``version``'s production accuracy dropped: the model version is
    the event's resource, as for drift, so one trigger pattern matches both
    (deployments/prefect.yaml starts retrain-model on it)."""
    from prefect.events import emit_event

    emit_event(ACCURACY_EVENT, resource=drift_resource(version),
               payload={"model_version": version, "flow_run_id": flow_run_id,
                        "message": message, "rows": figures["rows"],
                        "accuracy": figures["accuracy"],
                        "gate_accuracy": figures["gate_accuracy"],
                        "dropped": figures["dropped"]})

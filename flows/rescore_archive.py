"""Flow ``rescore-archive``: score archived inputs again with the current champion (a
backfill after a promotion).

The files are those of ``archive/<day>/`` on or after ``since`` whose uploaded name
matches ``files`` (``tasks.scoring.backfill``); the plan (files and rows to score, files
skipped because this champion scored them, files that will fail) is logged before
anything is scored. Then the same queue, claims, content locks, checkpoints and commit as
``score-reviews`` (``flows.score_reviews.score_files``), with the archive as the source
(``tasks.state.inputs.FromArchive``): each file stays where it is, its content is
scored once per champion (the ledger's key), rows of earlier versions stay in
``scored/``, and a file that cannot be read again, or whose bytes differ from those it
was archived with, gets its reason recorded while the backfill goes on. A killed
backfill run again scores only what it had not committed. Run it as ``reviewflow
rescore`` or ``python -m flows.rescore_archive``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from prefect import flow, get_run_logger

from flows.configuration import settings_from
from flows.drift import thresholds
from flows.run_messages import finished, rescore_message
from flows.score_report import ScoreSummary, publish_summary
from flows.score_reviews import load_champion, local_device, score_files
from flows.stopping import raise_if_stopped
from tasks.errors import SettingsError
from tasks.layout import DataLayout, day_of
from tasks.outcomes import FileOutcome, FileStatus
from tasks.scoring.backfill import archived_inputs, check_since, plan_backfill
from tasks.scoring.shard import ScoringJob
from tasks.scoring.workers import ModelRef, cached_validator
from tasks.settings import Settings
from tasks.state.backend import RunState, TimedState, open_state
from tasks.state.commit import Committer
from tasks.state.inputs import FromArchive, original_name
from tasks.state.leftovers import sweep_scoring_leftovers
from tasks.storage.local import readable_name
from tasks.training.registry import Registry


@flow(name="rescore-archive", log_prints=True)
def rescore_archive(data_dir: str | None = None,
                    since: str | None = None,
                    files: str | None = None,
                    require_gpu: bool | None = None,
                    task_runner: Literal["threads", "dask"] | None = None,
                    dask_address: str | None = None,
                    shard_rows: int | None = None,
                    state_url: str | None = None) -> dict:
    """Score the archived inputs of the days on or after ``since`` (YYYY-MM-DD; None:
    every day) whose name matches the glob ``files`` (None: every file) with the
    champion, once per content and champion. The other parameters are
    ``score-reviews``'s. Returns the run summary with the plan (``plan``)."""
    raise_if_stopped()
    logger = get_run_logger()
    try:
        since = check_since(since)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    settings = settings_from(data_dir, require_gpu=require_gpu, task_runner=task_runner,
                             dask_address=dask_address, shard_rows=shard_rows,
                             state_url=state_url)
    DataLayout.of(settings).check_contained()
    Registry(DataLayout.of(settings).models).champion_version()  # NoChampionError: fails
    state = TimedState(open_state(settings.state_url, DataLayout.of(settings)))
    try:
        summary = _rescore(settings, state, since, files, logger)
    finally:
        state.close()
    return finished(summary, rescore_message(summary))


def _rescore(settings: Settings, ledger: RunState, since: str | None, pattern: str | None,
             logger) -> dict:
    layout = DataLayout.of(settings).ensure()
    run_started, clock = datetime.now(UTC), time.perf_counter()
    day = day_of(run_started)
    local = settings.task_runner == "threads"
    registry = Registry(layout.models)
    version = registry.champion_version()
    model = ModelRef(version, registry.model_path(version))
    profile = registry.read_profile(version)
    plan = plan_backfill(archived_inputs(layout, since, pattern), ledger, version, settings)
    for line in plan.lines():  # what it will do, before it does any of it
        logger.info(line)
    device = local_device(settings, logger) if local else "Dask workers"
    if local and plan.files:
        load_champion(model)
    summary = ScoreSummary(model_version=version, device=device,
                           task_runner=settings.task_runner, profile=profile)
    summary.inbox_note = plan.headline()
    for skipped in plan.skipped:
        summary.files.append(FileOutcome(readable_name(original_name(skipped.path.name)),
                                         FileStatus.ALREADY_SCORED,
                                         detail=f"scored by {version} already"))
    # A run killed between its commit and this mark left the rows committed: complete.
    ledger.record_archived_many([f.sha256 for f in plan.skipped])
    if swept := sweep_scoring_leftovers(layout, ledger):
        logger.info("removed %d temporaries that killed runs left", len(swept))
    if plan.files:
        committer = Committer(layout, ledger, version, day, logger, source=FromArchive())
        job = ScoringJob.from_settings(settings, model, profile, run_started,
                                       layout.scored_partition(day), layout.rejected_partition(day))
        if local:
            cached_validator(job.suite_config, job.validator_parameters)
        # Drift rows are written as for score, but no drift event: old inputs scored
        # again are not news, and a deployment trigger would start a retraining per file.
        quiet = settings.model_copy(update={"monitor_emit_events": False})
        score_files(quiet, layout, committer, job, day, [f.path for f in plan.files],
                    summary, logger)
    summary.seconds = time.perf_counter() - clock
    summary.state_seconds = getattr(ledger, "seconds", 0.0)
    publish_summary(summary, thresholds(settings))
    return summary.as_dict() | {"plan": plan.as_dict()}


if __name__ == "__main__":
    from flows.common import run_as_command

    run_as_command("rescore")

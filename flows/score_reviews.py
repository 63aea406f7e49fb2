"""Flow ``score-reviews``: score every new file in ``incoming/`` with the champion model.

The steps, each in its own module (none on a registry that never had a champion: the
run ends Completed with a WARNING, the inbox untouched):

1. list the inbox (``tasks.state.inbox``); quarantine what is no review file;
2. for each ready file (``tasks.scoring.queue.FileQueue``, a few files ahead): claim it
   by its content hash, check the ledger (``tasks.state.claim``, ``tasks.state.commit``)
   and plan its shards (``tasks.scoring.planning``);
3. submit its shards, a ``score-shard`` task each, or a bundle of small files as one
   ``score-small-files`` task, to the task runner (``flows.score_queue``); a shard reads,
   validates and scores its rows into temporary parts (``tasks.scoring.shard``);
4. once every shard of a file is done, commit it: write its drift signals' row
   (``flows.drift``), publish its parts, record it in the ledger, archive the input
   (``tasks.state.commit``);
5. report each scored file's drift (``flows.drift``) and the run (``flows.score_report``).

Before step 1, what killed runs left that no later step would remove (their temporaries)
is removed (``tasks.state.leftovers``).

Every input row ends in ``scored/`` or ``quarantine/`` exactly once; where each lands
is ``tasks.layout``. Run it as ``reviewflow score`` or ``python -m flows.score_reviews``.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.configuration import settings_from
from flows.drift import DriftWatch, thresholds
from flows.run_messages import finished, score_message
from flows.score_queue import api_for_workers, submit_to, task_runner_for
from flows.score_report import Progress, ScoreSummary, publish_summary
from flows.stopping import critical, raise_if_stopped
from tasks.errors import GPURequiredError, NoChampionError
from tasks.layout import DataLayout, day_of
from tasks.outcomes import FileOutcome, FileStatus
from tasks.reading import describe_supported
from tasks.scoring.queue import FileQueue
from tasks.scoring.shard import ScoringJob
from tasks.scoring.watch import Working
from tasks.scoring.workers import ModelRef, cached_model, cached_validator
from tasks.settings import Settings
from tasks.state.backend import RunState, TimedState, open_state
from tasks.state.claim import HANDLED_ELSEWHERE
from tasks.state.commit import Committer
from tasks.state.inbox import list_inbox
from tasks.state.leftovers import sweep_scoring_leftovers
from tasks.storage.local import Location, readable_name
from tasks.training.registry import Registry


@task(name="load-champion", cache_policy=NO_CACHE)
def load_champion(ref: ModelRef):
    """The champion's model, loaded once per process in Keras safe mode (tasks.scoring.workers)."""
    return cached_model(ref)


# A parameter left None takes the setting of its name where the run runs (on a worker: its
# environment's REVIEWFLOW_*; flows.configuration.settings_from). The reviewflow command
# names every one, and deployments/prefect.yaml those a deployment fixes, so the run and
# the deployment show the values used.
@flow(name="score-reviews", log_prints=True)
def score_reviews(data_dir: str | None = None,
                  require_gpu: bool | None = None,
                  settle_seconds: float | None = None,
                  task_runner: Literal["threads", "dask"] | None = None,
                  dask_address: str | None = None,
                  shard_rows: int | None = None,
                  state_url: str | None = None) -> dict:
    """Score every new review file in the inbox with the champion model.

    ``data_dir`` is a folder or a URL (s3://bucket/prefix); ``task_runner`` ("threads" or
    "dask"), ``dask_address`` and ``shard_rows`` choose where shards run
    (docs/scaling-out.md); ``state_url`` (postgresql://user@host:port/db) keeps the ledger
    and the locks in PostgreSQL instead of the state folder. Each left unset (None) is
    the setting of its name (``REVIEWFLOW_*``). Returns the run summary; the same figures
    are published as Prefect artifacts.
    """
    raise_if_stopped()  # one the engine dropped while it created this run
    logger = get_run_logger()
    settings = settings_from(data_dir, require_gpu=require_gpu, settle_seconds=settle_seconds,
                             task_runner=task_runner, dask_address=dask_address,
                             shard_rows=shard_rows, state_url=state_url)
    # Before anything is read or moved: a linked folder (the state folder too, which the
    # SQLite ledger would write through), a state database that is down and a root
    # scored with another run state (open_state checks its marker) each stop the run in
    # one line.
    DataLayout.of(settings).check_contained()
    if (waiting := _before_first_champion(settings, logger)) is not None:
        return finished(waiting, score_message(waiting))
    state = TimedState(open_state(settings.state_url, DataLayout.of(settings)))
    try:
        summary = _score_reviews(settings, state, logger)
    finally:
        state.close()
    return finished(summary, score_message(summary))


def _score_reviews(settings: Settings, ledger: RunState, logger) -> dict:
    layout = DataLayout.of(settings).ensure()  # one line, exit 2, if a folder is a link
    run_started, clock = datetime.now(UTC), time.perf_counter()
    local = settings.task_runner == "threads"  # shards run in this process
    device = local_device(settings, logger) if local else "Dask workers"
    registry = Registry(layout.models)
    version = registry.champion_version()
    model = ModelRef(version, registry.model_path(version))
    profile = registry.read_profile(version)
    if profile is None:  # said once per run: an older champion is not an error
        logger.info("champion %s was trained before reference profiles existed: the drift "
                    "signals that need one (length_psi, score_psi, script_shift, accuracy "
                    "drop) stay empty until a champion retrained by this version", version)
    if local:
        load_champion(model)  # fails here, before the inbox is touched, if it cannot load
    summary = ScoreSummary(model_version=version, device=device,
                           task_runner=settings.task_runner, profile=profile)
    day = day_of(run_started)
    committer = Committer(layout, ledger, version, day, logger)
    if swept := sweep_scoring_leftovers(layout, ledger):
        logger.info("removed %d temporaries that killed runs left (%s)", len(swept),
                    ", ".join(sorted({str(p.parent) for p in swept})))
    if marked := committer.finish_archive_marks():
        logger.info("marked %d files archived that a killed run had archived but not yet "
                    "marked in the ledger", marked)
    inbox = list_inbox(layout.incoming, settings.settle_seconds)
    summary.files_settling = len(inbox.settling)
    summary.inbox_note = inbox.note(settings.settle_seconds)
    for path in inbox.settling:
        logger.info("%s was modified in the last %.0f s; leaving it for the next run",
                    readable_name(path.name), settings.settle_seconds)
    if inbox.settling:  # a WARNING, so `prefect deployment run --watch` shows why
        logger.warning(summary.inbox_note)
    for path in inbox.unsupported:
        summary.files.append(_quarantine_unsupported(committer, path))
    if inbox.ready:
        job = ScoringJob.from_settings(settings, model, profile, run_started,
                                       layout.scored_partition(day), layout.rejected_partition(day))
        if local:  # built here once, so its slow import is not inside a file's time
            cached_validator(job.suite_config, job.validator_parameters)
        score_files(settings, layout, committer, job, day, inbox.ready, summary, logger)
        if not local:
            summary.device = ", ".join(sorted({w["device"] for w in summary.workers.values()})) \
                or "Dask workers"
    summary.seconds = time.perf_counter() - clock
    summary.state_seconds = getattr(ledger, "seconds", 0.0)
    publish_summary(summary, thresholds(settings))
    return summary.as_dict()


def _before_first_champion(settings: Settings, logger) -> dict | None:
    """The summary of a run on a registry that never had a champion (a new deployment
    whose first retraining has not run): a WARNING, nothing read or moved, and the run
    ends Completed, since every scheduled run until then is expected to find the same.
    None when there is a champion; a champion lost (``RegistryError``) fails the run."""
    try:
        Registry(DataLayout.of(settings).models).champion_version()
        return None
    except NoChampionError:
        pass
    incoming = DataLayout.of(settings).incoming
    inbox = list_inbox(incoming, settings.settle_seconds)
    waiting = len(inbox.ready) + len(inbox.settling) + len(inbox.unsupported)
    summary = ScoreSummary(model_version=None, device="", task_runner=settings.task_runner)
    summary.files_settling = len(inbox.settling)
    summary.inbox_note = (f"no champion yet: nothing scored; {waiting} files wait in {incoming} "
                          f"({inbox.note(settings.settle_seconds)}) for a first model: "
                          "`reviewflow retrain` or the retrain-model deployment")
    logger.warning(summary.inbox_note)
    publish_summary(summary, thresholds(settings))
    return summary.as_dict()


def local_device(settings: Settings, logger) -> str:
    """The device this process scores on, checked before anything is scored."""
    from tasks.model import compute_device

    device = compute_device()
    if settings.require_gpu and not device.startswith("GPU"):
        raise GPURequiredError("this run requires a GPU (require_gpu) but TensorFlow sees "
                               "none; run it on a GPU worker or install the 'gpu' extra")
    logger.info("scoring on %s", device)
    return device


def _quarantine_unsupported(committer: Committer, path: Location) -> FileOutcome:
    reason = ("a symbolic link; put the file itself in the inbox" if path.is_symlink()
              else f"not a supported review file {describe_supported()}")
    try:
        return committer.quarantine(path, reason)
    except FileNotFoundError:  # another run scoring this inbox quarantined it first
        return FileOutcome(readable_name(path.name), FileStatus.BUSY, detail=HANDLED_ELSEWHERE)


def score_files(settings: Settings, layout: DataLayout, committer: Committer, job: ScoringJob,
                day: str, ready: list[Location], summary: ScoreSummary, logger) -> None:
    """Claim, plan, score and commit each file on the task runner (``FileQueue``); report
    each one as it is done: its drift signals, its outcome, the progress."""
    drift = DriftWatch(layout, day, job, thresholds(settings), settings.monitor_emit_events,
                       logger)
    # Monitoring rows go with the commit; a stop waits for a commit under way.
    committer = dataclasses.replace(committer, monitor=drift.row, critical=critical)
    with api_for_workers(settings), task_runner_for(settings) as runner:
        progress = Progress(len(ready), logger)  # once the runner is up: rates exclude its start
        try:
            with FileQueue(settings, submit_to(runner, settings), job, committer) as queue:
                for done in queue.score(ready):
                    if isinstance(done, Working):  # the files in flight, while it waits
                        progress.working(done.files)
                        continue
                    outcome, results, started = done
                    drift.observe(outcome, results, summary)
                    summary.record(outcome, results, started)
                    progress.file_done(outcome)
                    raise_if_stopped()  # one a library dropped: no further file is begun
        finally:
            progress.close()
    summary.finish_files()


if __name__ == "__main__":
    from flows.common import run_as_command

    run_as_command("score")

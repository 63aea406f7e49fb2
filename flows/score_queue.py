"""Where the scoring flow's shards run: the Prefect tasks, and the task runner they go to.

The file queue itself (claim, plan, submit, commit) is ``tasks.scoring.queue.FileQueue``;
it is given ``submit_to(runner, settings)``, which runs each unit of its work as one of
the tasks below on the runner the settings choose: Prefect's thread pool in this process
(the default), or prefect-dask's ``DaskTaskRunner`` on a Dask cluster
(docs/scaling-out.md). A ``score-shard`` task is one shard of a file, a
``score-small-files`` task a bundle of small whole files, a ``score-file`` task a whole
file in one pass, in checkpoints (the thread runner).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks.scoring import shard as shard_scoring
from tasks.scoring.checkpointed import Checkpoints, score_checkpointed
from tasks.scoring.control import ShardControl
from tasks.scoring.planning import Shard
from tasks.scoring.queue import Submit
from tasks.scoring.shard import ScoringJob, ShardResult
from tasks.settings import Settings
from tasks.storage.local import Location


@task(name="score-shard", cache_policy=NO_CACHE)
def score_shard(path: Location, sha256: str, shard: Shard, job: ScoringJob,
                control: ShardControl, name: str | None = None) -> ShardResult:
    """``tasks.scoring.shard.score_shard`` as a task: one shard, on a thread or a Dask worker."""
    return shard_scoring.score_shard(path, sha256, shard, job, control=control, name=name)


@task(name="score-small-files", cache_policy=NO_CACHE)
def score_small_files(files: list[tuple[Location, str]], job: ScoringJob,
                      control: ShardControl, extras: list | None = None,
                      names: list[str] | None = None) -> list[ShardResult]:
    """``tasks.scoring.shard.score_small_files`` as a task: a bundle of small whole files."""
    return shard_scoring.score_small_files(files, job, control=control, extras=extras,
                                           names=names)


@task(name="score-file", cache_policy=NO_CACHE)
def score_file(path: Location, sha256: str, job: ScoringJob, checkpoints: Checkpoints,
               control: ShardControl, extra=None, name: str | None = None) -> list[ShardResult]:
    """``tasks.scoring.checkpointed.score_checkpointed`` as a task: a whole file in one
    pass, in checkpoints (the thread runner)."""
    return score_checkpointed(path, sha256, job, checkpoints, control, extra, name)


# The task that runs each function the queue submits.
TASK_OF = {shard_scoring.score_shard: score_shard,
           shard_scoring.score_small_files: score_small_files,
           score_checkpointed: score_file}


@dataclass(frozen=True)
class TaskFuture:
    """A Prefect future as the queue waits for one (``tasks.scoring.watch``)."""

    future: object

    def done(self) -> bool:
        return self.future.wrapped_future.done()

    def cancel(self) -> None:
        self.future.wrapped_future.cancel()  # a Dask future, or a thread's not yet started

    def wait(self, timeout: float | None = None) -> None:
        self.future.wait(timeout)

    def result(self):
        return self.future.result()


def submit_to(runner: TaskRunner, settings: Settings) -> Submit:
    """The queue's ``submit``: each function as its task, on ``runner``; on Dask with
    ``dask_resources``, only workers started with these resources (--resources GPU=1)
    take it."""
    resources = (dict(settings.dask_resources)
                 if settings.task_runner == "dask" and settings.dask_resources else None)

    def submit(function, **parameters) -> TaskFuture:
        if resources is not None:
            import dask

            with dask.annotate(resources=resources):
                return TaskFuture(runner.submit(TASK_OF[function], parameters=parameters))
        return TaskFuture(runner.submit(TASK_OF[function], parameters=parameters))

    return submit


def task_runner_for(settings: Settings) -> TaskRunner:
    """The task runner the settings choose for the shards.

    Built here, inside the run, because the flow's parameters choose it (``task_runner``,
    ``dask_address``), and a deployment run or a direct call passes them per run:
    ``score_reviews.with_options(task_runner=...)`` fixes a runner where the flow is
    called, before its parameters are known, and ``score_shard.submit()`` always goes to
    the flow's own runner. So the queue submits to this runner (``submit_to``).
    """
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=settings.thread_workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise RuntimeError("task_runner=dask needs prefect-dask (in requirements.lock; run "
                           "`make install`)") from exc
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    cluster = {"n_workers": settings.dask_workers, "threads_per_worker": 1, "processes": True,
               "dashboard_address": ":0"}  # any free port: several runs may share a host
    if settings.dask_resources:
        cluster["resources"] = dict(settings.dask_resources)
    return DaskTaskRunner(cluster_kwargs=cluster)


@contextlib.contextmanager
def api_for_workers(settings: Settings):
    """Point Dask workers at this process's Prefect API.

    Without PREFECT_API_URL (no-server mode) the flow talks to a temporary server this
    process started; a worker process would otherwise start one of its own (slow to
    start, and its task runs land elsewhere). The URL travels in the settings context
    that prefect-dask sends with each task. Workers on other hosts cannot reach that
    temporary server: give them a real one (PREFECT_API_URL) instead.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if settings.task_runner != "dask" or PREFECT_API_URL.value():
        yield
        return
    from prefect.client.orchestration import get_client

    url = str(get_client(sync_client=True).api_url)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield

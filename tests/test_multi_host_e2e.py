"""End to end, as an operator runs reviewflow on several hosts (issue 31, item 4;
deployments/README.md, "Several hosts").

What it brings up:

1. three hosts: network namespaces on a bridge when run as root (tests/netns.py), one
   for the training worker and one for each of two scoring workers; each has its own
   HOME, TMPDIR and PREFECT_HOME and reaches the servers only at the bridge address;
2. one PostgreSQL (tests/postgres.py) listening on the bridge, password (scram) only:
   a database for Prefect's server and one for reviewflow's run state;
3. Prefect's server on that PostgreSQL with an auth string (``prefect server start``,
   every default service, the scheduler looping every 5 s), reached by the hosts
   through a relay on the bridge, as a server bound beyond loopback is;
4. moto's S3 server on the bridge, holding the data root ``s3://<bucket>/team``;
5. plain ``prefect deploy --all --prefect-file deployments/prefect.yaml`` with
   REVIEWFLOW_DATA_DIR set to that URL; the workers have REVIEWFLOW_STATE_URL (with its
   password), PREFECT_API_AUTH_STRING and the bucket's endpoint in their environment.

Checked at once: the deployments' parameters, pull step, schedules and retraining
limit as prefect.yaml gives them, and upcoming auto-scheduled runs of both. The
quarter-hourly scoring schedule stays on from the start, as an operator starting from
an empty registry leaves it.

Then, with nobody starting a run by hand (every run below is made by the scheduler
from a schedule with parameters, as an operator adds one):

- a scoring run before the first champion ends Completed, the inbox untouched;
- a retraining on the sample's labeled files (``architecture=seed``, a first model)
  promotes a champion into the bucket;
- scoring runs score a settled inbox with it;
- more labeled reviews arrive and a retraining with the deployment's own parameters
  promotes a better champion;
- later files are scored by that one.

Checked: every row scored once, by the champion of its time; the history in the
bucket shows both promotions; no advisory lock is left; the server log has no
scheduler error; no worker printed TensorFlow's CUDA probe. Without root it runs
everything on loopback and warns.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import time
import uuid
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pytest

from tasks.storage.objects import as_location
from tasks.training.registry import Registry
from tests import netns, postgres
from tests.helpers import good_rows, quarantined_rows, scored_rows, scored_sql
from tests.prefect_server import (
    PREFECT,
    PROJECT,
    PrefectServer,
    cuda_probe_lines,
    runs_of,
    scheduler_errors,
    wait_for_upcoming_runs,
    worker_output,
)

SAMPLES = PROJECT / "data" / "samples"
AUTH = "operator:e2e-secret-4K"
SCHEDULER_LOOP_SECONDS = 5
RUN_TIMEOUT = 420
SETTLE_SECONDS = 10  # the scoring schedule's: objects on S3 appear whole when written
HOSTS = ("training", "scoring-1", "scoring-2")
POOLS = {"training": "reviewflow-training", "scoring-1": "reviewflow-scoring",
         "scoring-2": "reviewflow-scoring"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def prefect_harness():
    """This module brings its own server; skip the suite's in-process test harness."""
    yield


def more_labeled(seed: int = 7, rows: int = 300) -> pd.DataFrame:
    """New labeled reviews: sentences of the sample's reviews of one sentiment,
    recombined (so no text repeats one the split already holds)."""
    frame = pd.read_csv(SAMPLES / "labeled" / "reviews-a.csv")
    pick = random.Random(seed)
    made = []
    for label in ("negative", "positive"):
        sentences = [s.strip() for text in frame.loc[frame["sentiment"] == label, "review"]
                     for s in text.replace("<br />", " ").split(". ") if s.strip()]
        for i in range(rows // 2):
            made.append({"review_id": f"more-{label}-{i}", "sentiment": label,
                         "review": ". ".join(pick.sample(sentences, 3)) + "."})
    return pd.DataFrame(made)


@contextlib.contextmanager
def hosts_and_servers(tmp_path: Path):
    """(network or None, bridge address, PostgreSQL cluster, S3 endpoint), all stopped on exit."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    if (why := postgres.available()) is not None:
        pytest.skip(why)
    with contextlib.ExitStack() as stack:
        net, address = None, "127.0.0.1"
        if (why := netns.unavailable()) is None:
            net = stack.enter_context(netns.hosts(len(HOSTS)))
            address = net.address
        else:
            warnings.warn(f"workers run on loopback, not in separate network namespaces: "
                          f"{why}", stacklevel=1)
        hba = (f"host all all {net.subnet} scram-sha-256",) if net else ()
        cluster = postgres.temporary_cluster(listen=(address,), hba=hba)
        stack.callback(shutil.rmtree, cluster.folder, ignore_errors=True)
        stack.callback(cluster.stop)
        moto = ThreadedMotoServer(ip_address=address, port=0, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        host, port = moto.get_host_and_port()
        yield net, address, cluster, f"http://{host}:{port}"


def wait_for_runs(server: PrefectServer, deployment: str, count: int, since: float,
                  what: str) -> list:
    """The deployment's auto-scheduled runs once ``count`` of them are final; each must
    have Completed."""
    deadline = time.monotonic() + RUN_TIMEOUT
    with server.client() as client:
        found = client.read_deployment_by_name(deployment)
        while True:
            runs = runs_of(client, found)
            final = [run for run in runs if run.state and run.state.is_final()]
            if len(final) >= count:
                break
            assert time.monotonic() < deadline, (
                f"{what}: {len(final)} of {count} runs final after {RUN_TIMEOUT} s: "
                f"{[(r.name, r.state_type.value) for r in runs]}\n{server.processes.tails()}")
            time.sleep(1)
    assert all(run.auto_scheduled for run in runs), "a run not made by the scheduler"
    bad = [(run.name, run.state.type.value, run.state.message) for run in final
           if not run.state.is_completed()]
    assert not bad, f"{what}: {bad}\n{server.processes.tails()}"
    print(f"{what}: {len(final)} run(s) completed {time.monotonic() - since:.0f} s in")
    return final


def wait_until_scored(fs, root: str, server: PrefectServer) -> None:
    """Until nothing is left under incoming/ (claims included: each upload scored or
    quarantined, and archived) and no scoring run is still under way."""
    deadline = time.monotonic() + RUN_TIMEOUT
    with server.client() as client:
        scoring = client.read_deployment_by_name("score-reviews/scheduled")
        while True:
            fs.invalidate_cache()
            left = fs.find(f"{root}/incoming")
            busy = [run.name for run in runs_of(client, scoring)
                    if run.state_type.value in ("PENDING", "RUNNING")]
            if not left and not busy:
                return
            assert time.monotonic() < deadline, (
                f"left: {left}, runs under way: {busy}\n{server.processes.tails()}")
            time.sleep(1)


def add_schedule(server: PrefectServer, deployment: str, parameters: dict):
    """A 60 s interval schedule, first slot seconds ahead, with ``parameters``."""
    from prefect.client.schemas.schedules import IntervalSchedule

    anchor = datetime.now(UTC) + timedelta(seconds=8)
    with server.client() as client:
        found = client.read_deployment_by_name(deployment)
        [made] = client.create_deployment_schedules(
            found.id, [(IntervalSchedule(interval=timedelta(seconds=60), anchor_date=anchor),
                        True)], parameters=parameters)
        return found.id, made.id


def drop_schedule(server: PrefectServer, ids) -> None:
    """Remove the schedule and the runs it still had waiting (an operator's cleanup)."""
    with server.client() as client:
        client.delete_deployment_schedule(*ids)
        drop_waiting_runs(client, ids[0])


def drop_waiting_runs(client, deployment_id) -> None:
    for run in client.read_flow_runs():
        if run.deployment_id == deployment_id and run.state_type.value == "SCHEDULED":
            client.delete_flow_run(run.id)


def test_an_operator_deployment_on_three_hosts_trains_promotes_and_scores(tmp_path,
                                                                         monkeypatch):
    import s3fs

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)  # this process reads the registry in the bucket
    began = time.monotonic()
    with hosts_and_servers(tmp_path) as (net, address, cluster, endpoint):
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing",
                               skip_instance_cache=True)
        bucket = f"op-{uuid.uuid4().hex[:8]}"
        fs.mkdir(bucket)
        root = f"s3://{bucket}/team"
        state_url = cluster.create_database("reviewflow_state")
        prefect_db = cluster.create_database("prefect").replace(
            "postgresql://", "postgresql+asyncpg://", 1)
        server = PrefectServer(tmp_path, database_url=prefect_db, auth_string=AUTH)
        server.server_env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(
            SCHEDULER_LOOP_SECONDS)
        relay = contextlib.ExitStack()
        try:
            server.start()
            api = server.api_url.split("//", 1)[1].split("/", 1)[0]
            if net is not None:  # the hosts reach the API at the bridge address only
                api_host, api_port = api.split(":")
                relay_port = relay.enter_context(netns.forward(address, (api_host,
                                                                         int(api_port))))
                worker_api = f"http://{address}:{relay_port}/api"
                isolated = [net.reaches(i, [(address, relay_port), (address, cluster.port),
                                            ("127.0.0.1", int(api_port))])
                            for i in range(len(HOSTS))]
                assert isolated == [[True, True, False]] * len(HOSTS)
            else:
                worker_api = server.api_url
            for pool in sorted(set(POOLS.values())):
                server.prefect(f"pool-{pool}", "work-pool", "create", pool, "--type", "process")
            for i, name in enumerate(HOSTS):
                home = tmp_path / name
                for folder in ("home", "tmp", "prefect"):
                    (home / folder).mkdir(parents=True)
                command = [PREFECT, "worker", "start", "--pool", POOLS[name]]
                server.processes.start(
                    f"worker-{name}", net.exec(i, command) if net else command,
                    HOME=str(home / "home"), TMPDIR=str(home / "tmp"),
                    PREFECT_HOME=str(home / "prefect"), PREFECT_API_URL=worker_api,
                    PREFECT_WORKER_QUERY_SECONDS="1", REVIEWFLOW_STATE_URL=state_url,
                    REVIEWFLOW_STORAGE_OPTIONS=json.dumps({"endpoint_url": endpoint}),
                    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                    AWS_DEFAULT_REGION="us-east-1")
            server.prefect("deploy", "--no-prompt", "deploy", "--all", "--prefect-file",
                           "deployments/prefect.yaml", REVIEWFLOW_DATA_DIR=root)
            with server.client() as client:
                scoring = client.read_deployment_by_name("score-reviews/scheduled")
                training = client.read_deployment_by_name("retrain-model/nightly")
                assert scoring.parameters["data_dir"] == training.parameters["data_dir"] == root
                assert "state_url" not in scoring.parameters  # from the workers' environment
                assert [s.schedule.interval.total_seconds() for s in scoring.schedules] == [900]
                assert [s.schedule.cron for s in training.schedules] == ["30 2 * * *"]
                assert training.global_concurrency_limit.limit == 1
                assert scoring.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                               {"directory": str(PROJECT)}}]
                wait_for_upcoming_runs(server, client, (scoring, training))

            # 1. Before the first champion, a scheduled scoring run completes and waits.
            for sample in sorted((SAMPLES / "labeled").iterdir()):
                fs.put_file(str(sample), f"{root}/labeled/{sample.name}")
            inbox = []
            for sample in sorted((SAMPLES / "incoming").iterdir()):  # settle meanwhile
                fs.put_file(str(sample), f"{root}/incoming/{sample.name}")
                inbox.append(f"{root}/incoming/{sample.name}".split("://", 1)[1])
            add_schedule(server, "score-reviews/scheduled", {"settle_seconds": SETTLE_SECONDS})
            waited = wait_for_runs(server, "score-reviews/scheduled", 1, began,
                                   "scoring before the first champion")
            assert [run.state.name for run in waited] == ["Completed"] * len(waited)
            fs.invalidate_cache()
            assert not fs.exists(f"{root}/models/champion.json")
            assert sorted(fs.find(f"{root}/incoming")) == inbox  # untouched, not claimed

            # 2. A first model, from the sample's labeled files, by a scheduled run.
            retrain = add_schedule(server, "retrain-model/nightly",
                                   {"architecture": "seed", "epochs": 10})
            wait_for_runs(server, "retrain-model/nightly", 1, began, "first retraining")
            drop_schedule(server, retrain)
            registry = Registry(as_location(f"{root}/models", {"endpoint_url": endpoint}))
            first = registry.champion_version()

            # 3. Scheduled scoring (the schedule above) of the settled inbox with it.
            wait_until_scored(fs, root, server)

            # 4. More labeled reviews; the deployment's own parameters train a better one.
            with fs.open(f"{root}/labeled/more.csv", "w") as out:
                more_labeled().to_csv(out, index=False)
            retrain = add_schedule(server, "retrain-model/nightly", {})
            wait_for_runs(server, "retrain-model/nightly", 2, began, "second retraining")
            drop_schedule(server, retrain)
            second = registry.champion_version()
            assert second != first

            # 5. Later files: scored by the new champion, on the same schedule.
            later = good_rows("later", 40) + [{"review_id": "later-empty", "text": ""}]
            with fs.open(f"{root}/incoming/later.csv", "w") as out:
                pd.DataFrame(later).to_csv(out, index=False)
            wait_until_scored(fs, root, server)
            wait_for_runs(server, "score-reviews/scheduled", 1, began, "scoring")
        finally:
            server.stop()  # the workers first: a namespace lives while a process is in it
            relay.close()
        print(f"operator end to end: {time.monotonic() - began:.0f} s")

        assert scheduler_errors(server.server_log()) == []
        # The flow runs' output is in the workers' logs, and none is the CUDA probe.
        assert "scoring on " in "".join(worker_output(server.processes).values())
        assert cuda_probe_lines(server.processes) == []
        local = tmp_path / "copy"
        fs.invalidate_cache()
        fs.get(f"{root}/", str(local), recursive=True)
        scored = scored_rows(local).to_pandas()
        assert Counter(scored["review_id"]).most_common(1)[0][1] == 1  # nobody twice
        by_model = scored.groupby("model_version")["review_id"].apply(set).to_dict()
        later_ids = {row["review_id"] for row in later if row["text"]}
        assert by_model.get(second) == later_ids
        assert len(by_model.get(first, ())) == 120 and set(by_model) == {first, second}
        count, distinct = duckdb.sql(f"SELECT count(*), count(DISTINCT review_id) FROM "
                                     f"{scored_sql(local)}").fetchall()[0]
        assert count == distinct == 120 + len(later_ids)  # DuckDB reads the same
        history = registry.read_history()
        promoted = [(e["version"], e["replaced"]) for e in history if e["event"] == "promoted"]
        assert promoted == [(first, None), (second, first)]
        assert registry.champion()["previous"] == [first]
        with psycopg.connect(state_url) as db:
            assert db.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'"
                              ).fetchone()[0] == 0
            files = db.execute("SELECT COUNT(*), SUM(rows_scored) FROM scored_files"
                               " WHERE archived_at IS NOT NULL").fetchone()
        assert files == (3, 120 + len(later_ids))
        assert quarantined_rows(local).column("review_id").to_pylist() == ["later-empty"]
        for name in HOSTS:  # no state on any host's disk
            assert not list((tmp_path / name).rglob("ledger.sqlite"))

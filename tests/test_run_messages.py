"""What a finished run tells a person where they look (issue 39 item 4): the final state's
message on the session's Prefect server carries the run's counts and verdict, the flow
still returns its summary dict, and no artifact shows a Python dict or list."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
from conftest import PROJECT, SAMPLES, reviewflow_command

from flows.accuracy import measure_accuracy
from flows.retrain_model import retrain_model
from flows.score_reviews import score_reviews
from tests.helpers import good_rows, layout_of, write_csv
from tests.test_prefect_api import processes_using


def flow_run_of(state):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def artifact_texts(state) -> dict[str, str]:
    """Each artifact of the run as the UI gets it: the markdown, or the table's JSON."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return {a.key: a.data if isinstance(a.data, str) else repr(a.data) for a in found}


def assert_no_python_values(artifacts: dict[str, str]) -> None:
    """A table artifact is a JSON list of rows; inside it, as in markdown, a cell that
    holds a dict or a list shows as ``{'`` / ``[{`` / ``['``."""
    import json

    assert artifacts
    for key, text in artifacts.items():
        cells = text
        if text.startswith("[{"):  # a table: look inside its cells
            cells = "\n".join(str(v) for row in json.loads(text) for v in row.values())
        for python in ("{'", "[{", "['", '{"'):
            assert python not in cells, (key, python, cells[:300])


def test_a_scoring_runs_state_message_carries_its_counts(scoring_root):
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "good.csv", good_rows("g", 30))
    write_csv(inbox / "mixed.csv", good_rows("m", 10) + [{"review_id": "m-bad", "text": ""}])
    (inbox / "notes.docx").write_bytes(b"not a review file")
    for name in ("good.csv", "mixed.csv", "notes.docx"):
        os.utime(inbox / name, (time.time() - 3600,) * 2)
    write_csv(inbox / "still-writing.csv", good_rows("w", 5))  # settling: left for later

    state = score_reviews(data_dir=str(scoring_root), settle_seconds=600, return_state=True)
    summary = state.result()
    assert isinstance(summary, dict) and summary["rows_scored"] == 40
    assert (summary["files_scored"], summary["rows_quarantined"], summary["files_quarantined"],
            summary["files_settling"]) == (2, 1, 1, 1)
    run = flow_run_of(state)
    assert run.state.is_completed()
    version = summary["model_version"]
    assert run.state.message == (f"scored 40 rows from 2 files with {version}; 1 rows and "
                                 "1 files quarantined; 1 files waiting")
    assert_no_python_values(artifact_texts(state))

    # called as a function, the flow returns the summary dict itself
    again = score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert isinstance(again, dict) and again["rows_scored"] == 5


def test_a_run_before_any_champion_says_what_waits(data_dir):
    write_csv(layout_of(data_dir).incoming / "early.csv", good_rows("e", 3))
    state = score_reviews(data_dir=str(data_dir), settle_seconds=0, return_state=True)
    message = flow_run_of(state).state.message
    assert message.startswith("no champion yet: nothing scored; 1 files wait in "), message
    assert state.result()["model_version"] is None


def test_retraining_and_measuring_accuracy_say_their_verdict(data_dir):
    shutil.copytree(SAMPLES / "labeled", data_dir / "labeled", dirs_exist_ok=True)
    state = retrain_model(data_dir=str(data_dir), architecture="seed", epochs=10,
                          return_state=True)
    summary = state.result()
    assert isinstance(summary, dict) and summary["promoted"], summary
    message = flow_run_of(state).state.message
    assert message == (f"candidate {summary['version']} promoted to champion (gate accuracy "
                       f"{summary['validation_accuracy']:.4f} on {summary['validation_rows']} "
                       f"rows): {summary['reason']}")
    assert_no_python_values(artifact_texts(state))

    again = retrain_model(data_dir=str(data_dir), architecture="seed", epochs=10,
                          return_state=True)
    assert again.result()["nothing_new"]
    assert flow_run_of(again).state.message == f"no new version: {again.result()['reason']}"

    # the labeled reviews scored, then measured against their own labels
    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy(sample, layout_of(data_dir).incoming / sample.name)
    scored = score_reviews(data_dir=str(data_dir), settle_seconds=0)
    measured = measure_accuracy(data_dir=str(data_dir), emit_events=False, return_state=True)
    figures = measured.result()
    champion = next(v for v in figures["versions"] if v["model_version"] == summary["version"])
    assert champion["rows"] == figures["matched_reviews"] > 0
    assert scored["rows_scored"] >= champion["rows"]
    message = flow_run_of(measured).state.message
    assert message.startswith(
        f"late labels: {figures['labeled_reviews']} labeled reviews, "
        f"{figures['matched_reviews']} of them scored; champion {summary['version']}: "
        f"accuracy {champion['accuracy']:.4f} on {champion['rows']} reviews (gate "), message
    assert_no_python_values(artifact_texts(measured))


def test_models_list_shows_each_versions_architecture_and_training_rows(scoring_root, capsys):
    import json

    from flows.cli import main

    versions = layout_of(scoring_root).models / "versions"
    (champion,) = [p.name for p in versions.iterdir()]
    metrics = json.loads((versions / champion / "metrics.json").read_text(encoding="utf-8"))
    # a version recorded before metrics.json named its architecture and parts
    old = versions / "20200101T000000Z-000000"
    shutil.copytree(versions / champion, old)
    recorded = {k: v for k, v in metrics.items() if k not in ("hyperparameters", "parts")}
    (old / "metrics.json").write_text(json.dumps(recorded), encoding="utf-8")

    assert main(["models", "list", "--data-dir", str(scoring_root)]) == 0
    out = capsys.readouterr().out.split("\nhistory:")[0]  # the versions, a line each
    lines = {line[2:].split()[0]: line for line in out.splitlines() if line.strip()}
    rows = metrics["hyperparameters"]["refit"]["rows"]
    assert f"  seed, {rows:,} training rows  " in lines[champion], lines[champion]
    assert lines[champion].startswith("*")
    assert "  -, - training rows  " in lines[old.name], lines[old.name]


@pytest.fixture
def own_api_env(tmp_path):
    """A user's shell with no Prefect server: the command starts its temporary API."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REVIEWFLOW_", "PREFECT_API_URL", "PREFECT_UI_URL"))}
    env.update(PREFECT_HOME=str(home), PREFECT_LOGGING_LEVEL="INFO", REVIEWFLOW_SETTLE_SECONDS="0")
    yield env
    for pid in processes_using(home):
        os.kill(pid, signal.SIGKILL)


def cli_score(root, env) -> str:
    write_csv(layout_of(root).incoming / "few.csv", good_rows("f", 5))
    done = subprocess.run(reviewflow_command("score", "--data-dir", str(root), "--settle-seconds", "0"), cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=480)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scored 5 rows from 1 files" in done.stdout
    return done.stdout + done.stderr


def test_a_command_on_its_temporary_api_says_where_the_records_go_not_a_dead_link(
        scoring_root, own_api_env):
    output = cli_score(scoring_root, own_api_env)
    assert "View at" not in output and "/runs/" not in output, output[-3000:]
    records = f"the records of its runs stay in {own_api_env['PREFECT_HOME']}/prefect.db"
    assert output.count(records) == 1, output[-3000:]
    assert output.count("run `make server` and set PREFECT_API_URL=") == 1


def test_a_command_on_the_users_own_server_keeps_the_link(scoring_root, subprocess_env):
    from prefect.settings import PREFECT_API_URL

    output = cli_score(scoring_root, subprocess_env)
    ui = PREFECT_API_URL.value().removesuffix("/api")
    assert f"View at {ui}/runs/flow-run/" in output, output[-3000:]
    assert "records of its runs" not in output

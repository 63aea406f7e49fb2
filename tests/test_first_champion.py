"""Scoring before the first champion (issue 37, item 10): a new deployment's scheduled
runs find no champion until its first retraining. A registry that never had one ends
the run Completed with a WARNING, nothing touched; one that had a champion and lost it
(champion.json missing or cut short, its model gone) fails the run loudly. The
`reviewflow score` command exits 2 with one line for both. Local roots and s3://
roots (moto), flow runs on the session's Prefect server, their states read back with
Prefect's client.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid

import pytest
from prefect import get_client
from prefect.client.schemas.objects import StateType

from tasks.layout import CHAMPION_FILE, DECISION_FILE, HISTORY_FILE, MODEL_FILE, VERSIONS_FOLDER
from tasks.storage.objects import as_location
from tasks.training.registry import Registry
from tests.helpers import good_rows, layout_of, quarantined_files, write_csv

WAITING = "no champion yet: nothing scored; 2 files wait in "


def run_state(root: str) -> StateType:
    """The state Prefect's server recorded for one score-reviews run on ``root``."""
    from flows.score_reviews import score_reviews

    state = score_reviews(data_dir=root, settle_seconds=0, return_state=True)
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).state.type


def cli_score(root: str, capsys) -> tuple[int, list[str]]:
    """`reviewflow score` on ``root``: its exit code and what it printed to stderr."""
    from flows.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["score", "--data-dir", root])
    return stopped.value.code, capsys.readouterr().err.strip().splitlines()


def fill_inbox(incoming) -> list[str]:
    write_csv(incoming / "a.csv", good_rows("a", 3))
    (incoming / "notes.txt").write_text("not reviews")  # waits too: nothing is quarantined
    return sorted(p.name for p in incoming.iterdir())


def copy_models(trained_models, models, damage: str) -> None:
    shutil.rmtree(models)
    shutil.copytree(trained_models, models)
    champion = Registry(models).champion_version()
    if damage == "pointer removed":
        (models / CHAMPION_FILE).unlink()
    elif damage == "pointer cut short":
        (models / CHAMPION_FILE).write_text('{"version": "2026')
    elif damage == "model removed":
        (models / VERSIONS_FOLDER / champion / MODEL_FILE).unlink()
    elif damage == "pointer and history removed":
        (models / CHAMPION_FILE).unlink()
        (models / HISTORY_FILE).unlink()
    elif damage == "never promoted":  # a first candidate that was rejected
        (models / CHAMPION_FILE).unlink()
        (models / HISTORY_FILE).unlink()
        decision = models / VERSIONS_FOLDER / champion / DECISION_FILE
        decision.write_text(json.dumps({**json.loads(decision.read_text()), "promote": False}))


@pytest.mark.parametrize("models", ["empty", "never promoted"])
def test_a_registry_that_never_had_a_champion_completes_the_run_with_a_warning(
        models, data_dir, trained_models, caplog, capsys):
    layout = layout_of(data_dir)
    if models != "empty":
        copy_models(trained_models, layout.models, models)
    before = fill_inbox(layout.incoming)
    with caplog.at_level(logging.WARNING):
        assert run_state(str(data_dir)) == StateType.COMPLETED
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith(WAITING) and "reviewflow retrain" in m for m in warnings), warnings
    # Nothing read, moved or written: the inbox as it was, no quarantine, no ledger.
    assert sorted(p.name for p in layout.incoming.iterdir()) == before
    assert quarantined_files(data_dir) == {} and not layout.ledger.exists()

    code, lines = cli_score(str(data_dir), capsys)
    assert code == 2 and len(lines) == 1 and "no champion model" in lines[0], lines


@pytest.mark.parametrize("damage", ["pointer removed", "pointer cut short", "model removed",
                                    "pointer and history removed"])
def test_a_registry_that_lost_its_champion_fails_the_run(damage, data_dir, trained_models,
                                                         capsys):
    layout = layout_of(data_dir)
    copy_models(trained_models, layout.models, damage)
    before = fill_inbox(layout.incoming)
    assert run_state(str(data_dir)) == StateType.FAILED
    assert sorted(p.name for p in layout.incoming.iterdir()) == before

    code, lines = cli_score(str(data_dir), capsys)
    assert code == 2 and len(lines) == 1, lines
    assert CHAMPION_FILE in lines[0] and "no champion model" not in lines[0], lines


def test_on_s3_a_champion_never_had_waits_and_one_lost_fails(s3_env, trained_models, tmp_path,
                                                             monkeypatch, caplog, capsys):
    endpoint, fs = s3_env
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint}))
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state"))
    bucket = f"first-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/reviews"
    for name in ("a.csv", "b.csv"):
        fs.pipe(f"{root}/incoming/{name}", b"review_id,text\n1,A fine film.\n")

    with caplog.at_level(logging.WARNING):
        assert run_state(root) == StateType.COMPLETED
    assert any(r.getMessage().startswith(WAITING) for r in caplog.records)
    code, lines = cli_score(root, capsys)
    assert code == 2 and len(lines) == 1 and "no champion model" in lines[0], lines

    fs.put(str(trained_models), f"{root}/models", recursive=True)
    fs.rm(f"{root}/models/{CHAMPION_FILE}")
    registry = Registry(as_location(f"{root}/models", {"endpoint_url": endpoint}))
    assert registry.last_champion() is not None
    assert run_state(root) == StateType.FAILED
    code, lines = cli_score(root, capsys)
    assert code == 2 and len(lines) == 1 and CHAMPION_FILE in lines[0], lines
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{root}/incoming")) == ["a.csv", "b.csv"]

"""Watching the model in production: reference profiles, drift signals on every scoring
run (monitoring/, WARNINGs, the Prefect event), `reviewflow monitor`, and retraining that
knows when it has nothing to learn."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import yaml
from conftest import PROJECT, SAMPLES

from flows.accuracy import ACCURACY_EVENT
from flows.cli import main
from flows.drift import DRIFT_EVENT, drift_resource
from flows.score_reviews import score_reviews
from tasks import monitoring
from tasks.layout import TRENDS_FILE
from tasks.settings import Settings
from tasks.training.record import nothing_new, recorded_inputs
from tasks.training.registry import PROFILE_FILE, Registry
from tests.helpers import layout_of, monitoring_rows, monitoring_sql, scored_rows


# ---------------------------------------------------------------- pure functions
def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(7)
    reference = rng.normal(100, 20, 5000)
    edges = monitoring.decile_edges(reference)
    expected = monitoring.shares(monitoring.bin_counts(reference, edges))
    same = monitoring.psi(expected, monitoring.bin_counts(rng.normal(100, 20, 5000), edges))
    shifted = monitoring.psi(expected, monitoring.bin_counts(rng.normal(40, 10, 5000), edges))
    assert same < 0.02
    assert shifted > 1.0
    assert monitoring.psi(expected, [0] * len(expected)) is None  # no rows: no figure


def test_counts_add_up_over_batches_as_over_one():
    texts = pa.array(["a good film", "un film 좋은 영화", "映画 great", "dull"] * 30)
    scores = np.linspace(0, 1, len(texts))
    labels = pa.array([1, 0, None, 1] * 30, pa.int8())
    vocabulary = monitoring.Vocabulary(pa.array(["a", "good", "film", "great", "좋"]), True)
    profile = {"length": {"edges": [5.0, 10.0]}, "score": {"edges": [0.5]}}
    whole = monitoring.observe_batch(texts, scores, labels, vocabulary, profile, 10_000)
    parts = monitoring.MonitorCounts()
    for start in range(0, len(texts), 50):
        parts.add(monitoring.observe_batch(texts[start:start + 50], scores[start:start + 50],
                                           labels[start:start + 50], vocabulary, profile,
                                           10_000))
    assert parts == whole
    assert whole.rows == 120 and whole.labeled == 90 and sum(whole.score_bins) == 120
    assert whole.letters[monitoring.SCRIPTS.index("hangul")] == 4 * 30
    assert whole.letters[monitoring.SCRIPTS.index("han")] == 2 * 30


def test_unknown_tokens_are_counted_in_the_models_own_terms():
    """The tokens looked up are the model's: its standardization (same RE2 patterns,
    ASCII-only lower-casing) and, for the n-gram split, single characters of unspaced
    scripts, which the model's own split produces too."""
    import tensorflow as tf

    from tasks.model import (
        ODD_SEPARATORS,
        UNSPACED_SCRIPTS,
        split_ngrams,
        standardize_keeping_marks,
        standardize_review,
    )

    assert monitoring.UNSPACED_SCRIPTS == UNSPACED_SCRIPTS
    assert monitoring.ODD_SEPARATORS == ODD_SEPARATORS
    texts = ["Great FILM!<br />It's ÉLAN, 재미있었어요 映画。", "tab\tand  spaces, 123",
             "odd\u00a0spaces\u2028and\x85breaks\u200b, kept\u3000apart"]
    theirs = [t.decode() for t in standardize_review(tf.constant(texts)).numpy()]
    assert monitoring.standardize(pa.array(texts)).to_pylist() == theirs
    marked = [t.decode() for t in standardize_keeping_marks(tf.constant(texts)).numpy()]
    assert monitoring.standardize(pa.array(texts), marks_are_words=True).to_pylist() == marked
    assert {"!", "'", ",", "。"} <= set(monitoring.tokens(pa.array(texts), True, True).to_pylist())
    model_tokens = {t.decode() for t in split_ngrams(tf.constant(theirs)).flat_values.numpy()}
    ours = set(monitoring.tokens(pa.array(texts), True).to_pylist())
    assert ours <= model_tokens
    assert {"great", "film", "재", "映", "123", "Élan"} <= ours


# ---------------------------------------------------------------- reference profile
def test_each_retraining_saves_a_reference_profile_without_text(trained_models):
    registry = Registry(trained_models)
    version = registry.champion_version()
    path = registry.versions / version / PROFILE_FILE
    profile = registry.read_profile(version)
    assert profile["version"] == version and profile["architecture"] == "seed"
    assert profile["script_mix"]["latin"] == 1.0
    assert profile["vocabulary"]["coverage"] > 0.9  # held-out text, the model's own words
    assert abs(sum(profile["length"]["shares"]) - 1) < 1e-9
    assert len(profile["score"]["shares"]) == len(profile["score"]["edges"]) + 1
    metrics = registry.read_version(version)["metrics"]["validation"]
    assert profile["accuracy"] == round(metrics["accuracy"], 4)  # the same held-out rows
    text = path.read_text()
    frame = pd.read_csv(SAMPLES / "labeled" / "reviews-a.csv")
    # Figures only: no review, nor any of its sentences, is in the file.
    sentences = {s.strip() for review in frame["review"] for s in review.split(".") if len(s) > 12}
    assert sentences and not any(s in text for s in sentences)


# ---------------------------------------------------------------- scoring runs
def write_english(path: Path) -> Path:
    """600 English reviews with labels, like those the champion learned from."""
    frame = pd.concat([
        pd.read_csv(SAMPLES / "labeled" / "reviews-a.csv").rename(
            columns={"review": "text", "sentiment": "label"}),
        pd.read_json(SAMPLES / "labeled" / "reviews-b.jsonl", lines=True)], ignore_index=True)
    frame["review_id"] = [f"en-{i}" for i in range(len(frame))]
    frame[["review_id", "text", "label"]].to_csv(path, index=False)
    return path


def test_english_champion_flags_a_korean_file_and_not_an_english_one(scoring_root,
                                                                     warnings_seen, capsys):
    inbox = scoring_root / "incoming"
    english = write_english(inbox / "english.csv")
    korean = inbox / "korean.tsv"
    shutil.copy(SAMPLES / "korean" / "test.tsv", korean)
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (english, korean)}
    champion = Registry(scoring_root / "models").champion_version()

    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)

    drift = summary["drift"]
    assert drift["has_profile"] and drift["files_flagged"] == 1
    rows = monitoring_rows(scoring_root).to_pandas().set_index("source_file")
    assert sorted(rows.index) == ["english.csv", "korean.tsv"]
    ko, en = rows.loc["korean.tsv"], rows.loc["english.csv"]
    assert ko["flow_run_id"] and ko["flow_run_id"] == en["flow_run_id"]  # one run
    print("\nkorean.tsv:", ko.drop(["flow_run_id", "source_sha256"]).to_dict())
    print("english.csv:", en.drop(["flow_run_id", "source_sha256"]).to_dict())
    assert {"oov_rate", "script_shift"} <= set(ko["flags"])
    assert ko["oov_rate"] > 0.9 and ko["share_hangul"] > 0.9 and ko["script_shift"] > 0.9
    assert ko["score_psi"] > 0.25 and ko["labeled_rows"] == 300
    assert list(en["flags"]) == []
    assert en["oov_rate"] < 0.05 and en["share_latin"] == 1.0 and en["labeled_rows"] == 600
    scored = scored_rows(scoring_root)
    live = scored.filter(ds.field("source_file") == "english.csv").to_pandas()
    assert en["accuracy"] == round((live["predicted_label"] == live["label"]).mean(), 4)
    assert en["length_psi"] < 0.25 and en["score_psi"] < 0.25
    for name, row in rows.iterrows():
        assert row["model_version"] == champion and row["source_sha256"] == hashes[name]
        assert row["has_profile"] and row["run_date"] == row["run_started"].strftime("%Y-%m-%d")
    assert any(line.startswith("korean.tsv looks unlike the champion's training data: ")
               and "% of its tokens are unknown to it; it was trained on 100% Latin-script text"
               in line for line in warnings_seen), warnings_seen
    assert not any("english.csv" in line for line in warnings_seen), warnings_seen

    # The same rows through DuckDB and pandas, as scored/ reads.
    flagged = duckdb.sql(f"SELECT source_file FROM {monitoring_sql(scoring_root)}"
                         f" WHERE len(flags) > 0").fetchall()
    assert flagged == [("korean.tsv",)]
    assert len(pd.read_parquet(layout_of(scoring_root).monitoring)) == 2

    # The Prefect event, on the session's server, naming the model and the file.
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:  # other tests' runs share this server: this run's events only
            events = [e for e in client.read_events(
                EventFilter(event=EventNameFilter(name=[DRIFT_EVENT])), limit=50).events
                if e.payload.get("flow_run_id") == ko["flow_run_id"]]
            if events or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert [e.resource.id for e in events] == [f"reviewflow.model.{champion}"]
    assert events[0].related[0].id == f"reviewflow.file.{hashes['korean.tsv']}"
    assert events[0].payload["file"] == "korean.tsv"

    # `reviewflow monitor`: the run per version, its flags, and a PNG of the trends.
    capsys.readouterr()
    main(["monitor", "--data-dir", str(scoring_root)])
    out = capsys.readouterr().out
    assert f"model {champion}: 1 runs, 2 files" in out
    korean_line = next(line for line in out.splitlines() if "korean.tsv" in line)
    assert "oov_rate, script_shift" in korean_line
    monitoring_folder = layout_of(scoring_root).monitoring
    png = monitoring_folder / TRENDS_FILE
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_parquet(monitoring_folder)) == 2  # the PNG is not read as data


def test_a_champion_without_a_profile_gives_empty_signals_not_an_error(scoring_root,
                                                                       warnings_seen):
    registry = Registry(scoring_root / "models")
    (registry.versions / registry.champion_version() / PROFILE_FILE).unlink()
    shutil.copy(SAMPLES / "korean" / "test.tsv", scoring_root / "incoming" / "korean.tsv")
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert summary["files_scored"] == 1 and summary["drift"]["has_profile"] is False
    row = monitoring_rows(scoring_root).to_pandas().set_index("source_file").loc["korean.tsv"]
    assert not row["has_profile"]
    assert pd.isna(row["length_psi"]) and pd.isna(row["score_psi"]) and pd.isna(row["script_shift"])
    assert row["oov_rate"] > 0.9 and list(row["flags"]) == ["oov_rate"]  # the model alone says so
    assert any("no reference profile" in line for line in warnings_seen), warnings_seen


# ---------------------------------------------------------------- nothing new to learn
def test_unchanged_labels_make_no_new_version_unless_forced(labeled_root, capsys):
    registry = Registry(labeled_root / "models")
    champion = registry.champion_version()
    before = sorted(p.name for p in registry.versions.iterdir())
    # The champion was trained on these files with seed, 10 epochs (conftest).
    args = ["retrain", "--data-dir", str(labeled_root), "--architecture", "seed", "--epochs", "10"]
    main(args)
    assert "no new version: nothing new to learn" in capsys.readouterr().out
    assert sorted(p.name for p in registry.versions.iterdir()) == before
    last = registry.read_history()[-1]
    assert last["event"] == "nothing new to learn" and last["version"] == champion
    assert registry.champion_version() == champion

    main([*args, "--force"])
    assert "candidate " in capsys.readouterr().out
    new = sorted(set(p.name for p in registry.versions.iterdir()) - set(before))
    assert len(new) == 1 and (registry.versions / new[0] / PROFILE_FILE).is_file()


def test_what_counts_as_something_new(trained_models):
    metrics = Registry(trained_models).read_version(
        Registry(trained_models).champion_version())["metrics"]
    inputs = recorded_inputs(metrics)
    assert inputs["content_sha256"] and inputs["train"] and inputs["epochs"] == 10
    assert nothing_new(dict(inputs), metrics)
    for key, value in (("epochs", 11), ("architecture", "ngram"), ("train", "0" * 64),
                       ("content_sha256", "f" * 64), ("validation_fraction", 0.3),
                       ("refit_with_selection", False)):
        assert not nothing_new({**inputs, key: value}, metrics), key
    # A version trained before the content fingerprint existed: ids and labels decide.
    older = json.loads(json.dumps(metrics))
    del older["training_data"]["content_sha256"]
    assert nothing_new({**inputs, "content_sha256": "f" * 64}, older)


# ---------------------------------------------------------------- the deployment trigger
def uncommented_triggers(text: str) -> str:
    """deployments/prefect.yaml with its commented `triggers:` example uncommented."""
    lines, out, inside = text.splitlines(), [], False
    for line in lines:
        if line.startswith("    # triggers:"):
            inside = True
        elif inside and not line.startswith("    #   "):
            inside = False
        out.append("    " + line[6:] if inside else line)
    return "\n".join(out) + "\n"


def test_the_yaml_triggers_validate_and_match_the_drift_and_accuracy_events():
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers
    from prefect.events.schemas.events import Resource

    text = (PROJECT / "deployments" / "prefect.yaml").read_text()
    assert "\n    triggers:" not in text  # shipped commented out
    config = yaml.safe_load(uncommented_triggers(text))
    nightly = next(d for d in config["deployments"] if d["name"] == "nightly")
    drift, accuracy = _initialize_deployment_triggers("nightly", nightly["triggers"])
    assert drift.expect == {DRIFT_EVENT} and accuracy.expect == {ACCURACY_EVENT}
    for trigger in (drift, accuracy):
        assert trigger.match.matches(Resource(drift_resource("20260101T000000Z-abcdef")))
        assert not trigger.match.matches(Resource({"prefect.resource.id": "prefect.flow-run.x"}))
    for other in ("scheduled", "daily"):
        assert "triggers" not in next(d for d in config["deployments"] if d["name"] == other)


# Each event as the flow that emits it emits it, by the flow's own function.
EMIT = {
    DRIFT_EVENT: ("from flows.drift import emit_drift_event\n"
                  "from tasks.monitoring import Flag\n"
                  "emit_drift_event('20260101T000000Z-abcdef', 'korean.tsv', 'ab' * 32,"
                  " {'oov_rate': 1.0}, [Flag('oov_rate', 'korean.tsv looks unlike ...')])\n"),
    ACCURACY_EVENT: ("from flows.accuracy import emit_accuracy_event\n"
                     "emit_accuracy_event('20260101T000000Z-abcdef', {'rows': 900,"
                     " 'accuracy': 0.71, 'gate_accuracy': 0.87, 'dropped': []},"
                     " 'production accuracy of model 20260101T000000Z-abcdef dropped ...')\n"),
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("event", [DRIFT_EVENT, ACCURACY_EVENT])
def test_a_drift_or_accuracy_event_starts_retrain_model_on_a_real_server(tmp_path, event):
    """`prefect deploy` of the yaml with its triggers uncommented, on `prefect server
    start`; score-reviews' (drift) or measure-accuracy's (accuracy dropped) own event
    function emits its event; the server's automation for it creates a
    retrain-model/nightly run (no worker needed: the run waits in its pool)."""
    from tests.prefect_server import PrefectServer

    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(uncommented_triggers(
        (PROJECT / "deployments" / "prefect.yaml").read_text()))
    server = PrefectServer(tmp_path)
    try:
        server.start()
        for pool in ("reviewflow-scoring", "reviewflow-training"):
            server.prefect(f"pool-{pool}", "work-pool", "create", pool, "--type", "process")
        server.prefect("deploy", "--no-prompt", "deploy", "--all", "--prefect-file",
                       str(prefect_file), REVIEWFLOW_DATA_DIR=str(tmp_path / "data"))
        with server.client() as client:
            nightly = client.read_deployment_by_name("retrain-model/nightly")
            automations = [client.read_automations_by_name(f"nightly__automation_{n}")
                           for n in (1, 2)]
        assert [found[0].trigger.expect for found in automations] == [{DRIFT_EVENT},
                                                                     {ACCURACY_EVENT}]
        server.processes.run("emit", [sys.executable, "-c", (
            EMIT[event] + "from prefect.events.worker import EventsWorker\n"
                          "EventsWorker.drain_all()\n")])
        deadline = time.monotonic() + 120
        triggered = []
        with server.client() as client:
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

            while not triggered and time.monotonic() < deadline:
                runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[nightly.id])))
                triggered = [run for run in runs if not run.auto_scheduled]
                time.sleep(1)
        assert triggered, f"no run of retrain-model/nightly was created:\n{server.processes.tails()}"
        assert triggered[0].parameters["data_dir"] == str(tmp_path / "data")
        # Created by the automation for this event, not the other one.
        expected = automations[[DRIFT_EVENT, ACCURACY_EVENT].index(event)][0]
        assert triggered[0].created_by.id == expected.id, triggered[0].created_by
    finally:
        server.stop()


def test_the_drift_monitors_accuracy_drop_is_compared_exactly():
    """A file 0.1 below the champion's held-out 0.8 is not "more than 0.1" below it."""
    def found(accuracy: float) -> dict:
        return {"rows": 500, "labeled_rows": 500, "accuracy": accuracy, "oov_rate": None,
                "script_shift": None, "length_psi": None, "score_psi": None,
                "expected": {"accuracy": 0.8}}

    limits = replace(monitoring.Thresholds.from_settings(Settings()), max_accuracy_drop=0.1,
                     min_rows=100)
    assert 0.8 - 0.7 > 0.1  # in floats
    assert monitoring.flags("f.csv", found(0.7), None, limits) == []
    raised = monitoring.flags("f.csv", found(0.6999), None, limits)
    assert [flag.signal for flag in raised] == ["accuracy"]

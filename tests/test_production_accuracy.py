"""Production accuracy from late labels (issue 40, item 3), through the product: the
measure-accuracy flow on a scored root (production_accuracy/ read back with pyarrow,
pandas and DuckDB, the WARNING, the event on the session's Prefect server, the
artifacts), `reviewflow monitor` and `monitor --json`, and the join on an s3 root. The
deployment trigger on a real server is tests/test_monitoring.py's."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from flows.accuracy import ACCURACY_EVENT, measure_accuracy
from flows.cli import main
from tasks.late_labels import read_accuracy, week_of
from tasks.layout import DataLayout
from tasks.settings import Settings
from tasks.training.registry import Registry
from tests.helpers import layout_of, score, scored_rows, write_csv


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 6, day, hour, tzinfo=UTC)


# ---------------------------------------------------------------- the flow, the event, monitor
def english_reviews(prefix: str, n: int) -> list[dict]:
    words = ["wonderful, moving and a delight", "dull, tedious and far too long",
             "a gem I would gladly watch again", "a mess I want my evening back from"]
    return [{"review_id": f"{prefix}-{i}", "text": f"Review {i}: the film was {words[i % 4]}."}
            for i in range(n)]


def read_flow_run_artifacts(flow_run_id: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {artifact.key: artifact for artifact in artifacts}


def events_of(name: str, flow_run_id: str, wait: float = 60) -> list:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    deadline = time.monotonic() + wait
    with get_client(sync_client=True) as client:
        while True:  # other tests' runs share this server: this run's events only
            found = [e for e in client.read_events(EventFilter(event=EventNameFilter(
                name=[name])), limit=50).events if e.payload.get("flow_run_id") == flow_run_id]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(1)


def test_late_labels_measure_the_champion_warn_emit_and_show_in_monitor(
        scoring_root, warnings_seen, monkeypatch, capsys):
    champion = Registry(layout_of(scoring_root).models).champion_version()
    layout = layout_of(scoring_root)
    reviews = english_reviews("late", 600)
    write_csv(layout.incoming / "to-score.csv", reviews)
    summary = score(scoring_root)
    assert summary["files_scored"] == 1
    predicted = scored_rows(scoring_root, ["review_id", "predicted_label"]).to_pandas() \
        .set_index("review_id")["predicted_label"]
    # The moderation team's verdicts arrive: right on 360 reviews, wrong on 240 (0.6),
    # and 50 verdicts on reviews never scored.
    verdicts = [{"review_id": r["review_id"], "text": r["text"],
                 "label": int(predicted[r["review_id"]]) ^ (i % 5 < 2)}
                for i, r in enumerate(reviews)]
    verdicts += [{**r, "label": 1} for r in english_reviews("never-scored", 50)]
    write_csv(layout.labeled / "verdicts.csv", verdicts)
    monkeypatch.setenv("REVIEWFLOW_ACCURACY_MIN_ROWS", "100")

    measured = measure_accuracy(data_dir=str(scoring_root))

    assert (measured["labeled_reviews"], measured["matched_reviews"]) == (650, 600)
    assert measured["scored_rows_read"] == 600 and measured["champion"] == champion
    (version,) = measured["versions"]
    registry = Registry(layout.models)
    gate = registry.read_version(champion)["metrics"]["validation"]["accuracy"]
    latin_gate = registry.read_profile(champion)["by_script"]["latin"]["accuracy"]
    assert version["model_version"] == champion and version["rows"] == 600
    assert version["accuracy"] == 0.6 and version["gate_accuracy"] == gate
    assert [d["where"] for d in version["dropped"]][:1] == ["overall"]
    (line,) = [w for w in warnings_seen if w.startswith("production accuracy of model")]
    assert champion in line and "overall 0.600 on 600 reviews against" in line
    assert f"{gate:.3f} on the gate" in line

    # production_accuracy/: read like scored/, by pyarrow, pandas and DuckDB.
    folder = layout.production_accuracy
    frame = pd.read_parquet(folder)
    assert list(frame["model_version"].astype(str).unique()) == [champion]
    assert frame["rows"].sum() == 600 and frame["correct"].sum() == 360
    assert (frame["script"] == "latin").all() and (frame["gate_accuracy"] == gate).all()
    week = scored_rows(scoring_root, ["scored_at"]).to_pandas()["scored_at"].iloc[0]
    assert set(frame["week"].astype(str)) == {str(week_of(np.array(
        [week.tz_convert("UTC").tz_localize(None)], dtype="datetime64[us]"))[0])}
    assert duckdb.sql(f"SELECT sum(correct) / sum(rows) FROM read_parquet('{folder}/**/*.parquet',"
                      f" hive_partitioning=true) WHERE model_version = '{champion}'"
                      ).fetchall() == [(0.6,)]
    assert ds.dataset(folder, format="parquet", partitioning="hive").to_table().num_rows == 1

    # The event, on the session's server, naming the champion as drift events do.
    (event,) = events_of(ACCURACY_EVENT, measured["flow_run_id"])
    assert event.resource.id == f"reviewflow.model.{champion}"
    assert event.payload["accuracy"] == 0.6 and event.payload["rows"] == 600
    artifacts = read_flow_run_artifacts(measured["flow_run_id"])
    assert "data:image/png;base64," in artifacts["production-accuracy"].data
    table = artifacts["production-accuracy-versions"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [list(row) for row in rows] == [["version", "reviews of", "reviews", "accuracy",
                                            "gate accuracy", "dropped"]] * 3
    assert [(r["reviews of"], r["reviews"], r["accuracy"], r["gate accuracy"], r["dropped"])
            for r in rows] == [
        ("all reviews", "600", "0.600", f"{gate:.3f}", "yes"),
        ("Latin-script reviews", "600", "0.600", f"{latin_gate:.3f}", "yes"),
        (f"latest week, {frame['week'].astype(str).iloc[0]}", "600", "0.600", f"{gate:.3f}",
         "yes")]
    assert {r["version"] for r in rows} == {f"{champion} (champion)"}
    assert sum(max(len(k), *(len(r[k]) for r in rows)) + 3 for k in rows[0]) <= 120

    # `reviewflow monitor --json`: one object per version, its late labels and its runs,
    # whose figures are the scoring run summary's.
    capsys.readouterr()
    main(["monitor", "--json", "--data-dir", str(scoring_root)])
    out, err = capsys.readouterr()
    document = json.loads(out)
    (found,) = document["versions"]
    assert found["model_version"] == champion and found["champion"] is True
    assert (found["rows"], found["accuracy"], found["gate_accuracy"]) == (600, 0.6, gate)
    assert [w["rows"] for w in found["weeks"]] == [600]
    assert [s["script"] for s in found["scripts"]] == ["latin"]
    (run_figures,) = found["runs"]
    for name in ("oov_rate", "score_psi", "length_psi", "script_shift"):
        assert run_figures[name] == summary["drift"][name], name
    assert run_figures["positive_share"] == summary["positive_share"]
    assert document["late_labels"]["matched_reviews"] == 600
    assert document["trends_png"].endswith("_trends.png")
    assert "WARNING" not in out  # stdout holds the document alone
    # Without --json: the figures and the WARNING (on stderr).
    main(["monitor", "--data-dir", str(scoring_root)])
    out, err = capsys.readouterr()
    assert f"model {champion} (champion): 0.600 on 600 reviews, gate accuracy {gate:.3f}" in out
    assert err.startswith(f"WARNING: production accuracy of model {champion} dropped")


def test_monitor_without_late_labels_or_scores_says_so(data_dir, capsys):
    main(["monitor", "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert "no drift signals yet" in out and "0 of them scored" in out
    main(["monitor", "--json", "--data-dir", str(data_dir)])
    document = json.loads(capsys.readouterr().out)
    assert document["versions"] == [] and document["trends_png"] is None


def write_scored(layout, rows: list[tuple[str, int, str, datetime]]) -> None:
    """A part of scored/ holding ``rows`` (review_id, predicted_label, version, scored_at)."""
    import pyarrow.parquet as pq

    from tasks.scoring.rows import SCORED_SCHEMA

    folder = layout.scored_partition("2025-06-03")
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([
        {"review_id": review, "score": float(label), "predicted_label": label, "label": None,
         "model_version": version, "source_file": "f.csv", "source_row": index + 1,
         "source_sha256": "ab" * 32, "scored_at": moment}
        for index, (review, label, version, moment) in enumerate(rows)], schema=SCORED_SCHEMA),
        folder / "part-abababababababab.parquet")


def test_the_join_and_its_dataset_on_an_s3_root(s3_env, trained_models, tmp_path, monkeypatch,
                                                 capsys):
    """labeled/ and scored/ read as objects, production_accuracy/ written as objects, and
    `reviewflow monitor --json` on the root."""
    import io
    import uuid

    import pyarrow.parquet as pq

    from tasks.scoring.rows import SCORED_SCHEMA

    endpoint, fs = s3_env
    bucket = f"late-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    champion = Registry(trained_models).champion_version()
    for file in sorted(trained_models.rglob("*")):
        if file.is_file():
            fs.pipe_file(f"{bucket}/data/models/{file.relative_to(trained_models)}",
                         file.read_bytes())
    scored = pa.Table.from_pylist([
        {"review_id": f"r{i}", "score": 0.9, "predicted_label": 1, "label": None,
         "model_version": champion, "source_file": "f.csv", "source_row": i + 1,
         "source_sha256": "ab" * 32, "scored_at": at(3 + 7 * (i % 2))} for i in range(40)],
        schema=SCORED_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(scored, buffer)
    fs.pipe_file(f"{bucket}/data/scored/scored_date=2025-06-03/part-ab-{champion}.parquet",
                 buffer.getvalue())
    fs.pipe_file(f"{bucket}/data/labeled/verdicts.csv", (
        "review_id,text,label\n" + "".join(f"r{i},Review {i} of a film,{int(i % 4 != 0)}\n"
                                           for i in range(40))).encode())
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint}))
    root = f"s3://{bucket}/data"

    main(["monitor", "--json", "--data-dir", root])
    (found,) = json.loads(capsys.readouterr().out)["versions"]
    assert (found["model_version"], found["rows"], found["accuracy"]) == (champion, 40, 0.75)
    assert [(w["week"], w["rows"]) for w in found["weeks"]] == [("2025-06-02", 20),
                                                               ("2025-06-09", 20)]
    keys = fs.find(f"{bucket}/data/production_accuracy")
    assert keys == [f"{bucket}/data/production_accuracy/model_version={champion}/part-0.parquet"]
    table = read_accuracy(DataLayout.of(Settings(data_dir=root)).production_accuracy)
    assert table["rows"].to_pylist() == [20, 20] and table["correct"].to_pylist() == [10, 20]


@pytest.mark.parametrize("command", ["monitor", "flow"])
def test_a_linked_production_accuracy_folder_is_refused(scoring_root, tmp_path, capsys, command):
    """production_accuracy/ made a link to a folder outside the root: `reviewflow monitor`
    and the measure-accuracy flow refuse before writing, and nothing lands outside."""
    from tasks.errors import LinkedFolderError

    layout = layout_of(scoring_root)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    layout.production_accuracy.rmdir()
    layout.production_accuracy.symlink_to(outside)
    write_csv(layout.labeled / "verdicts.csv", [{"review_id": "a", "text": "Fine.", "label": 1}])
    write_scored(layout, [("a", 1, Registry(layout.models).champion_version(), at(3))])
    if command == "monitor":
        with pytest.raises(SystemExit) as stopped:
            main(["monitor", "--data-dir", str(scoring_root)])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "production_accuracy is a symbolic link" in err
    else:
        with pytest.raises(LinkedFolderError, match="production_accuracy is a symbolic link"):
            measure_accuracy(data_dir=str(scoring_root))
    assert list(outside.iterdir()) == []

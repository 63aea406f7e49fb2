"""Production accuracy from late labels (issue 40, item 3), on plain data: labels that
land in labeled/ after their reviews were scored, joined to scored/ by review_id, per
model version, week and main script; a version's figures beside its gate accuracy and
when they dropped; the production_accuracy/ dataset. The flow, its event and
`reviewflow monitor` are tests/test_production_accuracy.py."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from tasks.late_labels import (
    CELL_SCHEMA,
    AccuracyLimits,
    GateAccuracy,
    accuracy_cells,
    drop_message,
    read_accuracy,
    read_late_labels,
    slices_of,
    version_figures,
    week_of,
    write_accuracy,
)
from tasks.late_labels.dataset import accuracy_table
from tasks.settings import Settings
from tasks.training.registry import Registry
from tests.helpers import layout_of

UTC_NOON = datetime(2025, 6, 4, 12, tzinfo=UTC)  # a Wednesday


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 6, day, hour, tzinfo=UTC)


def labels_table(rows: list[tuple[str, int, str]]) -> pa.Table:
    return pa.table({"review_id": pa.array([r[0] for r in rows], pa.string()),
                     "label": pa.array([r[1] for r in rows], pa.int8()),
                     "text": pa.array([r[2] for r in rows], pa.string())})


def scores_table(rows: list[tuple[str, int, str, datetime]]) -> pa.Table:
    return pa.table({"review_id": pa.array([r[0] for r in rows], pa.string()),
                     "predicted_label": pa.array([r[1] for r in rows], pa.int8()),
                     "model_version": pa.array([r[2] for r in rows], pa.string()),
                     "scored_at": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC"))})


# ---------------------------------------------------------------- the join, on plain data
def test_each_version_is_matched_with_its_latest_score_of_each_review():
    labels = labels_table([("a", 1, "A fine film."), ("b", 0, "지루한 영화였다"),
                           ("c", 1, "Good."), ("e", 1, "never scored"), ("f", 0, "123 !!!")])
    scores = scores_table([
        ("a", 1, "v1", at(3)),   # v1 scored a twice: its later score (wrong) counts
        ("a", 0, "v1", at(10)),
        ("a", 1, "v2", at(11)),  # v2 scored it too: credited with its own score
        ("b", 0, "v1", at(3)),
        ("c", 1, "v1", at(4)),
        ("d", 1, "v1", at(4)),   # no label
        ("f", 1, "v2", at(12)),  # a text without letters
    ])
    cells, pairs, reviews = accuracy_cells(labels, scores)
    assert cells.schema == CELL_SCHEMA
    found = {(c["model_version"], c["week"], c["script"]): (c["rows"], c["correct"])
             for c in cells.to_pylist()}
    assert found == {
        ("v1", date(2025, 6, 2), "latin"): (1, 1),    # c
        ("v1", date(2025, 6, 2), "hangul"): (1, 1),   # b
        ("v1", date(2025, 6, 9), "latin"): (1, 0),    # a, its score of the 10th
        ("v2", date(2025, 6, 9), "latin"): (1, 1),    # a
        ("v2", date(2025, 6, 9), "none"): (1, 0),     # f
    }
    assert (pairs, reviews) == (5, 4)


def test_a_tie_in_time_goes_to_the_score_read_last():
    labels = labels_table([("a", 1, "A fine film.")])
    scores = scores_table([("a", 0, "v1", UTC_NOON), ("a", 1, "v1", UTC_NOON)])
    (cell,) = accuracy_cells(labels, scores)[0].to_pylist()
    assert (cell["rows"], cell["correct"]) == (1, 1)


def test_weeks_start_on_monday_in_utc_and_slices_follow_the_drift_monitors_rule():
    moments = np.array(["2025-06-01T23:59", "2025-06-02T00:00", "2025-06-08T23:59",
                        "2025-06-09T00:00", "1970-01-01T00:00"], dtype="datetime64[us]")
    assert [str(d) for d in week_of(moments)] == ["2025-05-26", "2025-06-02", "2025-06-02",
                                                  "2025-06-09", "1969-12-29"]
    texts = pa.array(["Great film", "정말 재미있어요 good", "映画", "えいががすきです", "",
                      "12345", "Фильм хороший"])
    assert list(slices_of(texts)) == ["latin", "hangul", "han", "kana", "none", "none", "other"]
    # The very rule the drift monitor counts reviews by (tasks.monitoring.main_scripts).
    from tasks.monitoring import SCRIPTS, letters_per_row, main_scripts

    main = main_scripts(letters_per_row(texts))
    assert [SCRIPTS[i] if i >= 0 else "none" for i in main] == list(slices_of(texts))


def test_nothing_to_match_gives_no_cells():
    empty = accuracy_cells(labels_table([]), scores_table([("a", 1, "v1", UTC_NOON)]))
    assert empty[0].num_rows == 0 and empty[1:] == (0, 0)
    unmatched = accuracy_cells(labels_table([("x", 1, "text")]), scores_table([]))
    assert unmatched[0].num_rows == 0


# ---------------------------------------------------------------- reading labeled/
def test_late_labels_are_read_from_every_format_the_last_label_of_an_id_counting(tmp_path):
    folder = tmp_path / "labeled"
    folder.mkdir()
    (folder / "a-verdicts.csv").write_text(
        "review_id,review,sentiment\n"
        "r1,Loved it,positive\n"
        "r2,Hated it,negative\n"
        "r3,Unsure,maybe\n"        # a label not understood
        ",No id here,positive\n"   # no id
        "r4,Fine,positive\n")
    (folder / "b-corrections.jsonl").write_text(
        '{"review_id": "r2", "text": "Hated it", "label": 1}\n'
        '{"review_id": "r5", "text": "정말 좋아요", "label": 1}\n')
    (folder / "c-nsmc.tsv").write_text("id\tdocument\tlabel\nk1\t별로였다\t0\n")
    (folder / "d-broken.csv").write_bytes(b"")  # unreadable: empty
    found = read_late_labels(folder, Settings(data_dir=tmp_path))
    table = found.table.to_pandas().set_index("review_id")
    assert sorted(table.index) == ["k1", "r1", "r2", "r4", "r5"]
    assert table.loc["r2", "label"] == 1  # b-corrections.jsonl is read after a-verdicts.csv
    assert table.loc["k1", "text"] == "별로였다" and table.loc["r1", "label"] == 1
    assert (found.files, found.rows_read, found.rows_unusable, found.rows_relabeled) == (3, 8, 2, 1)
    assert found.unreadable == [("d-broken.csv", "the file is empty")]


# ---------------------------------------------------------------- the figures
def cells(*rows: tuple[str, str, int, int]) -> list[dict]:
    return [{"week": date.fromisoformat(w), "script": s, "rows": n, "correct": c}
            for w, s, n, c in rows]


def test_a_versions_figures_sum_counts_and_judge_only_figures_with_enough_reviews():
    gate = GateAccuracy(accuracy=0.90, rows=2000, by_script={"latin": 0.91, "hangul": 0.86})
    limits = AccuracyLimits(max_drop=0.05, min_rows=500)
    found = version_figures(cells(("2025-06-02", "latin", 600, 552),    # 0.92
                                  ("2025-06-02", "hangul", 300, 240),   # 0.80
                                  ("2025-06-09", "latin", 200, 184),    # 0.92
                                  ("2025-06-09", "hangul", 400, 300)),  # 0.75
                            gate, limits)
    assert (found["rows"], found["correct"]) == (1500, 1276)
    assert found["accuracy"] == round(1276 / 1500, 4) and found["drop"] == round(0.9 - 0.8507, 4)
    assert [(w["week"], w["rows"], w["accuracy"], w["dropped"]) for w in found["weeks"]] == [
        ("2025-06-02", 900, round(792 / 900, 4), False),
        ("2025-06-09", 600, round(484 / 600, 4), True)]    # 0.807: 0.093 below 0.90
    assert [(s["script"], s["rows"], s["gate_accuracy"], s["dropped"]) for s in found["scripts"]] \
        == [("latin", 800, 0.91, False), ("hangul", 700, 0.86, True)]  # 0.771 vs 0.86
    assert [d["where"] for d in found["dropped"]] == ["week of 2025-06-09", "Hangul reviews"]
    message = drop_message("v1", found, limits)
    assert message.startswith("production accuracy of model v1 dropped more than 0.05 below")
    assert "1 of 2 judged weeks (the latest, week of 2025-06-09 0.807 on 600 reviews against " \
           "0.900 on the gate)" in message
    assert "Hangul reviews 0.771 on 700 reviews against 0.860 on the gate" in message
    # Fewer reviews than min_rows: shown, never judged.
    few = version_figures(cells(("2025-06-02", "latin", 499, 100)), gate, limits)
    assert few["drop"] > 0.5 and few["dropped"] == []
    # A version without a gate accuracy (trained before metrics.json) is never judged.
    assert version_figures(cells(("2025-06-02", "latin", 900, 100)), GateAccuracy(),
                           limits)["dropped"] == []


def test_the_gate_accuracy_per_script_is_the_profiles(trained_models):
    registry = Registry(trained_models)
    version = registry.champion_version()
    gate = GateAccuracy.of_version(registry.read_version(version)["metrics"],
                                   registry.read_profile(version))
    metrics = registry.read_version(version)["metrics"]
    assert gate.accuracy == metrics["validation"]["accuracy"]
    assert gate.rows == metrics["validation"]["rows"]
    assert gate.by_script == {"latin": registry.read_profile(version)["by_script"]["latin"]
                              ["accuracy"]}


# ---------------------------------------------------------------- production_accuracy/
def test_the_dataset_reads_like_scored_and_forgets_versions_no_label_reaches(tmp_path):
    layout = layout_of(tmp_path)
    folder = layout.production_accuracy
    measured = datetime(2025, 6, 20, tzinfo=UTC)
    table = pa.Table.from_pylist([
        {"model_version": "v1", "week": date(2025, 6, 2), "script": "latin", "rows": 10,
         "correct": 9},
        {"model_version": "v1", "week": date(2025, 6, 2), "script": "hangul", "rows": 4,
         "correct": 1}], schema=CELL_SCHEMA)
    parts = {"v1": accuracy_table(table, GateAccuracy(0.9, 100, {"latin": 0.95}), measured),
             "v2": accuracy_table(table, GateAccuracy(0.8, 100), measured)}
    write_accuracy(layout, parts)
    frame = pd.read_parquet(folder).sort_values(["model_version", "script"])
    assert list(frame["model_version"].astype(str)) == ["v1", "v1", "v2", "v2"]
    v1 = frame[frame["model_version"] == "v1"].set_index("script")
    assert v1.loc["latin", "accuracy"] == 0.9 and v1.loc["hangul", "accuracy"] == 0.25
    assert v1.loc["latin", "script_gate_accuracy"] == 0.95
    assert pd.isna(v1.loc["hangul", "script_gate_accuracy"]) and v1.loc["hangul", "gate_accuracy"] == 0.9
    rows = duckdb.sql(f"SELECT model_version, sum(correct) / sum(rows) FROM read_parquet("
                      f"'{folder}/**/*.parquet', hive_partitioning=true) GROUP BY 1 "
                      f"ORDER BY 1").fetchall()
    assert rows == [("v1", 10 / 14), ("v2", 10 / 14)]
    assert ds.dataset(folder, format="parquet", partitioning="hive").to_table().num_rows == 4
    assert write_accuracy(layout, {"v1": parts["v1"]}) == ["v2"]
    assert sorted(read_accuracy(folder)["model_version"].unique().to_pylist()) == ["v1"]
    assert not (folder / "model_version=v2").exists()

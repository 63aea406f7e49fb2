"""The retraining flow's plain parts, without Prefect: reading labeled/, what a version
records, when nothing is new, and the registry writing a version's record."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tasks.errors import NoLabeledDataError
from tasks.layout import (
    CARD_FILE,
    CURVES_FILE,
    DECISION_FILE,
    METRICS_FILE,
    PROFILE_FILE,
    RELIABILITY_FILE,
    DataLayout,
)
from tasks.settings import Settings
from tasks.training.evaluation import ChampionOnGate, GateComparison
from tasks.training.labeled import read_labeled_reviews
from tasks.training.record import (
    check_parts,
    nothing_new,
    part_rows,
    recorded_inputs,
    training_inputs,
    version_metrics,
)
from tasks.training.registry import Registry
from tasks.training.split import split_labeled
from tests.helpers import packaged_validator, quarantined_rows

LOGGER = logging.getLogger("test")


def labeled(n: int, movies: int | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"review_id": [f"r{i}" for i in range(n)],
                          "text": [f"review number {i}" for i in range(n)],
                          "label": [i % 2 for i in range(n)]})
    return frame.assign(group=[f"tt{i % movies}" for i in range(n)]) if movies else frame


def validator():
    return packaged_validator(require_label=True)


def test_reading_labeled_keeps_groups_quarantines_the_unreadable_and_fingerprints(tmp_path):
    layout = DataLayout(root=tmp_path / "data").ensure()
    labeled(30, movies=4).rename(columns={"group": "movie_id"}).to_csv(
        layout.labeled / "a.csv", index=False)
    (layout.labeled / "b.csv").write_text("alpha,beta\n1,2\n")  # no text column
    settings = Settings(data_dir=tmp_path / "data")
    reviews, stats = read_labeled_reviews(settings, validator(), LOGGER)
    assert len(reviews) == 30 and set(reviews["group"]) == {"tt0", "tt1", "tt2", "tt3"}
    assert stats["files"] == 1 and stats["files_quarantined"] == 1
    assert stats["rows_with_group"] == 30 and len(stats["content_sha256"]) == 64
    assert not (layout.labeled / "b.csv").exists()  # moved to quarantine
    again, stats_again = read_labeled_reviews(settings, validator(), LOGGER)
    assert stats_again["content_sha256"] == stats["content_sha256"]
    (layout.labeled / "a.csv").unlink()
    with pytest.raises(NoLabeledDataError, match="no usable labeled reviews"):
        read_labeled_reviews(settings, validator(), LOGGER)


def test_an_empty_part_is_a_clear_error_naming_groups():
    split = split_labeled(labeled(40, movies=2), 0.2)  # two movies cannot fill three parts
    with pytest.raises(NoLabeledDataError, match=r"groups \(movies, products\).*empty"):
        check_parts(split, 40)
    check_parts(split_labeled(labeled(2000), 0.2), 2000)  # by review: every part filled


def trained(history: dict, best_epoch: int):
    return SimpleNamespace(history=history, best_epoch=best_epoch, epochs_run=len(history["loss"]),
                           training_seconds=1.234, hyperparameters={
                               "architecture": "seed", "max_tokens": 10_000, "epochs": 3,
                               "batch_size": 512, "patience": 2, "seed": 1337})


def test_what_a_version_records_round_trips_to_its_inputs():
    settings = Settings(architecture="seed", epochs=3)
    split = split_labeled(labeled(1000, movies=100), 0.2)
    stats = {"content_sha256": "c" * 64}
    model = trained({"loss": [0.6, 0.5, 0.4], "val_loss": [0.55, 0.45, 0.5],
                     "val_accuracy": [0.7, 0.8, 0.75]}, best_epoch=2)
    evidence = GateComparison({"accuracy": 0.8}, np.zeros(0),
                              ChampionOnGate("v0", {"accuracy": 0.7}, {"p_value": 0.01}))
    metrics = version_metrics("v1", model, split, settings, stats, evidence, {"keras": "3"})
    assert metrics["selection"] == {"best_epoch": 2, "loss": 0.45, "accuracy": 0.8}
    assert metrics["parts"]["split_by"] == "group" and metrics["validation_part"] == "gate"
    assert metrics["compared_to"]["champion"] == "v0"
    inputs = training_inputs(settings, split, stats, max_tokens=10_000)
    assert recorded_inputs(metrics) == inputs and nothing_new(inputs, metrics)
    assert not nothing_new({**inputs, "selection_share": 0.4}, metrics)
    assert part_rows(split)["validation_rows"] == len(split.gate)


def test_the_registry_writes_a_version_record_beside_its_model(tmp_path):
    registry = Registry(tmp_path / "models")
    folder = registry.stage("20260101T000000Z-abcdef")
    metrics = {"version": "20260101T000000Z-abcdef", "hyperparameters": {"architecture": "seed"},
               "history": {"loss": [0.6, 0.4], "val_loss": [0.5, 0.45],
                           "accuracy": [0.7, 0.8], "val_accuracy": [0.72, 0.78]}}
    registry.write_record("20260101T000000Z-abcdef", metrics, {"promote": True}, {"p": 1})
    assert json.loads((folder / METRICS_FILE).read_text()) == metrics
    assert json.loads((folder / DECISION_FILE).read_text()) == {"promote": True}
    assert json.loads((folder / PROFILE_FILE).read_text()) == {"p": 1}
    for picture in (CURVES_FILE, RELIABILITY_FILE):
        assert (folder / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / CARD_FILE).read_text().startswith("# Model card: 20260101T000000Z-abcdef")


def numbered(texts: list[str], labels: list[int] | None = None) -> pd.DataFrame:
    """Reviews numbered from 1, as each year's export of a site numbers them."""
    frame = pd.DataFrame({"review_id": range(1, len(texts) + 1), "text": texts})
    return frame.assign(label=labels) if labels is not None else frame


def test_files_that_number_their_ids_alike_are_all_read_and_trained_on(tmp_path):
    """movies_2023.tsv and movies_2024.tsv both number from 1: scoring keeps both files'
    rows, and training must too (one row per id would keep half the data)."""
    from tasks.training.labeled import read_unlabeled_reviews

    layout = DataLayout(root=tmp_path / "data").ensure()
    for year in (2023, 2024):
        numbered([f"a {year} review, number {i}" for i in range(200)],
                 [i % 2 for i in range(200)]).to_csv(
            layout.labeled / f"movies_{year}.tsv", sep="\t", index=False)
        numbered([f"an unlabeled {year} review, number {i}" for i in range(50)]).to_csv(
            layout.unlabeled / f"more_{year}.csv", index=False)
    settings = Settings(data_dir=tmp_path / "data")
    reviews, stats = read_labeled_reviews(settings, validator(), LOGGER)
    assert len(reviews) == stats["rows_read"] == 400
    assert stats["ids_repeated_across_files"] == 400  # said, and nothing dropped for it
    split = split_labeled(reviews, 0.2)
    assert len(split.train) + len(split.selection) + len(split.gate) == 400
    assert split.duplicates_removed == 0
    unlabeled, unlabeled_stats = read_unlabeled_reviews(
        settings, packaged_validator(), LOGGER)
    assert len(unlabeled) == unlabeled_stats["rows_read"] == 100


def test_rows_training_leaves_out_are_counted_for_the_summary():
    """Every labeled and unlabeled row read is trained on or counted as left out, by why."""
    from tasks.training.record import left_out_rows, left_out_warning

    read_stats = {"rows_read": 103, "rows_rejected": 3}
    split = split_labeled(labeled(100).assign(
        text=[f"review number {i % 95}" for i in range(100)]), 0.2)  # 5 texts twice
    left = left_out_rows(read_stats, split, {"rows_read": 12, "rows_rejected": 2},
                         {"rows": 10, "labeled_text": 4, "held_out_group": 1,
                          "duplicate_text": 2, "over_max_rows": 0, "learnable": 3})
    assert left == {"labeled_rows_read": 103, "labeled_rows_rejected": 3,
                    "labeled_duplicate_texts": 5, "labeled_rows_trained_or_held_out": 95,
                    "unlabeled_rows_read": 12, "unlabeled_rows_rejected": 2,
                    "unlabeled_labeled_text": 4, "unlabeled_held_out_group": 1,
                    "unlabeled_duplicate_text": 2, "unlabeled_over_max_rows": 0,
                    "unlabeled_learnable": 3}
    warning = left_out_warning(left)
    assert warning.startswith("training left out 8 of 103 labeled rows read (3 rejected")
    assert "and 9 of 12 unlabeled rows (2 rejected" in warning
    clean = left_out_rows({"rows_read": 100, "rows_rejected": 0},
                          split_labeled(labeled(100), 0.2), None, None)
    assert left_out_warning(clean) is None


def test_the_same_file_under_two_names_is_read_twice_and_its_copies_counted(tmp_path):
    """Without an id column ids come from the content hash: the same bytes under two
    names give the same ids. Both files are read; the repeated texts are kept once and
    counted (not dropped as 'ids repeated across files')."""
    layout = DataLayout(root=tmp_path / "data").ensure()
    body = labeled(60).drop(columns=["review_id"])
    for name in ("export.csv", "export-copy.csv"):
        body.to_csv(layout.labeled / name, index=False)
    reviews, stats = read_labeled_reviews(Settings(data_dir=tmp_path / "data"), validator(),
                                          LOGGER)
    assert len(reviews) == stats["rows_read"] == stats["rows_id_generated"] == 120
    split = split_labeled(reviews, 0.2)
    assert split.duplicates_removed == 60
    assert len(split.train) + len(split.selection) + len(split.gate) == 60


def test_labeled_files_whose_names_are_not_utf8_are_read_under_a_cleaned_name(tmp_path):
    """A Latin-1 ``café.csv`` (and a Parquet file named so) in labeled/: read and trained on,
    recorded under a name pyarrow, JSON and logs can write (scoring renames such files
    when it claims them; training reads labeled/ in place and never renames them)."""
    import os

    import pyarrow.parquet as pq

    layout = DataLayout(root=tmp_path / "data").ensure()
    folder = os.fsencode(layout.labeled)
    labeled(40).to_csv(os.fsdecode(folder + b"/caf\xe9.csv"), index=False)
    with open(folder + b"/na\xefve.parquet", "wb") as out:  # pyarrow takes no such path
        pq.write_table(pa_table(labeled(30).assign(review_id=[f"p{i}" for i in range(30)])),
                       out)
    bad = pd.DataFrame({"review_id": ["x1", "x1"], "text": ["one", "two"], "label": [0, 1]})
    bad.to_csv(os.fsdecode(folder + b"/d\xfcp.csv"), index=False)  # a repeated id: rejected
    reviews, stats = read_labeled_reviews(Settings(data_dir=tmp_path / "data"), validator(),
                                          LOGGER)
    assert stats["files"] == 3 and stats["rows_read"] == 72
    assert len(reviews) == 72 - stats["rows_rejected"]
    rejected = quarantined_rows(layout.root, of="training").column("source_file").to_pylist()
    assert all(name.encode("utf-8") for name in rejected)
    assert set(rejected) == {"düp.csv"}
    assert all(os.path.exists(os.fsdecode(folder + name))  # left where they were
               for name in (b"/caf\xe9.csv", b"/na\xefve.parquet", b"/d\xfcp.csv"))


def pa_table(frame: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)

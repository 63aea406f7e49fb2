"""The retraining flow's plain parts, without Prefect: reading labeled/, what a version
records, when nothing is new, and the registry writing a version's record."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pandas as pd
import pytest

from tasks.errors import NoLabeledDataError
from tasks.labeled import read_labeled_reviews
from tasks.layout import CURVES_FILE, DECISION_FILE, METRICS_FILE, PROFILE_FILE, DataLayout
from tasks.registry import Registry
from tasks.settings import PACKAGED_SUITE, Settings
from tasks.split import split_labeled
from tasks.training_record import (
    check_parts,
    nothing_new,
    part_rows,
    recorded_inputs,
    training_inputs,
    version_metrics,
)
from tasks.validation import ReviewValidator, load_suite_config

LOGGER = logging.getLogger("test")


def labeled(n: int, movies: int | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"review_id": [f"r{i}" for i in range(n)],
                          "text": [f"review number {i}" for i in range(n)],
                          "label": [i % 2 for i in range(n)]})
    return frame.assign(group=[f"tt{i % movies}" for i in range(n)]) if movies else frame


def validator() -> ReviewValidator:
    return ReviewValidator(load_suite_config(PACKAGED_SUITE),
                           parameters={"max_text_chars": 100_000}, require_label=True)


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
    metrics = version_metrics("v1", model, split, settings, stats, {"accuracy": 0.8},
                              ("v0", {"accuracy": 0.7}, {"p_value": 0.01}), {"keras": "3"})
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
    metrics = {"history": {"loss": [0.6, 0.4], "val_loss": [0.5, 0.45],
                           "accuracy": [0.7, 0.8], "val_accuracy": [0.72, 0.78]}}
    registry.write_record("20260101T000000Z-abcdef", metrics, {"promote": True}, {"p": 1})
    assert json.loads((folder / METRICS_FILE).read_text()) == metrics
    assert json.loads((folder / DECISION_FILE).read_text()) == {"promote": True}
    assert json.loads((folder / PROFILE_FILE).read_text()) == {"p": 1}
    assert (folder / CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""Crash consistency, concurrent runs and resource faults of the scoring flow."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pandas as pd
import pytest
from conftest import PROJECT, assert_same_scored_rows, reviewflow_command

from flows.score_reviews import score_reviews
from tests.helpers import layout_of, quarantined_rows, scored_parts, scored_rows, scored_sql


def make_inbox(root, files: int = 3, rows: int = 40) -> int:
    words = ["a delight", "a tedious mess", "moving", "far too long"]
    for f in range(files):
        frame = pd.DataFrame({"review_id": [f"f{f}-{i}" for i in range(rows)],
                              "text": [f"The film was {words[i % 4]}, take {i}." for i in range(rows)]})
        frame.loc[rows - 1, "text"] = " "  # one row per file goes to quarantine
        frame.to_csv(layout_of(root).incoming / f"batch-{f}.csv", index=False)
    return files * rows


def in_inbox(root, name: str) -> bool:
    """The file is still in the inbox: where it was put, or claimed by a run that stopped
    (``incoming/.claimed/<token>/<name>``), which the next run picks up."""
    return any(p.name == name for p in layout_of(root).incoming.rglob("*") if p.is_file())


def scored_view(root) -> pd.DataFrame:
    """The rows of scored/ as a reader sees them (temporaries are invisible to readers)."""
    table = scored_rows(root, columns=["review_id", "source_file", "source_row",
                                       "predicted_label", "model_version", "score"])
    return table.to_pandas().sort_values(["source_file", "source_row"]).reset_index(drop=True)


def assert_same_result(root, clean_result) -> None:
    """scored/ and quarantine/ of ``root`` hold what one clean run gave: each row once,
    the same ids, labels and model; scores to round-off, since runs of the command
    batch rows otherwise and in another process than the clean run (conftest)."""
    expected_scored, expected_quarantined = clean_result
    assert_same_scored_rows(scored_view(root), expected_scored)
    assert quarantined_ids(root) == expected_quarantined


def quarantined_ids(root) -> list[str]:
    table = quarantined_rows(root, columns=["review_id"])
    return sorted(table.column("review_id").to_pylist())


def run_cli(root, env, failpoint=None, **extra) -> subprocess.Popen:
    env = dict(env, REVIEWFLOW_SETTLE_SECONDS="0", REVIEWFLOW_READ_BATCH_ROWS="10", **extra)
    if failpoint:
        env["REVIEWFLOW_FAILPOINT"] = failpoint
    return subprocess.Popen(reviewflow_command("score", "--data-dir", str(root)), cwd=PROJECT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def clean_result(scoring_root, tmp_path_factory):
    """What one uninterrupted run gives for the inbox of make_inbox()."""
    clean = tmp_path_factory.mktemp("clean") / "data"
    shutil.copytree(scoring_root, clean)
    expected_rows = make_inbox(clean)
    summary = score_reviews(data_dir=str(clean), settle_seconds=0)
    assert summary["rows_read"] == expected_rows
    return scored_view(clean), quarantined_ids(clean)


@pytest.mark.parametrize("failpoint", ["score:mid-file", "score:parts-published",
                                       "score:ledger-committed"])
def test_sigkill_then_rerun_equals_one_clean_run(scoring_root, subprocess_env, clean_result,
                                                  failpoint):
    make_inbox(scoring_root)
    process = run_cli(scoring_root, subprocess_env, failpoint)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert_same_result(scoring_root, clean_result)
    assert not list(layout_of(scoring_root).incoming.iterdir())
    assert not [p for p in layout_of(scoring_root).scored.rglob("*") if p.name.endswith(".tmp")]


def test_two_runs_at_once_score_each_file_once(scoring_root, subprocess_env, clean_result):
    make_inbox(scoring_root, files=3)
    first, second = run_cli(scoring_root, subprocess_env), run_cli(scoring_root, subprocess_env)
    for process in (first, second):
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    assert_same_result(scoring_root, clean_result)


class Listing(list):
    """What ``os.scandir`` returned, as a list that is also its context manager."""

    def __enter__(self):
        return iter(self)

    def __exit__(self, *exc) -> bool:
        return False


def moved_after_the_listing(monkeypatch, gone) -> None:
    """The inbox as a run sees it when another run archives or quarantines ``gone``
    between the listing (``os.scandir``) and the look at that entry (its ``lstat``): the
    window two runs at once hit when one starts while the other is already archiving."""
    scandir = os.scandir

    def listed_then_moved(folder):
        with scandir(folder) as entries:
            listed = Listing(entries)
        if os.fspath(folder) == os.fspath(gone.parent):
            gone.unlink()
        return listed
    monkeypatch.setattr(os, "scandir", listed_then_moved)


@pytest.mark.parametrize("gone", ["batch-9.csv", "notes.txt"])
def test_a_file_another_run_moved_after_the_listing_is_left_to_it(data_dir, gone, monkeypatch):
    """Neither scored, nor quarantined as unsupported (the move would fail and stop the
    run): another run has it."""
    from tasks.state.inbox import list_inbox

    make_inbox(data_dir, files=1)
    (layout_of(data_dir).incoming / gone).write_text("review_id,text\n1,moved\n")
    moved_after_the_listing(monkeypatch, layout_of(data_dir).incoming / gone)
    inbox = list_inbox(layout_of(data_dir).incoming, 0)
    assert [p.name for p in inbox.ready] == ["batch-0.csv"]
    assert inbox.settling == [] and inbox.unsupported == []
    assert not (layout_of(data_dir).incoming / gone).exists()  # the window was taken


def test_unwritable_output_fails_clearly_and_keeps_inputs(scoring_root, subprocess_env):
    make_inbox(scoring_root, files=1)
    scored = layout_of(scoring_root).scored
    shutil.rmtree(scored)
    scored.write_text("not a folder")  # root ignores permission bits
    process = run_cli(scoring_root, subprocess_env)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "reviewflow: score stopped:" in output and "run again" in output
    assert in_inbox(scoring_root, "batch-0.csv")
    scored.unlink()
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert summary["rows_scored"] == 39


def test_disk_full_fails_clearly_and_the_next_run_succeeds(scoring_root, subprocess_env):
    """A file-size limit stands in for a full disk: writes fail with an OSError mid-run."""
    import resource

    make_inbox(scoring_root, files=1, rows=20_000)

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG, not a signal death
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0")
    process = subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root)),
                             cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300,
                             preexec_fn=small_files)
    assert process.returncode == 1, process.stdout[-2000:] + process.stderr[-2000:]
    # The ledger (SQLite: "disk I/O error") or a Parquet part ("File too large") hits it first.
    assert "reviewflow: score stopped:" in process.stderr and "run again" in process.stderr
    assert "File too large" in process.stderr or "disk I/O error" in process.stderr
    assert in_inbox(scoring_root, "batch-0.csv")
    assert not scored_parts(scoring_root)
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert summary["rows_scored"] == 19_999


def test_a_million_one_word_rows_are_each_scored_once(scoring_root):
    """Row count, not size, is the load: one run, bounded memory (batches), no row lost."""
    import duckdb

    rows = 1_000_000
    words = ["great", "awful", "fine", "boring", "superb"]
    with open(layout_of(scoring_root).incoming / "million.csv", "w", encoding="utf-8") as stream:
        stream.write("review_id,text\n")
        stream.writelines(f"m{i},{words[i % 5]}\n" for i in range(rows))
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert summary["rows_read"] == summary["rows_scored"] == rows
    assert summary["rows_quarantined"] == 0
    (count, distinct, first, last), = duckdb.sql(  # source_row counts data rows from 1
        f"SELECT count(*), count(DISTINCT review_id), min(source_row), max(source_row) "
        f"FROM {scored_sql(scoring_root)}").fetchall()
    assert count == distinct == last == rows and first == 1


def run_retrain(root, env) -> subprocess.Popen:
    env = dict(env, REVIEWFLOW_ARCHITECTURE="seed", REVIEWFLOW_EPOCHS="3")
    # --force: if the two run one after the other, the second must still train (the same
    # labels would otherwise be "nothing new to learn" and make no version).
    return subprocess.Popen(reviewflow_command("retrain", "--force", "--data-dir", str(root)),
                            cwd=PROJECT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_retraining_processes_never_corrupt_the_registry(scoring_root, subprocess_env):
    """Two workers start the nightly retrain at once: one trains, the other stops with
    exit code 3 (busy), or, if the first is already done, trains after it. Either way
    the registry stays whole: a valid pointer, complete versions, parseable history."""
    import json

    from conftest import SAMPLES

    from tasks.training.registry import MODEL_FILE, Registry

    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, scoring_root / "labeled" / sample.name)
    registry = Registry(layout_of(scoring_root).models)
    before = {row["version"] for row in registry.list_versions()}
    processes = [run_retrain(scoring_root, subprocess_env) for _ in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    codes = sorted(process.returncode for process in processes)
    assert codes in ([0, 0], [0, 3]), [o[-2000:] for o in outputs]
    if codes == [0, 3]:
        busy = outputs[[p.returncode for p in processes].index(3)]
        assert "another retraining is running" in busy, busy[-2000:]
    new = {row["version"] for row in registry.list_versions()} - before
    assert len(new) == codes.count(0)
    assert registry.exists(registry.champion_version())
    for version in new:
        folder = registry.versions / version
        assert {MODEL_FILE, "metrics.json", "decision.json"} <= {p.name for p in folder.iterdir()}
    assert not registry.staging.exists() or not list(registry.staging.iterdir())
    lines = registry.history.read_text(encoding="utf-8").splitlines()
    assert all(json.loads(line) for line in lines)
    assert sum(json.loads(line)["version"] in new for line in lines) >= len(new)

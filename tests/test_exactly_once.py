"""Holes an adversarial run found in the exactly-once contract (docs/what-happens-when.md).

Each test builds the situation on a real data root and checks the contract: every row
of every input ends in ``scored/`` or ``quarantine/`` once, and nothing is deleted.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from test_reliability import run_cli

from tasks.state.ledger import Ledger
from tasks.training.registry import Registry, RegistryError
from tests.helpers import (
    add_version,
    good_rows,
    layout_of,
    quarantined_copies,
    quarantined_files,
    quarantined_reasons,
    score,
    scored_rows,
    write_csv,
)


def test_version_names_cannot_look_like_shards(tmp_path):
    with pytest.raises(RegistryError, match="shards"):
        Registry(tmp_path).model_path("v-s0003")
    assert Registry(tmp_path).model_path("v-s003").parent.name == "v-s003"


def test_rescoring_with_a_version_whose_name_prefixes_another_keeps_its_parts(scoring_root):
    """Version ``v`` rescoring a file after ``v-b`` scored it leaves ``v-b``'s parts,
    which the ledger lists: a sweep by the prefix ``part-<sha>-v*`` would delete them."""
    registry = Registry(layout_of(scoring_root).models)
    add_version(scoring_root, "v")
    add_version(scoring_root, "v-b")
    inbox = layout_of(scoring_root).incoming
    registry.promote_by_hand("v-b", "test")
    write_csv(inbox / "a.csv", good_rows("a", 5))
    assert score(scoring_root)["rows_scored"] == 5
    registry.promote_by_hand("v", "test")
    for archived in layout_of(scoring_root).archive.rglob("*a.csv"):  # rescore it on purpose
        shutil.move(archived, inbox / "a.csv")
    assert score(scoring_root)["rows_scored"] == 5
    versions = sorted(scored_rows(scoring_root).column("model_version").to_pylist())
    assert versions == ["v"] * 5 + ["v-b"] * 5
    ledger = Ledger(scoring_root / "state" / "ledger.sqlite")
    (sha,) = set(scored_rows(scoring_root).column("source_sha256").to_pylist())
    for version in ("v", "v-b"):  # every part the ledger lists is there
        assert Path(ledger.scored(sha, version).scored_part).is_file()


def test_unsupported_files_with_colliding_names_are_all_kept(scoring_root):
    """Names that clean to one (``notes?.txt``, ``notes*.txt``, ``notes:.txt``) and the same
    name on the same day in two runs each keep their own copy in quarantine."""
    inbox = layout_of(scoring_root).incoming
    contents = {}
    for i, name in enumerate(["notes?.txt", "notes*.txt", "notes:.txt", "notes.txt"]):
        contents[name] = f"not reviews {i}"
        (inbox / name).write_text(contents[name])
    score(scoring_root)
    (inbox / "notes.txt").write_text("not reviews, second run")
    score(scoring_root)
    kept = quarantined_copies(scoring_root)
    assert sorted(p.read_text() for p in kept) == sorted([*contents.values(),
                                                          "not reviews, second run"])
    reasons = quarantined_reasons(scoring_root)
    assert len(reasons) == 5
    for reason in reasons:  # each reason sits beside its own file
        assert reason.with_name(reason.name.removesuffix(".reason.json")).is_file()
    assert set(quarantined_files(scoring_root)) == {"notes?.txt", "notes*.txt", "notes:.txt",
                                                    "notes.txt"}


def test_a_committed_file_is_not_rescored_after_a_promotion(scoring_root, subprocess_env):
    """Killed between the ledger commit and the archive move, then a new champion: the
    file left in incoming/ is archived, not scored again (every row twice)."""
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "a.csv", good_rows("a", 7))
    first = Registry(layout_of(scoring_root).models).champion_version()
    killed = run_cli(scoring_root, subprocess_env, "score:ledger-committed")
    output, _ = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, output[-3000:]
    assert [p.name for p in inbox.rglob("*") if p.is_file()] == ["a.csv"]  # still claimed
    Registry(layout_of(scoring_root).models).promote_by_hand(add_version(scoring_root, "next"), "test")
    summary = score(scoring_root)
    assert summary["rows_scored"] == 0 and summary["files_already_scored"] == 1
    assert scored_rows(scoring_root).column("model_version").to_pylist() == [first] * 7
    assert not list(inbox.iterdir())


def test_a_run_killed_between_its_archive_moves_and_their_mark_leaves_a_ledger_that_agrees(
        scoring_root, subprocess_env):
    """Killed once its inputs were in archive/ but before the ledger marked them: the
    inputs are gone from incoming/, so no claim comes back to mark them. The next run
    marks them, or the ledger would say forever that they are still to be archived."""
    inbox = layout_of(scoring_root).incoming
    for name in ("a.csv", "b.csv"):
        write_csv(inbox / name, good_rows(name[0], 4))
    killed = run_cli(scoring_root, subprocess_env, "score:inputs-archived")
    output, _ = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, output[-3000:]
    ledger = Ledger(scoring_root / "state" / "ledger.sqlite")
    assert len(ledger.unarchived()) == 2  # the window this test is about
    assert not [p for p in inbox.rglob("*") if p.is_file()]
    write_csv(inbox / "c.csv", good_rows("c", 3))
    summary = score(scoring_root)
    assert summary["rows_scored"] == 3 and summary["files_already_scored"] == 0
    assert ledger.unarchived() == []
    assert scored_ids(scoring_root) == sorted(
        [*(r["review_id"] for r in good_rows("a", 4)), *(r["review_id"] for r in good_rows("b", 4)),
         *(r["review_id"] for r in good_rows("c", 3))])
    assert len(list(layout_of(scoring_root).archive.rglob("*.csv"))) == 3


def test_a_file_moved_back_from_the_archive_is_scored_by_the_new_champion(scoring_root):
    """What the README tells users to do to rescore old files still works."""
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "a.csv", good_rows("a", 7))
    score(scoring_root)
    Registry(layout_of(scoring_root).models).promote_by_hand(add_version(scoring_root, "next"), "test")
    shutil.move(next(layout_of(scoring_root).archive.rglob("*a.csv")), inbox / "a.csv")
    assert score(scoring_root)["rows_scored"] == 7
    versions = scored_rows(scoring_root).column("model_version").to_pylist()
    assert sorted(set(versions)) == sorted({"next", Registry(layout_of(scoring_root).models).read_history()[0]["version"]})


def run_paused(root, env, pause_dir):
    """A `reviewflow score` that stops after reading the first batch of its first file
    until the test says go (tasks.failpoints)."""
    pause_dir.mkdir()
    process = run_cli(root, env, REVIEWFLOW_PAUSEPOINT="score:mid-file",
                      REVIEWFLOW_PAUSEPOINT_DIR=str(pause_dir))
    deadline = time.monotonic() + 300
    while not (pause_dir / "reached").exists():
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the run never reached its pause point"
        time.sleep(0.05)
    return process


def resume(process, pause_dir) -> str:
    (pause_dir / "go").touch()
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def scored_ids(root) -> list[str]:
    return sorted(scored_rows(root).column("review_id").to_pylist())


def test_a_file_replaced_while_it_is_read_loses_nothing(scoring_root, subprocess_env, tmp_path):
    """An upload renamed over the inbox name while a run reads the old content is
    scored too, not archived under the old content's hash with its rows unscored."""
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "a.csv", good_rows("old", 50))
    process = run_paused(scoring_root, subprocess_env, tmp_path / "pause")
    write_csv(inbox / ".a.csv.tmp", good_rows("new", 60))
    os.replace(inbox / ".a.csv.tmp", inbox / "a.csv")  # as the README tells uploaders to
    resume(process, tmp_path / "pause")
    score(scoring_root)
    expected = sorted([r["review_id"] for r in good_rows("old", 50) + good_rows("new", 60)])
    assert scored_ids(scoring_root) == expected
    assert not [p for p in inbox.rglob("*") if p.is_file()]


def test_a_file_claimed_by_a_live_run_is_skipped_by_another_without_reading_it(
        scoring_root, subprocess_env, tmp_path, monkeypatch):
    """A run holds a lock on each claim it works on (``RunState.claim_lock``): another
    run that lists the claim leaves it at once, without reading the whole file to hash
    it only to find the content locked (on object storage a whole download per run)."""
    from tasks.state import claim

    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "a.csv", good_rows("a", 50))
    process = run_paused(scoring_root, subprocess_env, tmp_path / "pause")
    write_csv(inbox / "b.csv", good_rows("b", 3))
    hashed, real = [], claim.file_sha256
    monkeypatch.setattr(claim, "file_sha256",
                        lambda path: hashed.append(path.name) or real(path))
    summary = score(scoring_root)
    assert summary["files_scored"] == 1 and summary["files_busy"] == 1
    assert hashed == ["b.csv"]  # the live run's claim was not read
    resume(process, tmp_path / "pause")
    assert scored_ids(scoring_root) == sorted(r["review_id"] for r in good_rows("a", 50)
                                              + good_rows("b", 3))


def test_a_file_appended_to_while_it_is_read_loses_nothing(scoring_root, subprocess_env,
                                                            tmp_path):
    """An append in place while a run reads: nothing is kept from the run that saw the
    file change; the next run scores the whole new content, each row once."""
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "a.csv", good_rows("a", 50))
    process = run_paused(scoring_root, subprocess_env, tmp_path / "pause")
    (being_read,) = inbox.rglob("a.csv")
    more = good_rows("more", 10)
    with open(being_read, "a", encoding="utf-8") as stream:
        stream.writelines(f"{row['review_id']},{row['text']}\n" for row in more)
    output = resume(process, tmp_path / "pause")
    assert '"files_changed": 1' in output
    assert not scored_ids(scoring_root)
    score(scoring_root)
    assert scored_ids(scoring_root) == sorted(r["review_id"] for r in good_rows("a", 50) + more)
    assert not [p for p in inbox.rglob("*") if p.is_file()]


def test_a_ledger_from_before_archived_at_opens_with_its_files_archived(tmp_path):
    """Byte-compatible with a current user's ledger: the column is added, their rows
    count as archived (their runs finished), new commits start unarchived."""
    import sqlite3

    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE scored_files (source_sha256 TEXT NOT NULL, model_version TEXT"
                   " NOT NULL, source_file TEXT NOT NULL, rows_read INTEGER NOT NULL, rows_scored"
                   " INTEGER NOT NULL, rows_quarantined INTEGER NOT NULL, scored_part TEXT,"
                   " quarantine_part TEXT, finished_at TEXT NOT NULL,"
                   " PRIMARY KEY (source_sha256, model_version))")
        db.execute("INSERT INTO scored_files VALUES ('s1', 'v1', 'a.csv', 3, 2, 1, 'p', NULL,"
                   " '2026-11-01T00:00:00+00:00')")
    ledger = Ledger(path)
    assert ledger.scored("s1", "v1").archived_at == "2026-11-01T00:00:00+00:00"
    assert ledger.committed_not_archived("s1") is None
    from tasks.state.ledger import ScoredFile

    ledger.record_scored_many([ScoredFile("s2", "v1", "b.csv", 1, 1, 0, "p2", None)])
    assert ledger.committed_not_archived("s2").source_file == "b.csv"
    ledger.record_archived_many(["s2"])
    assert ledger.committed_not_archived("s2") is None
    assert ledger.totals()["rows_read"] == 4


OLD_LEDGER = """
CREATE TABLE scored_files (
    source_sha256 TEXT NOT NULL, model_version TEXT NOT NULL, source_file TEXT NOT NULL,
    rows_read INTEGER NOT NULL, rows_scored INTEGER NOT NULL,
    rows_quarantined INTEGER NOT NULL, scored_part TEXT, quarantine_part TEXT,
    finished_at TEXT NOT NULL, PRIMARY KEY (source_sha256, model_version));
INSERT INTO scored_files VALUES ('aa', 'v1', 'old.csv', 3, 2, 1, 'p', NULL, '2026-01-01');
"""


def test_a_ledger_from_before_the_encoding_column_still_opens(tmp_path):
    import sqlite3

    from tasks.state.ledger import ScoredFile

    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_LEDGER)
    ledger = Ledger(path)
    old = ledger.scored("aa", "v1")
    assert (old.source_file, old.rows_read, old.encoding, old.rows_id_generated) == \
        ("old.csv", 3, None, None)
    ledger.record_scored_many([ScoredFile("bb", "v1", "new.csv", 2, 2, 0, "q", None,
                                    encoding="cp949", rows_id_generated=2)])
    new = Ledger(path).scored("bb", "v1")
    assert (new.encoding, new.rows_id_generated) == ("cp949", 2)
    assert ledger.totals()["rows_read"] == 5


@pytest.mark.parametrize("content", ["", '{"version": "2026', "[]", '{"version": "gone"}'])
def test_a_broken_champion_pointer_says_how_to_repair_it(scoring_root, capsys, content):
    """A truncated or empty champion.json, or one naming a missing version: one line that
    says what is wrong and how to repair it, inputs untouched, and the repair works."""
    from flows.cli import main

    registry = Registry(layout_of(scoring_root).models)
    version = registry.champion_version()
    write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 3))
    registry.pointer.write_text(content)
    with pytest.raises(SystemExit) as stopped:
        main(["score", "--data-dir", str(scoring_root)])
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert "champion.json" in message and "reviewflow models promote VERSION" in message
    assert "Traceback" not in message and len(message.strip().splitlines()) == 1
    assert (layout_of(scoring_root).incoming / "a.csv").exists()
    main(["models", "--data-dir", str(scoring_root), "list"])
    assert version in capsys.readouterr().out
    main(["models", "--data-dir", str(scoring_root), "promote", version, "--reason", "repair"])
    assert registry.champion_version() == version


def test_loading_and_serving_a_model_writes_no_autograph_files(scoring_root, subprocess_env,
                                                              tmp_path):
    """TensorFlow's autograph wrote one generated source file per model into the temp
    folder, removed only at a clean interpreter exit: never for a killed run or a Dask
    worker process. Checked while the run is paused mid-file, model loaded and used."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 30))
    process = run_paused(scoring_root, dict(subprocess_env, TMPDIR=str(temp)),
                         tmp_path / "pause")
    generated = list(temp.glob("__autograph_generated_file*"))
    resume(process, tmp_path / "pause")
    assert generated == []
    assert len(scored_ids(scoring_root)) == 30

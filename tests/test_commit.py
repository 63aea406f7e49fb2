"""The exactly-once protocol (tasks.state.commit) on its own: claim, commit, archive, quarantine.

Plain functions over a real data root, a real ledger and real locks; each file is taken
and claimed by the product's own steps (``Committer.take``, ``Committer.claim``), shard
results are made by hand (no model, no flow), so each step of the protocol is checked
alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import pyarrow as pa
import pytest

from tasks.layout import DataLayout, kept_name, part_name
from tasks.scoring.shard import ShardResult
from tasks.state.claim import HANDLED_ELSEWHERE, Claim, Hashed
from tasks.state.commit import Committer
from tasks.state.inbox import claim_for_run
from tasks.state.ledger import Ledger, ScoredFile
from tasks.storage.local import StagedParquet, exclusive_lock, file_sha256

VERSION = "v1"
DAY = "2026-01-02"
SCHEMA = pa.schema([("review_id", pa.string())])


@pytest.fixture
def layout(tmp_path) -> DataLayout:
    return DataLayout(root=tmp_path / "data").ensure()


@pytest.fixture
def committer(layout) -> Committer:
    return Committer(layout, Ledger(layout.ledger), VERSION, DAY, logging.getLogger("test"))


def NO_CLAIM_LOCK(key: str):  # a local claim is a rename: it takes no claim lock
    return contextlib.nullcontext()


def upload(layout: DataLayout, committer: Committer, name: str,
           text: str = "review_id,text\na,good\n") -> Hashed:
    """An inbox file, taken (claimed, its claim lock held, hashed) by the product's step."""
    path = layout.incoming / name
    path.write_text(text)
    hashed = committer.take(path)
    assert isinstance(hashed, Hashed), hashed
    assert hashed.sha256 == file_sha256(hashed.path) and hashed.known is not None
    return hashed


def staged_result(layout: DataLayout, sha256: str, rows: int = 2) -> ShardResult:
    """What a shard leaves: a temporary scored part and counts."""
    part = StagedParquet(layout.scored_partition(DAY) / part_name(sha256, VERSION), SCHEMA)
    part.write(pa.table({"review_id": [f"r{i}" for i in range(rows)]}))
    result = ShardResult(None, sha256=sha256, rows_read=rows, rows_scored=rows)
    result.scored_part = (part.finish(), part.final)
    return result


def test_a_claimed_file_is_committed_then_archived(layout, committer):
    hashed = upload(layout, committer, "a.csv")
    sha256 = hashed.sha256
    claim = committer.claim(hashed)
    assert isinstance(claim, Claim) and claim.size == hashed.path.stat().st_size
    result = staged_result(layout, sha256)
    (outcome,) = committer.commit([claim], [[result]])
    assert outcome.status == "scored" and outcome.rows_scored == 2 and outcome.shards == 1
    part = layout.scored_partition(DAY) / part_name(sha256, VERSION)
    assert part.is_file() and not result.scored_part[0].exists()  # published
    entry = Ledger(layout.ledger).scored(sha256, VERSION)
    assert entry.scored_part == str(part) and entry.archived_at
    assert (layout.archive_folder(DAY) / kept_name(sha256, "a.csv")).is_file()
    assert not (layout.incoming / ".claimed").exists()  # the claim folder is gone
    with exclusive_lock(layout.lock_file(sha256)):  # released: it can be taken at once
        pass


def test_content_already_committed_is_archived_not_scored(layout, committer):
    hashed = upload(layout, committer, "a.csv")
    sha256 = hashed.sha256
    claim = committer.claim(hashed)
    committer.commit([claim], [[staged_result(layout, sha256)]])
    again = upload(layout, committer, "copy.csv")  # the same bytes under another name
    assert again.sha256 == sha256
    outcome = committer.claim(again)
    assert outcome.status == "already scored" and VERSION in outcome.detail
    assert (layout.archive_folder(DAY) / kept_name(sha256, "copy.csv")).is_file()


def test_content_claimed_by_another_holder_is_busy(layout, committer):
    hashed, twin = upload(layout, committer, "a.csv"), upload(layout, committer, "b.csv")
    first = committer.claim(hashed)
    second = committer.claim(twin)  # the same content under another name
    assert isinstance(first, Claim) and second.status == "busy"
    first.release()
    assert isinstance(committer.claim(committer.take(twin.path)), Claim)


def test_a_claimed_file_is_busy_while_another_holder_has_its_claim_lock(layout, committer):
    hashed = upload(layout, committer, "a.csv")
    outcome = committer.take(hashed.path)  # a leftover claim another run is working on
    assert outcome.status == "busy" and outcome.detail == HANDLED_ELSEWHERE
    hashed.release()
    assert isinstance(committer.take(hashed.path), Hashed)


def test_a_file_gone_before_its_claim_is_busy(layout, committer):
    hashed = upload(layout, committer, "a.csv")
    os.unlink(hashed.path)
    outcome = committer.claim(hashed)
    assert outcome.status == "busy" and outcome.detail == "handled by another run"


def test_an_unreadable_file_is_quarantined_with_its_reason(layout, committer):
    hashed = upload(layout, committer, "broken.csv")
    sha256 = hashed.sha256
    outcome = committer.reject(committer.claim(hashed), "not CSV")
    assert outcome.status == "quarantined" and outcome.detail == "not CSV"
    # Any day's folder: the reject may fall after midnight, past a day read here.
    (kept,) = layout.quarantined_files("x").parent.glob(f"*/{kept_name(sha256, 'broken.csv')}")
    assert kept.is_file() and kept.with_name(kept.name + ".reason.json").is_file()
    assert Ledger(layout.ledger).totals()["files_quarantined"] == 1
    # The lock was released: a new upload of the same bytes is claimed (and quarantined) again.
    again = upload(layout, committer, "broken.csv")
    assert committer.reject(committer.claim(again), "not CSV").status == "quarantined"


def test_a_file_changed_while_read_keeps_nothing(layout, committer):
    hashed = upload(layout, committer, "a.csv")
    path, sha256 = hashed.path, hashed.sha256
    claim = committer.claim(hashed)
    result = staged_result(layout, sha256)
    with open(path, "a") as out:  # an append in place
        out.write("b,more\n")
    (outcome,) = committer.commit([claim], [[result]])
    assert outcome.status == "changed"
    assert not result.scored_part[0].exists()  # the temporary part is discarded
    assert not any(layout.scored.rglob("*.parquet"))
    assert Ledger(layout.ledger).scored(sha256, VERSION) is None
    assert path.exists()  # still claimed, for the next run


def test_commit_sweeps_stale_parts_of_this_content_and_model_only(layout, committer):
    hashed = upload(layout, committer, "a.csv")
    sha256 = hashed.sha256
    stale = layout.scored_partition("2025-12-31") / part_name(sha256, VERSION, 1)
    other = layout.scored_partition("2025-12-31") / part_name(sha256, VERSION + "-b")
    for part in (stale, other):
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"left by a killed run")
    # The other version committed its part (a deliberate rescore keeps both models'
    # output); an uncommitted one is swept (test_commit_sweeps_uncommitted_parts_...).
    Ledger(layout.ledger).record_scored_many([ScoredFile(sha256, VERSION + "-b", "a.csv", 1, 1, 0,
                                                   str(other), None, archived_at="2025-12-31")])
    claim = committer.claim(hashed)
    committer.commit([claim], [[staged_result(layout, sha256)]])
    assert not stale.exists() and other.exists()


def test_commit_sweeps_uncommitted_parts_of_this_content_by_any_model(layout, committer):
    """A run of another model killed after publishing its parts, before its ledger
    commit, left them in scored/: the next commit of this content removes them, and
    keeps only what the ledger lists."""
    hashed = upload(layout, committer, "a.csv")
    sha256 = hashed.sha256
    day = layout.scored_partition("2025-12-31")
    uncommitted = [day / part_name(sha256, "old"), day / part_name(sha256, "old", 2),
                   day / f".{part_name(sha256, 'old')}.0123abcd.tmp"]
    committed = day / part_name(sha256, "kept")
    unrelated = day / part_name("f" * 64, "old")
    for part in (*uncommitted, committed, unrelated):
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"parquet")
    Ledger(layout.ledger).record_scored_many([ScoredFile(sha256, "kept", "a.csv", 1, 1, 0,
                                                   str(committed), None,
                                                   archived_at="2025-12-31")])
    claim = committer.claim(hashed)
    committer.commit([claim], [[staged_result(layout, sha256)]])
    assert [p.exists() for p in uncommitted] == [False, False, False]
    assert committed.exists() and unrelated.exists()


def test_a_local_file_is_claimed_by_a_rename_and_its_identity(tmp_path):
    path = Path(tmp_path / "x.csv")
    path.write_text("review_id,text\n")
    claimed, known = claim_for_run(path, NO_CLAIM_LOCK)
    assert claimed.parent.parent.name == ".claimed" and known is not None


def test_a_move_killed_between_its_copy_and_its_delete_is_finished_not_repeated(
        tmp_path, s3_env):
    """The archive step of a run SIGKILLed after it took the archive name and before it
    removed the input: the next run's move removes the input, and the file is archived
    once (no ``~2`` copy), on a local disk and on object storage."""
    from tasks.storage.local import move_file_keeping
    from tasks.storage.objects import ObjectPath

    source, archive = tmp_path / "incoming" / "a.csv", tmp_path / "archive"
    source.parent.mkdir()
    archive.mkdir()
    source.write_text("review_id,text\n1,fine\n")
    os.link(source, archive / "a.csv")  # the killed move's hard link
    assert move_file_keeping(source, archive, "a.csv") == archive / "a.csv"
    assert not source.exists() and [p.name for p in archive.iterdir()] == ["a.csv"]

    other = tmp_path / "incoming" / "a.csv"  # another file of that name: kept beside
    other.write_text("review_id,text\n2,other\n")
    assert move_file_keeping(other, archive, "a.csv").name == "a~2.csv"

    endpoint, fs = s3_env
    fs.mkdir("moves")
    options = {"endpoint_url": endpoint}
    fs.pipe_file("moves/incoming/b.csv", b"review_id,text\n1,fine\n")
    fs.copy("moves/incoming/b.csv", "moves/archive/b.csv")  # the killed move's copy
    remote = ObjectPath("s3://moves/incoming/b.csv", options)
    folder = ObjectPath("s3://moves/archive", options)
    assert move_file_keeping(remote, folder, "b.csv").name == "b.csv"
    assert not fs.exists("moves/incoming/b.csv")
    assert [p.rpartition("/")[2] for p in fs.ls("moves/archive", refresh=True)] == ["b.csv"]
    fs.pipe_file("moves/incoming/b.csv", b"review_id,text\n2,other\n")
    assert move_file_keeping(remote, folder, "b.csv").name == "b~2.csv"

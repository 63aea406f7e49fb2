"""Claims on object storage (tasks/state/object_claims.py), on moto's S3 server.

A run claims an inbox object by a conditional copy to ``incoming/.claimed/<token>/`` and
a conditional delete, under the state's claim lock, and then reads only its copy: an
object overwritten in ``incoming/`` while it is scored is not lost (the new content is
scored by a later run, the old one once). moto ignores ``CopySourceIfMatch``, so these
tests also show the check after the copy that stands in for it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest
from test_exactly_once import resume, run_paused

from tasks.layout import DataLayout
from tasks.settings import Settings
from tasks.state import object_claims
from tasks.state.backend import SQLiteState
from tasks.state.inbox import claim_for_run, claimed_files, identity, is_claimed, list_inbox
from tasks.state.object_claims import ObjectVersion
from tasks.storage.local import LockHeldError
from tasks.storage.objects import ObjectPath
from tests.helpers import good_rows, quarantined_rows, scored_rows


@pytest.fixture
def inbox(s3_env):
    endpoint, fs = s3_env
    bucket = f"claims-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    return ObjectPath(f"s3://{bucket}/root/incoming", {"endpoint_url": endpoint}), fs


@pytest.fixture
def state(tmp_path):
    settings = Settings(data_dir="s3://bucket/root", state_dir=str(tmp_path / "state"))
    opened = SQLiteState.for_layout(DataLayout.of(settings))
    yield opened
    opened.close()


def _put(fs, path: ObjectPath, data: bytes) -> None:
    fs.pipe_file(path.url, data)


def test_an_object_is_claimed_by_a_conditional_copy_and_delete(inbox, state):
    incoming, fs = inbox
    source = incoming / "a.csv"
    _put(fs, source, b"review_id,text\n1,fine\n")
    claimed, version = claim_for_run(source, state.claim_lock)
    assert is_claimed(claimed) and claimed.name == "a.csv"
    assert claimed.read_bytes() == b"review_id,text\n1,fine\n"
    assert not source.exists()  # the inbox name is free for the next upload
    assert version == identity(claimed) == ObjectVersion(claimed.etag())
    assert claimed_files(incoming) == [claimed]  # what the next run sees if this one dies
    assert claim_for_run(claimed, state.claim_lock) == (claimed, version)  # a leftover
    with pytest.raises(FileNotFoundError):  # claimed already: another run's answer
        claim_for_run(source, state.claim_lock)


def test_an_object_being_claimed_by_another_run_is_left_to_it(inbox, state, tmp_path):
    incoming, fs = inbox
    source = incoming / "a.csv"
    _put(fs, source, b"review_id,text\n1,fine\n")
    other = SQLiteState.for_layout(DataLayout.of(Settings(data_dir="s3://bucket/root",
                                                         state_dir=str(tmp_path / "state"))))
    with other.claim_lock(source.url.split("://", 1)[1]), pytest.raises(LockHeldError):
        claim_for_run(source, state.claim_lock)
    assert source.exists() and claimed_files(incoming) == []


def test_an_overwrite_after_the_copy_stays_in_the_inbox_for_the_next_run(
        inbox, state, monkeypatch):
    incoming, fs = inbox
    source = incoming / "a.csv"
    _put(fs, source, b"old")
    copy = object_claims.copy_if_match

    def copy_then_upload(src, target, etag, size):
        copied = copy(src, target, etag, size)
        _put(fs, source, b"new content")  # the uploader, between the copy and the delete
        return copied
    monkeypatch.setattr(object_claims, "copy_if_match", copy_then_upload)
    claimed, version = claim_for_run(source, state.claim_lock)
    assert claimed.read_bytes() == b"old"  # this run scores the version it claimed
    assert source.read_bytes() == b"new content"  # the conditional delete left the new one
    assert version == identity(claimed)


def test_an_overwrite_before_the_copy_is_claimed_at_its_new_version(inbox, state, monkeypatch):
    incoming, fs = inbox
    source = incoming / "a.csv"
    _put(fs, source, b"old")
    copy = object_claims.copy_if_match
    uploads = iter([b"newer", b"newest"])

    def upload_then_copy(src, target, etag, size):
        if (data := next(uploads, None)) is not None:
            _put(fs, source, data)  # the uploader, between the look and the copy
        return copy(src, target, etag, size)
    monkeypatch.setattr(object_claims, "copy_if_match", upload_then_copy)
    claimed, _ = claim_for_run(source, state.claim_lock)
    assert claimed.read_bytes() == b"newest" and not source.exists()
    assert claimed_files(incoming) == [claimed]  # the copies of stale versions are gone


def test_an_object_that_keeps_changing_is_left_for_the_next_run(inbox, state, monkeypatch):
    incoming, fs = inbox
    source = incoming / "a.csv"
    _put(fs, source, b"v0")
    copy = object_claims.copy_if_match
    counter = iter(range(1, 100))

    def always_new(src, target, etag, size):
        _put(fs, source, f"v{next(counter)}".encode())
        return copy(src, target, etag, size)
    monkeypatch.setattr(object_claims, "copy_if_match", always_new)
    with pytest.raises(object_claims.ObjectChangedError, match="next run"):
        claim_for_run(source, state.claim_lock)
    assert source.exists() and claimed_files(incoming) == []


def test_a_leftover_claim_is_listed_first_and_its_attempts_file_is_not(inbox, state):
    incoming, fs = inbox
    _put(fs, incoming / "b.csv", b"review_id,text\n1,fine\n")
    _put(fs, incoming / "a.csv", b"review_id,text\n2,fine\n")
    claimed, _ = claim_for_run(incoming / "a.csv", state.claim_lock)
    _put(fs, claimed.parent / ".attempts", b"2\n")
    listed = list_inbox(incoming, settle_seconds=0)
    assert listed.ready == [claimed, incoming / "b.csv"] and not listed.unsupported


def test_an_object_overwritten_while_it_is_scored_loses_nothing(
        s3_env, trained_models, subprocess_env, tmp_path, pg_cluster):
    """A `reviewflow score` paused mid-file while the uploader overwrites the object it
    reads: that run scores the old content, the next the new one, each row once. With
    PostgreSQL state (the claim lock without a state folder is the tests above)."""
    endpoint, fs = s3_env
    bucket = f"over-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/team"
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    env = dict(subprocess_env, REVIEWFLOW_STORAGE_OPTIONS=json.dumps({"endpoint_url": endpoint}),
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1")
    env["REVIEWFLOW_STATE_URL"] = pg_cluster.create_database(f"t{uuid.uuid4().hex[:12]}")

    def csv(rows) -> bytes:
        return ("review_id,text\n" + "".join(f"{r['review_id']},{r['text']}\n" for r in rows)
                ).encode()
    fs.pipe_file(f"{root}/incoming/a.csv", csv(good_rows("old", 50)))
    process = run_paused(root, env, tmp_path / "pause")
    fs.pipe_file(f"{root}/incoming/a.csv", csv(good_rows("new", 60)))  # overwritten
    assert '"files_scored": 1' in resume(process, tmp_path / "pause")
    assert fs.exists(f"{root}/incoming/a.csv")  # the new content waits for the next run
    resume(run_paused(root, env, tmp_path / "pause2"), tmp_path / "pause2")

    local = tmp_path / "copy"
    fs.get(f"{root}/", str(local), recursive=True)
    got = Counter(scored_rows(local).column("review_id").to_pylist())
    assert got == Counter(r["review_id"] for r in good_rows("old", 50) + good_rows("new", 60))
    assert quarantined_rows(local).num_rows == 0
    assert fs.glob(f"{root}/incoming/**") == []  # no object, no claim left behind
    assert len(fs.glob(f"{root}/archive/*/*a.csv")) == 2  # two contents, each archived once

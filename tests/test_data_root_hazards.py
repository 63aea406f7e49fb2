"""The data root's state against what an adversary can arrange: links out of the
root, file names that are not text, an inbox on another file system, a killed run's
parts beside a new champion's, a file that kills every run, two state folders on one
bucket.

Each test builds the situation on a real data root (real Prefect, real models, Parquet
read back) and checks the contract: every row of every input ends in ``scored/`` or
``quarantine/`` once, nothing outside the root is moved or deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import PROJECT, reviewflow_command
from test_reliability import run_cli

from flows.score_reviews import score_reviews
from tasks.errors import LinkedFolderError, PartVanishedError, StateMismatchError
from tasks.layout import VERSIONS_FOLDER, DataLayout, day_of
from tasks.training.registry import Registry
from tests.helpers import (
    add_version,
    good_rows,
    layout_of,
    quarantine_files_folder,
    quarantined_files,
    score,
    scored_rows,
    write_csv,
)


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (links not followed), by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink()}


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the data root holding what an attacker would like moved in:
    token-like folders with a CSV and a text file, and a dot-folder with a key."""
    folder = tmp_path / "outside"
    (folder / "exports").mkdir(parents=True)
    write_csv(folder / "exports" / "clients.csv", good_rows("c", 3))
    (folder / "exports" / "notes.txt").write_text("private notes")
    (folder / ".ssh").mkdir()
    (folder / ".ssh" / "id_rsa").write_text("-----BEGIN PRIVATE KEY-----")
    return folder


# ------------------------------------------------------------------ links out of the root

def test_a_claims_folder_link_moves_nothing_into_the_root(scoring_root, outside):
    """incoming/.claimed made a link to a folder outside: followed, it would make what
    lies two levels below the target leftover claims, their files moved into the root
    and deleted where they are. It is refused; nothing moves."""
    before = files_under(outside)
    write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 4))
    (layout_of(scoring_root).incoming / ".claimed").symlink_to(outside)
    with pytest.raises(LinkedFolderError, match=r"\.claimed is a symbolic link"):
        score(scoring_root)
    assert files_under(outside) == before
    assert (layout_of(scoring_root).incoming / "a.csv").is_file()
    assert not list(layout_of(scoring_root).quarantine.rglob("*.*"))
    assert scored_rows(scoring_root).num_rows == 0


def test_the_command_says_so_in_one_line_and_exits_2(scoring_root, outside, subprocess_env):
    before = files_under(outside)
    (layout_of(scoring_root).incoming / ".claimed").symlink_to(outside)
    done = subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root)),
                          cwd=PROJECT, env=dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("reviewflow:")]
    assert ".claimed is a symbolic link" in line and "Traceback" not in done.stderr
    assert files_under(outside) == before


TODAY = day_of(datetime.now(UTC))  # at collection: the run may start after midnight
PAST = "2019-01-31"  # a partition of another day, which readers go through as well
_AT = DataLayout(root=Path())  # the folders, relative to the root
LINKABLE = [str(p) for p in (
    _AT.archive, _AT.quarantine, _AT.quarantined_files(TODAY).parent, _AT.rejected_rows,
    _AT.scored, _AT.monitoring, _AT.production_accuracy, _AT.state, _AT.lock_file("0" * 64).parent,
    _AT.models / VERSIONS_FOLDER, _AT.incoming, _AT.archive_folder(TODAY),
    _AT.quarantined_files(TODAY), _AT.scored_partition(TODAY), _AT.rejected_partition(TODAY),
    _AT.monitoring_partition(TODAY), _AT.archive_folder(PAST), _AT.quarantined_files(PAST),
    _AT.scored_partition(PAST), _AT.rejected_partition(PAST), _AT.monitoring_partition(PAST),
    _AT.accuracy_partition("20190131T000000Z-abcdef"))]


@pytest.mark.parametrize("folder", LINKABLE)
def test_a_product_folder_that_is_a_link_is_refused(scoring_root, tmp_path, folder):
    """Each folder a run writes or reads, made a link to a folder outside the root:
    the run refuses before anything moves, and nothing lands outside."""
    target = tmp_path / "elsewhere"
    place = scoring_root / folder
    if place.exists():
        shutil.copytree(place, target, symlinks=True)
        shutil.rmtree(place)
    else:
        target.mkdir()
    place.parent.mkdir(parents=True, exist_ok=True)
    place.symlink_to(target)
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "a.csv", good_rows("a", 4))
    (inbox / "notes.txt").write_text("not reviews")
    before = files_under(target)
    with pytest.raises(LinkedFolderError, match="is a symbolic link"):
        score(scoring_root)
    assert files_under(target) == before
    assert (inbox / "a.csv").is_file() and (inbox / "notes.txt").is_file()


def test_a_claim_token_link_or_a_link_in_a_claim_is_quarantined_as_itself(scoring_root,
                                                                          outside):
    """A token folder under .claimed that is a link, and a link where a claimed file
    should be: the links are quarantined (as links), their targets neither read, moved
    nor deleted; the ordinary inbox file is scored."""
    before = files_under(outside)
    claims = layout_of(scoring_root).incoming / ".claimed"
    claims.mkdir()
    (claims / "0123456789ab").symlink_to(outside / "exports")
    (claims / "ba9876543210").mkdir()
    (claims / "ba9876543210" / "clients.csv").symlink_to(outside / "exports" / "clients.csv")
    write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 4))
    summary = score(scoring_root)
    assert files_under(outside) == before
    assert summary["rows_scored"] == 4 and summary["files_scored"] == 1
    reasons = quarantined_files(scoring_root)
    assert set(reasons) == {"0123456789ab", "clients.csv"}
    assert all("symbolic link" in r["reason"] for r in reasons.values())
    links = [p for p in quarantine_files_folder(scoring_root).rglob("*") if p.is_symlink()]
    assert len(links) == 2  # moved as links: the root holds no copy of the targets
    assert set(scored_rows(scoring_root).column("source_file").to_pylist()) == {"a.csv"}


def test_a_link_as_a_file_in_the_inbox_moves_the_link_only(scoring_root, outside):
    before = files_under(outside)
    (layout_of(scoring_root).incoming / "clients.csv").symlink_to(outside / "exports" / "clients.csv")
    summary = score(scoring_root)
    assert summary["rows_scored"] == 0 and files_under(outside) == before
    assert "symbolic link" in quarantined_files(scoring_root)["clients.csv"]["reason"]


def test_check_contained_accepts_a_plain_root_and_a_linked_root(tmp_path):
    """The root itself may be a link (a user's choice of where it lives); only the
    folders inside it may not."""
    def refusal(root: Path) -> str | None:
        try:
            DataLayout(root=root).check_contained()
        except LinkedFolderError as exc:
            return str(exc)
        return None

    real = tmp_path / "real"
    DataLayout(root=real).ensure()
    (tmp_path / "link").symlink_to(real)
    DataLayout(root=tmp_path / "link").ensure()
    assert refusal(real) is None
    assert refusal(tmp_path / "link") is None
    # The same check through either root refuses a link one level down.
    layout_of(real).scored.rename(tmp_path / "elsewhere")
    layout_of(real).scored.symlink_to(tmp_path / "elsewhere")
    assert "scored is a symbolic link" in refusal(real)
    assert "scored is a symbolic link" in refusal(tmp_path / "link")


# ------------------------------------------------------------------ names that are not text

def test_a_file_name_that_is_not_utf8_is_scored_under_a_cleaned_name(scoring_root):
    """A Latin-1 ``café.csv`` must not make every run fail (UnicodeEncodeError when
    pyarrow gets the path) and block the inbox for good."""
    inbox = os.fsencode(layout_of(scoring_root).incoming)
    write_csv(Path(os.fsdecode(inbox + b"/caf\xe9.csv")), good_rows("l", 6))
    write_csv(layout_of(scoring_root).incoming / "café.csv", good_rows("u", 5))  # cleans to the same
    write_csv(Path(os.fsdecode(inbox + b"/two\nlines\x07.csv")), good_rows("n", 4))
    Path(os.fsdecode(inbox + b"/notes\xff.txt")).write_text("not reviews")
    Path(os.fsdecode(inbox + b"/empty\xe9.csv")).write_bytes(b"")
    summary = score(scoring_root)
    assert summary["rows_scored"] == 6 + 5 + 4 and summary["files_scored"] == 3
    files = scored_rows(scoring_root).column("source_file").to_pylist()
    assert sorted(set(files)) == ["café.csv", "two_lines_.csv"]
    assert files.count("café.csv") == 11
    assert set(quarantined_files(scoring_root)) == {"notesÿ.txt", "emptyé.csv"}
    assert not os.listdir(inbox)
    archived = sorted(p.name.split("-", 1)[1] for p in layout_of(scoring_root).archive.rglob("*.csv"))
    assert archived == ["café.csv", "café.csv", "two_lines_.csv"]
    where = layout_of(scoring_root)
    for folder in (where.archive, where.quarantine, where.scored):  # every stored name is text
        for entry in folder.rglob("*"):
            entry.name.encode("utf-8")


def test_a_leftover_claim_with_a_name_that_is_not_utf8_is_scored(scoring_root):
    """Claimed under its raw name (as by a release that kept it) and left: the next
    run cleans the name and scores it instead of failing on it every time."""
    token = layout_of(scoring_root).incoming / ".claimed" / "0123456789ab"
    token.mkdir(parents=True)
    write_csv(Path(os.fsdecode(os.fsencode(token) + b"/na\xefve.csv")), good_rows("x", 3))
    summary = score(scoring_root)
    assert summary["rows_scored"] == 3
    assert scored_rows(scoring_root).column("source_file").to_pylist() == ["naïve.csv"] * 3
    assert not (layout_of(scoring_root).incoming / ".claimed").exists()


# ------------------------------------------------------------------ another file system

@pytest.fixture
def inbox_on_tmpfs(scoring_root):
    """incoming/ as a tmpfs mount: a real second file system under the data root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; this test runs as a user")
    inbox = layout_of(scoring_root).incoming
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(inbox)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs a host "
                    "that allows mounts (not an unprivileged container)")
    try:
        assert os.stat(inbox).st_dev != os.stat(layout_of(scoring_root).archive).st_dev
        yield inbox
    finally:
        subprocess.run(["umount", "-l", str(inbox)], check=False)


def test_an_inbox_on_another_file_system_is_scored_and_archived(scoring_root, inbox_on_tmpfs):
    """os.replace/os.link fail across devices (EXDEV): the files are scored and archived
    all the same, and the inbox is not blocked."""
    write_csv(inbox_on_tmpfs / "a.csv", good_rows("a", 5))
    write_csv(inbox_on_tmpfs / "b.csv", good_rows("b", 3))
    (inbox_on_tmpfs / "notes.txt").write_text("not reviews")
    summary = score(scoring_root)
    assert summary["rows_scored"] == 8 and summary["files_scored"] == 2
    assert set(quarantined_files(scoring_root)) == {"notes.txt"}
    assert not [p for p in inbox_on_tmpfs.rglob("*") if p.is_file()]
    archived = sorted(layout_of(scoring_root).archive.rglob("*.csv"))
    assert [p.name.split("-", 1)[1] for p in archived] == ["a.csv", "b.csv"]
    assert not [p for p in layout_of(scoring_root).archive.rglob("*.tmp")]


def test_a_kill_between_copy_and_remove_leaves_the_file_once_and_is_finished(
        scoring_root, inbox_on_tmpfs, subprocess_env):
    """Killed after the archive copy is durable, before the inbox copy is removed: the
    file is whole in one place or both; the next run finishes the move, every row
    scored once, one copy in the archive."""
    write_csv(inbox_on_tmpfs / "a.csv", good_rows("a", 5))
    killed = run_cli(scoring_root, subprocess_env, "storage:copied-across")
    output, _ = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, output[-3000:]
    archived = list(layout_of(scoring_root).archive.rglob("*a.csv"))
    claimed = [p for p in inbox_on_tmpfs.rglob("a.csv")]
    assert len(archived) + len(claimed) >= 1
    for copy in archived + claimed:
        assert copy.read_bytes().count(b"\n") == 6  # whole: header and 5 rows
    summary = score(scoring_root)
    assert summary["rows_scored"] == 0 and summary["files_already_scored"] == 1
    assert scored_rows(scoring_root).num_rows == 5
    assert len(list(layout_of(scoring_root).archive.rglob("*a.csv"))) == 1
    assert not [p for p in inbox_on_tmpfs.rglob("*") if p.is_file()]


# ------------------------------------------------------------------ a killed run's parts

@pytest.mark.parametrize("shard_rows", [None, "200"])
def test_parts_of_a_run_killed_before_its_commit_are_swept_for_a_new_champion(
        scoring_root, subprocess_env, shard_rows):
    """Killed after publishing its parts, before the ledger commit, then a new champion:
    the old version's parts are swept, so no row is in scored/ twice."""
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "a.csv", good_rows("a", 500))
    extra = {"REVIEWFLOW_SHARD_ROWS": shard_rows} if shard_rows else {}
    killed = run_cli(scoring_root, subprocess_env, "score:parts-published", **extra)
    output, _ = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, output[-3000:]
    assert scored_rows(scoring_root).num_rows == 500  # published, never committed
    Registry(layout_of(scoring_root).models).promote_by_hand(add_version(scoring_root, "next"), "test")
    summary = score(scoring_root)
    assert summary["rows_scored"] == 500
    scored = scored_rows(scoring_root)
    assert scored.num_rows == 500
    assert set(scored.column("model_version").to_pylist()) == {"next"}
    assert len(set(scored.column("review_id").to_pylist())) == 500


# ------------------------------------------------------------------ a file that kills runs

def test_an_unexpected_error_reading_one_file_quarantines_it_and_the_run_goes_on(
        scoring_root, monkeypatch):
    """A reader that dies on one file with MemoryError (a 3 GiB JSON line) quarantines
    that file; the run scores the files behind it instead of stopping with it claimed."""
    from tasks.scoring import checkpointed
    from tasks.scoring import shard as shard_scoring

    real = shard_scoring.iter_review_batches

    def reader(path, *args, **kwargs):
        if path.name.startswith("poison"):
            raise MemoryError
        return real(path, *args, **kwargs)

    # Where the shards read: in a bundle or a shard, and a file scored in checkpoints.
    for module in (shard_scoring, checkpointed):
        monkeypatch.setattr(module, "iter_review_batches", reader)
    inbox = layout_of(scoring_root).incoming
    for name in ("a.csv", "z.csv"):
        write_csv(inbox / name, good_rows(name[0], 4))
    (inbox / "poison.jsonl").write_text(json.dumps({"text": "x" * 100}) + "\n")
    # Over the small-file size: read by its own score-file task, not in a bundle.
    (inbox / "poison-big.jsonl").write_text(json.dumps({"text": "y" * (2 << 20)}) + "\n")
    summary = score(scoring_root)
    assert summary["files_scored"] == 2 and summary["rows_scored"] == 8
    reasons = quarantined_files(scoring_root)
    assert "MemoryError" in reasons["poison.jsonl"]["reason"]
    assert "MemoryError" in reasons["poison-big.jsonl"]["reason"]
    assert not [p for p in inbox.rglob("*") if p.is_file()]


def test_an_unexpected_error_validating_or_scoring_one_small_file_quarantines_only_it(
        scoring_root, monkeypatch):
    """Small files are validated in one suite run and scored in one task: an error that
    one of them brings out there quarantines that file, not the bundle or the run."""
    from tasks.scoring import rows
    from tasks.validation import ReviewValidator

    real_score, real_validate = rows.score_batch, ReviewValidator.validate_many

    def score_batch(model, valid, batch_size, model_version, source_file, *args):
        if source_file == "poison-score.csv":
            raise MemoryError("cannot allocate")
        return real_score(model, valid, batch_size, model_version, source_file, *args)

    def validate_many(self, items):
        if any(name == "poison-check.csv" for _, _, name in items):
            raise ValueError("a value the suite cannot take")
        return real_validate(self, items)

    monkeypatch.setattr(rows, "score_batch", score_batch)
    monkeypatch.setattr(ReviewValidator, "validate_many", validate_many)
    inbox = layout_of(scoring_root).incoming
    for name in ("a.csv", "poison-check.csv", "poison-score.csv", "z.csv"):
        write_csv(inbox / name, good_rows(name[0], 4))
    summary = score(scoring_root)
    assert summary["files_scored"] == 2 and summary["rows_scored"] == 8
    assert sorted(scored_rows(scoring_root).column("source_file").to_pylist()) == \
        ["a.csv"] * 4 + ["z.csv"] * 4
    reasons = quarantined_files(scoring_root)
    assert "MemoryError (cannot allocate)" in reasons["poison-score.csv"]["reason"]
    assert "ValueError (a value the suite cannot take)" in reasons["poison-check.csv"]["reason"]
    assert not [p for p in inbox.rglob("*") if p.is_file()]
    assert not list(scoring_root.rglob("*.tmp"))  # the poisoned files' parts are gone


def test_an_unexpected_error_planning_shards_quarantines_the_file(scoring_root, monkeypatch):
    """The same in the driver, where a file is read once to plan its shards."""
    from tasks.scoring import planning as shards

    real = shards.iter_review_batches

    def reader(path, *args, **kwargs):
        if path.name == "poison.csv":
            raise MemoryError("cannot allocate")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(shards, "iter_review_batches", reader)
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "poison.csv", good_rows("p", 30))
    write_csv(inbox / "z.csv", good_rows("z", 30))
    summary = score(scoring_root, shard_rows=10)
    assert summary["rows_scored"] == 30 and summary["files_scored"] == 1
    reason = quarantined_files(scoring_root)["poison.csv"]["reason"]
    assert "MemoryError (cannot allocate)" in reason


def test_a_file_that_keeps_killing_runs_is_quarantined_and_blocks_nothing(
        scoring_root, subprocess_env, monkeypatch):
    """A file whose reading kills the process (SIGKILL, as the OOM killer does) is not
    retried first by every run forever: new files are scored before leftover claims,
    and at max_claim_deaths the file is quarantined with the count."""
    inbox = layout_of(scoring_root).incoming
    write_csv(inbox / "a.csv", good_rows("a", 4))
    write_csv(inbox / "b-poison.csv", good_rows("p", 4))
    write_csv(inbox / "c.csv", good_rows("c", 4))
    poison = {"REVIEWFLOW_FAILPOINT_FILE": "b-poison.csv", "REVIEWFLOW_MAX_CLAIM_DEATHS": "2"}
    first = run_cli(scoring_root, subprocess_env, "score:mid-file", **poison)
    output, _ = first.communicate(timeout=600)
    assert first.returncode == -signal.SIGKILL, output[-3000:]
    write_csv(inbox / "d-new.csv", good_rows("d", 4))  # arrives while the poison waits
    second = run_cli(scoring_root, subprocess_env, "score:mid-file", **poison)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == -signal.SIGKILL, output[-3000:]
    assert "d-new.csv" in scored_rows(scoring_root).column("source_file").to_pylist()
    monkeypatch.setenv("REVIEWFLOW_MAX_CLAIM_DEATHS", "2")
    summary = score(scoring_root)  # the file would kill this run too: it is not read
    reason = quarantined_files(scoring_root)["b-poison.csv"]["reason"]
    assert reason.startswith("2 runs died while reading it")
    scored = scored_rows(scoring_root)
    assert sorted(set(scored.column("source_file").to_pylist())) == ["a.csv", "c.csv",
                                                                      "d-new.csv"]
    assert scored.num_rows == 12 and summary["files_quarantined"] == 1
    assert not [p for p in inbox.rglob("*") if p.is_file()]


# ------------------------------------------------------------------ two state folders

def test_two_state_folders_on_one_bucket_are_refused_in_one_line(s3_env, trained_models,
                                                                  tmp_path, monkeypatch):
    """Two runs on one s3:// prefix with different state folders would sweep each
    other's temporary parts: the second is refused in one line that names the cause."""
    endpoint, fs = s3_env
    bucket = "reviews-two-states"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/reviews"
    fs.put(str(trained_models), f"{root}/models", recursive=True)
    upload = tmp_path / "a.csv"
    write_csv(upload, good_rows("a", 3))
    fs.put_file(str(upload), f"{root}/incoming/a.csv")
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint}))
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state-one"))
    assert score_reviews(data_dir=root, settle_seconds=0)["rows_scored"] == 3
    marker = json.loads(fs.cat(f"{root}/.reviewflow-state.json"))
    assert marker["state_dir"] == str((tmp_path / "state-one").resolve())

    fs.put_file(str(upload), f"{root}/incoming/b.csv")
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state-two"))
    with pytest.raises(StateMismatchError) as refused:
        score_reviews(data_dir=root, settle_seconds=0)
    message = str(refused.value)
    assert "\n" not in message and "state-one" in message and "state-two" in message
    assert "REVIEWFLOW_STATE_DIR" in message and ".reviewflow-state.json" in message
    assert fs.exists(f"{root}/incoming/b.csv")  # untouched

    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state-one"))  # the shared one
    assert score_reviews(data_dir=root, settle_seconds=0)["files_already_scored"] == 1


def test_a_temporary_part_swept_by_another_run_names_the_cause(tmp_path):
    """The message when a run's temporary part vanishes says who removes one."""
    import logging

    from tasks.state.commit import Committer
    from tasks.state.ledger import Ledger

    layout = DataLayout(root=tmp_path / "data").ensure()
    committer = Committer(layout, Ledger(layout.ledger), "v1", TODAY, logging.getLogger())
    final = layout.scored_partition(TODAY) / "part-0123456789abcdef-v1.parquet"
    with pytest.raises(PartVanishedError, match=r"another run \(with a different state folder"):
        committer._publish_part(final.with_name(f".{final.name}.0123abcd.tmp"), final)

"""Object keys and file names taken literally (issue 37, item 3).

``[``, ``]``, ``*`` and ``?`` are ordinary characters in a file name and in an object key,
but fsspec reads them as a glob in ``copy``, ``rm``, ``cat``, ``get``, ``put`` and
``expand_path``: taken as patterns, a claimed ``good[1].csv`` cannot be archived,
``notes[1].txt`` is never quarantined and ``star*.csv`` is archived as a folder. Every
name here goes through claim, scoring, quarantine (an unsupported file, an empty one) and
archive, on a local data root and on one in moto's S3 server whose own prefix holds those
characters too; the object primitives are checked one by one below.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter

import pandas as pd
import pytest

from tasks.layout import (
    MODEL_FILE,
    STAGING_FOLDER,
    VERSIONS_FOLDER,
    DataLayout,
    kept_name,
)
from tasks.settings import Settings
from tasks.state.backend import open_state
from tasks.state.ledger import Ledger
from tasks.storage.local import safe_name
from tasks.storage.objects import EntryKind, ObjectPath, read_all, remove_tree, replace, scan
from tasks.training.registry import Registry
from tests.helpers import good_rows, layout_of, quarantined_files, score, scored_rows

# Review files, each with rows of its own, and what is quarantined whole.
REVIEW_NAMES = ["good[1].csv", "star*.csv", "q?.csv", "a]b.csv", "a[b]*c?.csv", "[x]?.jsonl",
                "a[!b]*.csv"]
UNSUPPORTED = "notes[1].txt"
EMPTY = "empty*[2]?.csv"  # a review file by its name, quarantined for its content
# The data root's prefix: a plain one, and one with the same characters (a key too).
PREFIXES = ["team/reviews", "team[1]*?/reviews"]


def review_bytes(name: str, rows: list[dict]) -> bytes:
    if name.endswith(".jsonl"):
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    return pd.DataFrame(rows).to_csv(index=False).encode()


def inbox_files() -> tuple[dict[str, bytes], Counter]:
    """Every file of the inbox by name, and the review ids it should score."""
    files, ids = {}, Counter()
    for i, name in enumerate(REVIEW_NAMES):
        rows = good_rows(f"f{i}", 3 + i)
        files[name] = review_bytes(name, rows)
        ids.update(r["review_id"] for r in rows)
    files[UNSUPPORTED] = b"not reviews"
    files[EMPTY] = b""
    return files, ids


def check_outcome(root, files: dict[str, bytes], ids: Counter, summary: dict, ledger: Ledger,
                  archived: list[str], left: list[str]) -> None:
    """Each review file scored once and archived under its cleaned name, the two others
    quarantined with their reasons, nothing left in the inbox, the ledger all archived."""
    assert summary["files_scored"] == len(REVIEW_NAMES), summary
    assert summary["files_quarantined"] == 2, summary
    assert Counter(scored_rows(root).column("review_id").to_pylist()) == ids
    assert sorted(set(scored_rows(root).column("source_file").to_pylist())) == sorted(REVIEW_NAMES)
    assert sorted(archived) == sorted(
        kept_name(hashlib.sha256(files[name]).hexdigest(), safe_name(name))
        for name in REVIEW_NAMES)
    assert left == []  # no file and no claim left in incoming/
    assert ledger.unarchived() == []
    assert ledger.totals()["rows_read"] == sum(ids.values())


def assert_nothing_left(summary: dict) -> None:
    """A second run found nothing: no file, no claim another run would have."""
    assert summary["inbox"].startswith("0 files ready"), summary
    assert summary["rows_read"] == summary["files_busy"] == summary["files_quarantined"] == 0


def test_names_with_glob_characters_are_scored_once_locally(scoring_root):
    files, ids = inbox_files()
    for name, data in files.items():
        (layout_of(scoring_root).incoming / name).write_bytes(data)
    summary = score(scoring_root)
    archived = [p.name for p in layout_of(scoring_root).archive.rglob("*") if p.is_file()]
    left = [str(p) for p in layout_of(scoring_root).incoming.rglob("*")]
    ledger = Ledger(scoring_root / "state" / "ledger.sqlite")
    check_outcome(scoring_root, files, ids, summary, ledger, archived, left)
    reasons = quarantined_files(scoring_root)
    assert set(reasons) == {UNSUPPORTED, EMPTY}
    assert "empty" in reasons[EMPTY]["reason"]
    assert_nothing_left(score(scoring_root))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_names_with_glob_characters_are_scored_once_on_s3(s3_env, trained_models, tmp_path,
                                                         monkeypatch, prefix):
    endpoint, fs = s3_env
    bucket = f"keys-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    root = f"s3://{bucket}/{prefix}"
    # Uploaded and read back with single-object calls: fsspec's put and get would read
    # the names as globs.
    for file in sorted(trained_models.rglob("*")):
        if file.is_file():
            key = f"{prefix}/models/{file.relative_to(trained_models)}"
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=file.read_bytes())
    files, ids = inbox_files()
    for name, data in files.items():
        fs.call_s3("put_object", Bucket=bucket, Key=f"{prefix}/incoming/{name}", Body=data)
    state = tmp_path / "state"
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(state))
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint}))

    summary = score(root)

    def keys(folder: str) -> list[str]:
        listed = fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=f"{prefix}/{folder}/")
        return [item["Key"].split(f"{prefix}/{folder}/", 1)[1]
                for item in listed.get("Contents", [])]
    archived = [key.split("/", 1)[1] for key in keys("archive")]
    local = tmp_path / "copy"  # the outputs, read back with pyarrow from a local copy
    for folder in ("scored", "quarantine"):
        for key in keys(folder):
            target = local / folder / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(fs.cat_file(f"{bucket}/{prefix}/{folder}/{key}"))
    check_outcome(local, files, ids, summary, Ledger(state / "ledger.sqlite"), archived,
                  keys("incoming"))
    for key in keys("archive"):  # each archived copy holds its file's bytes
        name = key.split("/", 1)[1].split("-", 1)[1]
        body = fs.cat_file(f"{bucket}/{prefix}/archive/{key}")
        assert body in [files[n] for n in REVIEW_NAMES if safe_name(n) == name]
    reasons = quarantined_files(local)
    assert set(reasons) == {UNSUPPORTED, EMPTY}
    assert "empty" in reasons[EMPTY]["reason"]
    assert_nothing_left(score(root))


# --------------------------------------------------------------------------- primitives

# Names a pattern would misread; ``good1.csv`` is what ``good[1].csv`` matches as one.
ODD_NAMES = ["good[1].csv", "star*.csv", "q?.csv", "a]b.csv", "a[b]*c?.csv", "[!x].csv"]
DECOYS = ["good1.csv", "starry.csv", "qq.csv", "abxc!.csv", "y.csv"]


@pytest.fixture(params=PREFIXES)
def odd_folder(request, s3_env):
    """A folder on S3 (under each prefix) holding the odd names and decoys their
    patterns would match, each object its own name's bytes."""
    endpoint, fs = s3_env
    bucket = f"prim-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    for name in ODD_NAMES + DECOYS:
        fs.call_s3("put_object", Bucket=bucket, Key=f"{request.param}/in/{name}",
                   Body=name.encode())
    return ObjectPath(f"s3://{bucket}/{request.param}", {"endpoint_url": endpoint}), fs


def test_a_move_copies_exactly_the_named_object(odd_folder):
    root, fs = odd_folder
    for name in ODD_NAMES:
        replace(root / "in" / name, root / "out" / name)
    assert sorted(p.name for p in (root / "out").iterdir()) == sorted(ODD_NAMES)
    for name in ODD_NAMES:  # an object, not a folder holding one, with its own bytes
        assert (root / "out" / name).read_bytes() == name.encode()
    assert sorted(p.name for p in (root / "in").iterdir()) == sorted(DECOYS)


def test_a_listing_and_a_pattern_take_the_folder_literally(odd_folder):
    root, _ = odd_folder
    entries = scan(root / "in")
    assert sorted(e.name for e in entries) == sorted(ODD_NAMES + DECOYS)
    assert {e.kind for e in entries} == {EntryKind.FILE}
    assert {e.size for e in entries if e.name == "star*.csv"} == {len("star*.csv")}
    assert [p.name for p in root.glob("in/good[[]1].csv")] == ["good[1].csv"]
    assert [p.name for p in root.glob("*/*[*]*")] == ["a[b]*c?.csv", "star*.csv"]
    assert [p.name for p in root.glob("in/good[0-9].csv")] == ["good1.csv"]
    assert len(list((root / "in").glob("*"))) == len(ODD_NAMES + DECOYS)
    assert [p.name for p in root.rglob("*[[]*")] == ["[!x].csv", "a[b]*c?.csv", "good[1].csv"]
    with pytest.raises(ValueError, match="rglob"):
        list(root.glob("**/*.csv"))


def test_reading_and_removing_take_each_key_literally(odd_folder):
    root, _ = odd_folder
    paths = [root / "in" / name for name in ODD_NAMES]
    assert read_all(paths) == [name.encode() for name in ODD_NAMES]
    assert read_all([]) == []
    remove_tree(root / "in")
    assert scan(root / "in") == [] and not (root / "in" / "good1.csv").exists()


def test_a_registry_under_a_prefix_with_glob_characters(s3_env, trained_models, tmp_path):
    """Publish, promote, roll back, read the history and clean a killed upload, all
    under ``team[1]*?/``: the registry's copies, reads and removals are literal too."""
    endpoint, fs = s3_env
    bucket = f"reg-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    settings = Settings(data_dir=f"s3://{bucket}/{PREFIXES[1]}", state_dir=str(tmp_path / "s"),
                        storage_options={"endpoint_url": endpoint})
    for file in sorted(trained_models.rglob("*")):
        if file.is_file():
            fs.call_s3("put_object", Bucket=bucket, Body=file.read_bytes(),
                       Key=f"{PREFIXES[1]}/models/{file.relative_to(trained_models)}")
    state = open_state(None, DataLayout.of(settings))
    registry = Registry(DataLayout.of(settings).models, state)
    first = registry.champion_version()
    local = Registry(trained_models).versions / first
    version = registry.new_version()
    folder = registry.stage(version)
    for file in local.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    assert registry.conclude_training(version, True, "test", first)[0]
    assert registry.champion_version() == version and registry.exists(version)
    published = registry.versions / version
    assert sorted(p.name for p in published.iterdir()) == sorted(p.name for p in local.iterdir())
    assert (published / MODEL_FILE).read_bytes() == (local / MODEL_FILE).read_bytes()
    registry.rollback("back")
    assert registry.champion_version() == first
    assert [e["event"] for e in registry.read_history()[-2:]] == ["promoted", "rollback"]
    # What a run killed mid-upload leaves: its uploads and a version without its model.
    for key in (f"{STAGING_FOLDER}/v-killed/{MODEL_FILE}", f"{VERSIONS_FOLDER}/v-killed/x.json"):
        fs.call_s3("put_object", Bucket=bucket, Key=f"{PREFIXES[1]}/models/{key}", Body=b"x")
    assert "v-killed" in registry.clean_staging()
    assert scan(registry.root / STAGING_FOLDER) == []
    assert not (registry.versions / "v-killed").exists()
    assert sorted(p.name for p in registry.versions.iterdir()) == sorted([first, version])
    state.close()

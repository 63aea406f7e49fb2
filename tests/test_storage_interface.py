"""One storage interface, two implementations: ``LocalPath`` on a disk and ``ObjectPath``
on S3 (moto) answer every operation of ``tasks.storage.location.Location`` alike, and
``as_location`` decides which, once."""

from __future__ import annotations

import hashlib
import pickle
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect import flow, task
from prefect.cache_policies import INPUTS
from prefect.utilities.hashing import hash_objects
from pydantic import TypeAdapter

from tasks.errors import DataRootMissingError
from tasks.layout import DataLayout
from tasks.storage.local import LocalPath, StagedParquet, move_file_keeping
from tasks.storage.location import Identity, Location, ObjectVersion, is_temporary
from tasks.storage.objects import ObjectPath, as_location

SCHEMA = pa.schema([("review_id", pa.string()), ("score", pa.float64())])


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> Location:
    """An empty folder of each kind: a local one, and a prefix in a new moto bucket."""
    if request.param == "local":
        return as_location(tmp_path / "root")
    endpoint, fs = request.getfixturevalue("s3_env")
    bucket = f"iface-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    return as_location(f"s3://{bucket}/root", {"endpoint_url": endpoint})


def table(rows: int) -> pa.Table:
    return pa.table({"review_id": [f"r{i}" for i in range(rows)],
                     "score": [i / 10 for i in range(rows)]}, schema=SCHEMA)


def read_parquet(path: Location) -> pa.Table:
    with path.open_binary() as stream:
        return pq.read_table(stream)


def test_the_factory_decides_once(tmp_path):
    local = as_location(str(tmp_path))
    assert type(local) is LocalPath and local == tmp_path
    assert type(as_location(f"file://{tmp_path}")) is LocalPath
    remote = as_location("s3://bucket/prefix", {"endpoint_url": "http://x"})
    assert type(remote) is ObjectPath and remote.storage_options == {"endpoint_url": "http://x"}
    assert as_location(local) is local and as_location(remote) is remote
    assert isinstance(local, Location) and isinstance(remote, Location)
    assert type(DataLayout(root=tmp_path).root) is LocalPath  # a plain Path given


def test_a_local_path_stays_one_through_path_operations(tmp_path):
    path = as_location(tmp_path) / "a" / "b.parquet"
    derived = [path.parent, path.with_name("c.csv"), path.with_suffix(".csv"),
               path.resolve(), path.expanduser(), path.temp_beside(),
               as_location(tmp_path).joinpath("x")]
    assert {type(p) for p in derived} == {LocalPath}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.parquet").write_bytes(b"x")
    assert {type(p) for p in as_location(tmp_path).rglob("*")} == {LocalPath}
    assert {type(e.path) for e in as_location(tmp_path).scan()} == {LocalPath}


def test_both_kinds_pickle_validate_and_hash_as_parameters(tmp_path):
    local = as_location(tmp_path) / "x.csv"
    remote = as_location("s3://bucket/prefix/x.csv", {"endpoint_url": "http://x"})
    for path in (local, remote):
        again = pickle.loads(pickle.dumps(path))
        assert again == path and type(again) is type(path)
    assert type(TypeAdapter(Path).validate_python(local)) is LocalPath
    assert hash_objects(local, raise_on_failure=True) != hash_objects(
        local.with_name("y.csv"), raise_on_failure=True)
    assert hash_objects(remote, raise_on_failure=True) != hash_objects(
        remote.with_name("y.csv"), raise_on_failure=True)


@task(cache_policy=INPUTS)
def _size_of(path: Location) -> int:
    return len(path.read_bytes())


@flow
def _sizes(paths: list[str]) -> list[int]:
    return [_size_of(as_location(p)) for p in paths]


def test_a_local_path_is_a_cached_prefect_task_parameter(tmp_path):
    for name, size in (("a.csv", 3), ("b.csv", 5)):
        (tmp_path / name).write_bytes(b"x" * size)
    assert _sizes([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == [3, 5]


def test_capabilities(root):
    local = type(root) is LocalPath
    assert root.supports_locks is local and root.supports_links is local
    assert root.supports_claims  # a rename locally, conditional copies on S3
    key = (root / "f.csv").claim_key()
    assert key == (str(root / "f.csv") if local else str(root / "f.csv").split("://")[1])


def test_atomic_writes_read_back(root):
    data = root / "d" / "a.json"
    data.parent.mkdir(parents=True, exist_ok=True)
    assert data.write_json_atomic({"b": 1}) == data
    assert data.read_text() == '{\n  "b": 1\n}\n'
    assert data.sha256() == hashlib.sha256(data.read_bytes()).hexdigest()
    part = (root / "d" / "p.parquet").write_parquet_atomic(table(3))
    assert read_parquet(part).equals(table(3))
    assert sorted(e.name for e in (root / "d").scan()) == ["a.json", "p.parquet"]
    assert not any(is_temporary(e.name) for e in (root / "d").scan())


def test_create_new_never_replaces(root):
    marker = root / "marker.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    assert marker.create_new(b"first") is True
    assert marker.create_new(b"second") is False
    assert marker.read_bytes() == b"first"
    assert [e.name for e in root.scan()] == ["marker.json"]


def test_identity_changes_when_the_file_does(root):
    path = root / "f.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"one")
    first = path.identity()
    assert isinstance(first, Identity if type(root) is LocalPath else ObjectVersion)
    assert path.identity() == first
    path.write_bytes(b"two, longer")
    assert path.identity() != first


def test_a_staged_part_is_published_whole_or_not_at_all(root):
    final = root / "parts" / "part-1.parquet"
    staged = StagedParquet(final, SCHEMA)
    staged.write(table(2))
    staged.write(table(3))
    temp = staged.finish()
    assert is_temporary(temp.name) and not final.exists()
    assert temp.publish(final) == final and not temp.exists()
    assert read_parquet(final).num_rows == 5
    aborted = StagedParquet(root / "parts" / "part-2.parquet", SCHEMA)
    aborted.write(table(1))
    aborted.abort()
    assert [e.name for e in (root / "parts").scan()] == ["part-1.parquet"]
    assert StagedParquet(root / "parts" / "part-3.parquet", SCHEMA).commit() is None


def test_moves_keep_every_file(root):
    for name, body in (("in/a.csv", b"1"), ("in/b.csv", b"2")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    first = move_file_keeping(root / "in" / "a.csv", root / "out", "same?.csv")
    second = (root / "in" / "b.csv").move_keeping(root / "out", "same*.csv")
    assert (first.name, second.name) == ("same_.csv", "same_~2.csv")
    assert (first.read_bytes(), second.read_bytes()) == (b"1", b"2")
    assert (root / "in").files_named(lambda name: True) == []


def test_listing_and_removing(root):
    for name in ("p/x=1/.part-a.0123abcd.tmp", "p/x=1/part-a.parquet", "p/x=2/b.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    assert sorted(p.name for p in (root / "p").subfolders()) == ["x=1", "x=2"]
    assert [p.name for p in (root / "p" / "x=1").files_named(is_temporary)] == [
        ".part-a.0123abcd.tmp"]
    assert (root / "missing").subfolders() == [] and (root / "missing").scan() == []
    assert (root / "p" / "x=1").remove_empty_folder() is False
    (root / "p" / "x=2" / "b.json").unlink()
    assert (root / "p" / "x=2").remove_empty_folder() is (type(root) is LocalPath)
    (root / "p").remove_tree()
    assert (root / "p").scan() == []


def test_files_starting_with_a_prefix_are_the_files_of_that_name(root):
    names = ("part-aaaa-v1.parquet", ".part-aaaa-v1.parquet.0123abcd.tmp", "part-bbbb.parquet",
             "xpart-aaaa.parquet", "part-aaaa-folder/part-aaaa-inner.parquet")
    for name in names:
        (root / "p" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "p" / name).write_bytes(b"x")
    found = (root / "p").files_starting_with(("part-aaaa", ".part-aaaa"))
    assert sorted(p.name for p in found) == [".part-aaaa-v1.parquet.0123abcd.tmp",
                                             "part-aaaa-v1.parquet"]  # no folder, nothing in it
    assert all(p.parent == root / "p" for p in found)
    assert (root / "p").files_starting_with(("part-cccc",)) == []
    assert (root / "missing").files_starting_with(("part-aaaa",)) == []


def test_a_local_file_for_readers_that_need_one(root):
    model = root / "versions" / "v1" / "model.keras"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"weights")
    local = model.local_file(f"iface-{uuid.uuid4().hex[:8]}", "model.keras")
    assert type(local) is LocalPath and local.read_bytes() == b"weights"
    assert (local == model) is (type(root) is LocalPath)


def test_a_missing_local_root_is_one_line(tmp_path):
    with pytest.raises(DataRootMissingError, match="reviewflow init"):
        as_location(tmp_path / "nowhere").check_reachable()
    as_location(tmp_path).check_reachable()

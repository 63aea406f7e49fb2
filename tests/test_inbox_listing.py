"""Listing an inbox from the listing's own answers (issue 37, item 13).

An s3 inbox of N objects is listed from its LIST pages alone, which hold every size and
time: no ``is_dir``, ``is_file`` or ``stat`` request per object. Here the requests moto's S3 server receives are counted while ``list_inbox`` sorts an inbox
of 1,500 review objects (two LIST pages) with the other kinds beside them: unsupported
objects, sub-prefixes, dot-names, leftover claims and their attempts counts. The same
inbox on a local disk sorts the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid

from tasks.layout import CLAIMS_FOLDER, part_name
from tasks.state.inbox import claimed_files, list_inbox
from tasks.state.leftovers import parts_in_partitions
from tasks.storage.objects import ObjectPath

OBJECTS = 1_500
# What a listing may cost beyond one request per 1,000 objects: the claims' listing,
# and the probes s3fs makes when ``.claimed/`` or the inbox is empty.
CONSTANT_REQUESTS = 6


def inbox_layout() -> dict[str, bytes]:
    """The inbox's keys (relative to incoming/) and their bytes: review files, one of
    each other kind a listing must tell apart."""
    files = {f"r{i:05d}.csv": f"review_id,text\n{i},fine\n".encode() for i in range(OBJECTS)}
    files.update({
        "notes.txt": b"not reviews",              # unsupported
        "README": b"no extension",                # unsupported
        "sub/inner.csv": b"review_id,text\n1,x\n",  # a sub-folder: left alone
        "sub/deeper/x.csv": b"review_id,text\n1,x\n",
        ".upload.csv.tmp": b"in progress",        # a dot-name: not looked at
        ".hidden/x.csv": b"review_id,text\n1,x\n",
        f"{CLAIMS_FOLDER}/0123456789ab/left.csv": b"review_id,text\n9,x\n",  # a leftover claim
        f"{CLAIMS_FOLDER}/0123456789ab/.attempts": b"2\n",  # its attempts count: no claim
        f"{CLAIMS_FOLDER}/ba9876543210/other.json": b'{"review_id": "8", "text": "x"}\n',
    })
    return files


def expected(incoming) -> tuple[list, list]:
    """The ready files (leftover claims first, then the inbox by name) and the unsupported."""
    claims = [incoming / CLAIMS_FOLDER / "0123456789ab" / "left.csv",
              incoming / CLAIMS_FOLDER / "ba9876543210" / "other.json"]
    ready = claims + [incoming / f"r{i:05d}.csv" for i in range(OBJECTS)]
    return ready, [incoming / "README", incoming / "notes.txt"]


@contextlib.contextmanager
def requests_received():
    """The request lines moto's S3 server logs (werkzeug logs each one before it answers)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("werkzeug"), Collect(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_an_s3_inbox_is_listed_with_one_request_per_thousand_objects(s3_env):
    endpoint, fs = s3_env
    bucket = f"listing-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    fs.pipe({f"{bucket}/data/incoming/{key}": data for key, data in inbox_layout().items()})
    incoming = ObjectPath(f"s3://{bucket}/data/incoming", {"endpoint_url": endpoint})
    ready, unsupported = expected(incoming)
    budget = OBJECTS // 1000 + CONSTANT_REQUESTS

    with requests_received() as requests:
        later = list_inbox(incoming, settle_seconds=60, now=time.time() + 3600)
    assert len(requests) <= budget, f"{len(requests)} requests: {requests[:20]}"
    assert not [line for line in requests if "HEAD /" in line]  # nothing asked per object
    assert later.ready == ready and later.unsupported == unsupported and later.settling == []

    with requests_received() as requests:  # uploaded just now: all wait for the next run
        now = list_inbox(incoming, settle_seconds=3600)
    assert len(requests) <= budget, f"{len(requests)} requests: {requests[:20]}"
    assert now.settling == ready and now.unsupported == unsupported and now.ready == []

    with requests_received() as requests:
        assert claimed_files(incoming) == ready[:2]
    assert len(requests) <= CONSTANT_REQUESTS


def test_an_empty_or_missing_s3_inbox_costs_a_constant(s3_env):
    endpoint, fs = s3_env
    bucket = f"listing-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    incoming = ObjectPath(f"s3://{bucket}/data/incoming", {"endpoint_url": endpoint})
    with requests_received() as requests:
        found = list_inbox(incoming, settle_seconds=0)
    assert found.ready == found.settling == found.unsupported == []
    assert len(requests) <= CONSTANT_REQUESTS


def test_a_commit_finds_its_parts_without_listing_the_other_files_parts(s3_env):
    """Each file's commit looks in every partition for parts of its content a killed run
    left (``parts_in_partitions``). A partition holds the parts of every file scored that
    day, so listing it whole at each commit would make a run's listings grow with the
    square of its files: the store filters each listing by the content's prefix."""
    endpoint, fs = s3_env
    bucket = f"parts-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    ours, others = "ab" * 32, [f"{i:016x}" + "0" * 48 for i in range(OBJECTS)]
    partition = f"{bucket}/data/scored/scored_date=2026-03-01"
    parts = {f"{partition}/{part_name(sha, 'v1')}": b"x" for sha in others}
    parts[f"{partition}/{part_name(ours, 'v1')}"] = b"x"
    parts[f"{partition}/.{part_name(ours, 'v0')}.0123abcd.tmp"] = b"x"
    parts[f"{bucket}/data/scored/scored_date=2026-03-02/{part_name(ours, 'v1', 0)}"] = b"x"
    fs.pipe(parts)
    scored = ObjectPath(f"s3://{bucket}/data/scored", {"endpoint_url": endpoint})

    with requests_received() as requests:
        found = parts_in_partitions(scored, ours)
    assert sorted(p.name for p in found) == sorted([
        part_name(ours, "v1"), f".{part_name(ours, 'v0')}.0123abcd.tmp",
        part_name(ours, "v1", 0)])
    listings = [line for line in requests if "scored_date" in line]
    # Two partitions, two prefixes each; each names the content, so only its parts come back.
    assert len(listings) == 4, requests
    assert all(f"part-{ours[:16]}" in line for line in listings), listings


def test_a_local_inbox_sorts_the_same_way(tmp_path):
    incoming = tmp_path / "incoming"
    for key, data in inbox_layout().items():
        (incoming / key).parent.mkdir(parents=True, exist_ok=True)
        (incoming / key).write_bytes(data)
    (incoming / "link.csv").symlink_to(incoming / "r00000.csv")  # a link: unsupported
    os.mkfifo(incoming / "pipe.csv")  # not a regular file: unsupported
    ready, unsupported = expected(incoming)
    unsupported = sorted([*unsupported, incoming / "link.csv", incoming / "pipe.csv"])
    later = list_inbox(incoming, settle_seconds=60, now=time.time() + 3600)
    assert later.ready == ready and later.unsupported == unsupported and later.settling == []
    now = list_inbox(incoming, settle_seconds=3600)
    assert now.settling == ready and now.unsupported == unsupported and now.ready == []
    assert list_inbox(tmp_path / "missing", settle_seconds=0).ready == []

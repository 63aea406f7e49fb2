"""Section 12, ``object_listing``: how long ``list_inbox`` takes on an s3 inbox of many
small objects, and how many requests it sends, on moto's S3 server on loopback.

Self-contained: it starts its own server (``moto.server.ThreadedMotoServer``, as the tests
do), uploads the inbox, lists it a few times and counts the requests the server logs
(werkzeug logs each request line before it answers). Needs no shared data.
``--quick``: 1,500 objects instead of 10,000 (still two pages of a listing).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import time

from benchmarks.common import Bench, log, md_table

TITLE = "12. Listing an s3 inbox: small objects on a local S3 server (moto)"
NEEDS_SHARED_DATA = False
FULL_OBJECTS = 10_000
QUICK_OBJECTS = 1_500  # still two pages of a listing
REPEATS = 3
UPLOAD_CHUNK = 1_000  # objects per concurrent upload batch
# moto takes any credentials; passed as options so the process environment is left alone.
CREDENTIALS = {"key": "testing", "secret": "testing"}


@contextlib.contextmanager
def counted_requests():
    """The request lines the werkzeug server logs while the block runs (a list that
    ``clear()`` resets), kept out of the terminal."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("werkzeug"), Collect(logging.INFO)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@contextlib.contextmanager
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def run(bench: Bench) -> dict:
    import moto
    import s3fs

    from tasks.state.inbox import list_inbox
    from tasks.storage.objects import ObjectPath

    objects = QUICK_OBJECTS if bench.quick else FULL_OBJECTS
    with counted_requests() as requests, moto_endpoint() as endpoint:
        options = {"endpoint_url": endpoint, **CREDENTIALS}
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
        fs.mkdir("bench-inbox")
        started = time.perf_counter()
        for first in range(0, objects, UPLOAD_CHUNK):
            fs.pipe({f"bench-inbox/data/incoming/r{i:06d}.csv": f"review_id,text\n{i},ok\n".encode()
                     for i in range(first, min(first + UPLOAD_CHUNK, objects))})
        log(f"object_listing: {objects:,} objects uploaded in {time.perf_counter() - started:.1f} s")
        incoming = ObjectPath("s3://bench-inbox/data/incoming", options)
        load = os.getloadavg()[0]
        seconds, counts = [], []
        for _ in range(REPEATS):
            requests.clear()
            started = time.perf_counter()
            inbox = list_inbox(incoming, settle_seconds=0)
            seconds.append(time.perf_counter() - started)
            counts.append(len(requests))
            if len(inbox.ready) != objects:
                raise RuntimeError(f"listed {len(inbox.ready)} ready files of {objects}")
            log(f"object_listing: listed {objects:,} objects in {seconds[-1]:.2f} s, "
                f"{counts[-1]} requests")
    return {"objects": objects, "repeats": REPEATS, "seconds": [round(s, 3) for s in seconds],
            "median_seconds": round(statistics.median(seconds), 3),
            "requests": counts, "listing_pages": math.ceil(objects / 1000),
            "moto": moto.__version__, "load_average_1m_before": round(load, 2)}


def render(data: dict) -> list[str]:
    median = data["median_seconds"]
    lines = [f"`list_inbox` on an `s3://` inbox of {data['objects']:,} one-row CSV objects on "
             f"moto {data['moto']}'s S3 server on loopback (`ThreadedMotoServer`, in the "
             "benchmark's process), no leftover claims; "
             f"{data['repeats']} listings, requests counted as the server logged them. A "
             "listing is one request per page of 1,000 objects plus a few for the leftover claims; "
             "the type, size and time of each object come from the listing itself. Real S3 "
             "adds its round trip to each request, not a request per object. \"Load "
             "before\" is the 1-minute load average as the listings started.", ""]
    lines += md_table(["objects", "listing pages", "requests (each listing)",
                       "seconds (median)", "objects/s", "load before"],
                      [[f"{data['objects']:,}", data["listing_pages"],
                        " / ".join(str(c) for c in data["requests"]), median,
                        f"{data['objects'] / median:,.0f}" if median else None,
                        data["load_average_1m_before"]]])
    return lines

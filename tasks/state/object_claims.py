"""Claiming an object of an object-storage inbox for one run, as a rename claims a file.

Object storage has no rename, so a run claims ``incoming/<name>`` (seen with ETag E)
in three steps, under the run state's claim lock for that key (``RunState.claim_lock``:
a PostgreSQL advisory lock with a state URL, a lock file otherwise; one claimer per
object at a time, released if the claimer dies):

1. a server-side copy to ``incoming/.claimed/<token>/<name>``, on condition that the
   source's ETag is still E (``CopySourceIfMatch``). A store that ignores the condition
   is caught after the copy: the copy's ETag, or failing that the source's, must still
   be E, else the copy is removed and the claim starts again on the new version;
2. a delete of ``incoming/<name>``, on condition that its ETag is still E (``If-Match``).

From then on the run reads, hashes and archives only its copy, which no one else
writes: the version it claimed. An upload over the inbox name at any moment is a new
object for a later run. If step 2 finds a new version there (412), the copy still holds
the old one, scored by this run; the new one stays in ``incoming/``. A run killed
between the steps leaves both: its copy is a leftover claim (``leftover_object_claims``)
and the original is claimed again; the ledger, keyed by content, scores that content
once. Stores other than S3 (no conditional copy and delete) keep the object as its own
claim: there an upload must never overwrite an inbox object (docs/scaling-out.md).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

from tasks.layout import CLAIMS_FOLDER
from tasks.storage.local import readable_name
from tasks.storage.location import ObjectVersion
from tasks.storage.objects import Entry, ObjectPath

# The largest object one CopyObject call may copy (S3's limit); larger ones are copied
# in parts and checked by the source's ETag after the copy.
SINGLE_COPY_BYTES = 5 * 1024**3
# New versions uploaded while a claim is made are followed this many times, then the
# object is left for the next run.
CLAIM_TRIES = 5


class ObjectChangedError(Exception):
    """The object was overwritten faster than it could be claimed: the next run claims it."""


def claim_object(path: ObjectPath, lock: Callable[[str], contextlib.AbstractContextManager]
                 ) -> tuple[ObjectPath, ObjectVersion]:
    """Claim ``path`` for this run: return its copy under ``.claimed/<token>/`` and the
    copy's version. FileNotFoundError: another run claimed it (or it was removed);
    ``LockHeldError``: another run is claiming it now; ``ObjectChangedError``: it kept
    changing. A leftover claim is returned as it is."""
    if path.parent.parent.name == CLAIMS_FOLDER:
        return path, ObjectVersion(path.etag())
    with lock(path.claim_key()):
        for _ in range(CLAIM_TRIES):
            etag, size = path.version()  # FileNotFoundError: claimed by another run, or removed
            claimed = path.parent / CLAIMS_FOLDER / uuid.uuid4().hex[:12] / readable_name(path.name)
            copied = copy_if_match(path, claimed, etag, size)
            if copied is None:
                continue  # overwritten between the look and the copy: claim the new one
            delete_if_match(path, etag)
            return claimed, ObjectVersion(copied)
    raise ObjectChangedError(f"{path} was overwritten {CLAIM_TRIES} times while this run "
                             "claimed it; the next run claims its last version")


def leftover_object_claims(incoming: ObjectPath) -> list[Entry]:
    """Objects under ``incoming/.claimed/<token>/``, sorted: claims of runs that died, or
    of live runs (their content lock tells them apart). Names starting with a dot (the
    attempts count) are not claims. One listing of everything under ``.claimed/``
    (one request per 1,000 objects), not one per token."""
    claims = incoming / CLAIMS_FOLDER
    return sorted((entry for entry in claims.scan_tree()
                   if len(entry.path.relative_to(claims).parts) == 2
                   and not entry.name.startswith(".")), key=lambda e: e.path.url)


def _split(path: ObjectPath) -> tuple[str, str]:
    bucket, _, key = path.url.split("://", 1)[1].partition("/")
    return bucket, key


def copy_if_match(source: ObjectPath, target: ObjectPath, etag: str, size: int) -> str | None:
    """Copy ``source`` at version ``etag`` (of ``size`` bytes) to ``target``; the copy's
    ETag, or None (and no copy left) if ``source`` is at another version now."""
    fs = source.fs
    bucket, key = _split(source)
    target_bucket, target_key = _split(target)
    if size > SINGLE_COPY_BYTES:
        fs.cp_file(source.url, target.url)  # in parts; ``copy`` would expand a glob
        copied = target.etag()
    else:
        try:
            result = fs.call_s3("copy_object", Bucket=target_bucket, Key=target_key,
                                CopySource={"Bucket": bucket, "Key": key},
                                CopySourceIfMatch=f'"{etag}"')
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise  # claimed by another run, or removed
            if _etag_now(source) != etag:
                return None  # 412: a new version since the look
            raise
        copied = str(result["CopyObjectResult"]["ETag"]).strip('"')
    # The copy's ETag equals the source's for a plain single-part object; where it
    # cannot (parts, some encryptions), the source still at ``etag`` vouches for it.
    if copied != etag and _etag_now(source) != etag:
        target.unlink(missing_ok=True)
        return None
    return copied


def delete_if_match(source: ObjectPath, etag: str) -> None:
    """Delete ``source`` if it is still at ``etag``; a newer version (or none) is left."""
    bucket, key = _split(source)
    try:
        source.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
    except FileNotFoundError:
        return  # removed by someone else meanwhile: the copy is still this run's
    except OSError:
        if _etag_now(source) == etag:
            raise  # not a failed condition: a real error
        return  # 412: a new version is there, for the next run
    finally:
        with contextlib.suppress(Exception):
            source.fs.invalidate_cache(source.parent.url)


def _etag_now(path: ObjectPath) -> str | None:
    try:
        return path.etag()
    except FileNotFoundError:
        return None

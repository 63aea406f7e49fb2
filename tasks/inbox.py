"""What is in the inbox, and where a file's results go."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tasks.readers import detect_format


@dataclass
class Inbox:
    ready: list[Path] = field(default_factory=list)
    settling: list[Path] = field(default_factory=list)    # modified too recently: next run
    unsupported: list[Path] = field(default_factory=list)  # not a review file or not regular


def list_inbox(incoming: Path, settle_seconds: float, now: float | None = None) -> Inbox:
    """Sort the inbox's entries by what the run does with them.

    Names starting with a dot are uploads in progress (write ``.name.tmp``, then rename)
    and are not looked at. A file modified less than ``settle_seconds`` ago may still be
    being written and waits for the next run. Symbolic links and files of
    unknown type are reported as unsupported; sub-folders are left alone; the caller quarantines them.

    ``incoming`` may be an ``ObjectPath``: objects are listed with their last-modified
    time (an upload is visible only once complete), and key prefixes count as sub-folders.
    """
    now = time.time() if now is None else now
    inbox = Inbox()
    if not incoming.exists():
        return inbox
    for entry in sorted(incoming.iterdir()):
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                continue
            if entry.is_symlink():
                inbox.unsupported.append(entry)
            elif not entry.is_file() or detect_format(entry) is None:
                entry.stat()  # raises if the entry is gone (see below) rather than odd
                inbox.unsupported.append(entry)
            elif now - entry.stat().st_mtime < settle_seconds:
                inbox.settling.append(entry)
            else:
                inbox.ready.append(entry)
        except FileNotFoundError:
            # Listed, then archived or quarantined by another run scoring the same inbox
            # (they run at once: README, "What happens when"). That run has it.
            continue
    return inbox


def part_name(sha256: str, model_version: str | None = None, shard: int | None = None) -> str:
    """Deterministic part name: a rerun of the same file and model overwrites, never adds.

    A file split into shards has one part per shard, ``-s0003`` after the version.
    """
    return (f"part-{sha256[:16]}" + (f"-{model_version}" if model_version else "")
            + (f"-s{shard:04d}" if shard is not None else "") + ".parquet")


def part_glob(sha256: str, model_version: str | None = None) -> str:
    """Matches every part ``part_name`` gives this content (and model), sharded or not."""
    return f"part-{sha256[:16]}" + (f"-{model_version}" if model_version else "") + "*.parquet"

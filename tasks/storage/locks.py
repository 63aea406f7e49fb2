"""Advisory file locks: held by a process until it exits, even when killed with SIGKILL."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class LockHeldError(Exception):
    """Another process holds the lock."""


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, wait: bool = False) -> Iterator[None]:
    """An advisory lock released when the holder exits, even when killed with SIGKILL."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise LockHeldError(f"{lock_file} is held by {holder}") from exc
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

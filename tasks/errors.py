"""The conditions a user is expected to meet, each with its exit code.

One home for them: the CLI catches ``ReviewflowError`` alone and prints its message
as one line, exiting with ``exit_code``; anything else is a bug and keeps its
traceback. The messages say what happened and what to do.

Exit codes: 0 done; 1 stopped by the environment (disk full, unwritable folder, the state
database down, unreachable or refusing the login, the object store unreachable or its
bucket missing: run again once fixed) or an unexpected failure; 2 nothing to work with or
a wrong request (no champion, no labeled data, no data root, a registry problem, a state
URL libpq cannot read, a data root scored with another run state); 3
another retraining holds the registry; 4 no usable Prefect API (the server PREFECT_API_URL
names does not answer, answers 401 to PREFECT_API_AUTH_STRING, or 503 from /ready because
its own database is down; or, with it unset, the temporary server this command starts did
not answer in time: flows/prefect_api.py).

``poison_reason`` says which unexpected errors a file's reading or scoring raised
quarantine that file instead of stopping the run: the queue planning a file
(``tasks.scoring.queue``) and the shards scoring it decide alike.
"""

from __future__ import annotations


class ReviewflowError(Exception):
    """An expected condition, reported as one line with its exit code."""

    exit_code = 2


class NoChampionError(ReviewflowError):
    """There is no champion model yet."""


class RegistryError(ReviewflowError):
    """A registry operation cannot be carried out; the message says why."""


class NoLabeledDataError(ReviewflowError):
    """There are no usable labeled reviews."""


class DataRootMissingError(ReviewflowError):
    """The data root does not exist (a mistyped --data-dir); nothing was created."""


class GPURequiredError(ReviewflowError):
    """The run was told to require a GPU and TensorFlow sees none."""


class RetrainingBusyError(ReviewflowError):
    """Another retraining holds the registry lock."""

    exit_code = 3


class TemporaryAPIError(ReviewflowError, RuntimeError):
    """The temporary Prefect API server did not start; the message says what to do."""

    exit_code = 4



class APIUnreachableError(ReviewflowError, RuntimeError):
    """Nothing answers at PREFECT_API_URL; the message says what to do."""

    exit_code = 4


class LinkedFolderError(ReviewflowError):
    """A folder of the data contract is a symbolic link, or leads out of the data root."""


class StateMismatchError(ReviewflowError):
    """The data root is scored with another run state (its marker names another state
    folder or database) than the one this command was given."""


class StateURLError(ReviewflowError):
    """The state URL is not a connection string libpq can read; the message says why
    without repeating it (it may hold a password)."""


class SettingsError(ReviewflowError):
    """A setting has a value it cannot take; the message names it and why (never the
    value: it may be a password)."""


class NothingToMigrateError(ReviewflowError):
    """``reviewflow state migrate`` found no SQLite ledger to copy from."""


class PartVanishedError(ReviewflowError):
    """A run's temporary part was removed under it by another run."""

    exit_code = 1


class StateUnavailableError(ReviewflowError):
    """The state database cannot be reached or used; the message names it (never its
    password) and says what to do. Exit 1: the environment stopped the run."""

    exit_code = 1


class ScoringStopped(ReviewflowError):
    """A shard stopped because its run is stopping (interrupted, or failed elsewhere):
    ``tasks.scoring.control.ShardControl``. Nothing of the shard's unfinished checkpoint
    is kept; the run's own stop is what the user sees."""

    exit_code = 130


class StorageUnavailableError(ReviewflowError):
    """The object store of an ``s3://`` (or other URL) data root cannot be reached; the
    message names it and says what to check. Exit 1: the environment stopped the run."""

    exit_code = 1


def poison_reason(exc: BaseException) -> str | None:
    """Why to quarantine a file whose reading, validation or scoring raised ``exc`` (a
    ``MemoryError`` on a huge JSON line, a bug a strange file brings out), so that one
    file cannot stop every run; None for what must stop the run instead: the
    environment (``OSError``: a full disk, an unwritable folder), an expected condition
    (``ReviewflowError``), an interrupt."""
    if not isinstance(exc, Exception) or isinstance(exc, OSError | ReviewflowError):
        return None
    detail = str(exc).splitlines()[0][:300] if str(exc).strip() else ""
    return (f"reading or scoring it raised {type(exc).__name__}"
            + (f" ({detail})" if detail else "") + "; every other file was scored")

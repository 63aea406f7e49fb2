"""``reviewflow state migrate``: a data root moved from a state folder's SQLite ledger to
a state database.

The steps: check that the root's marker names the source folder, the target database
or nothing (``tasks.state.marker``); copy every ledger row into the database in one
transaction (rows already there are kept: a second copy adds nothing); then, last,
move the marker to the database, so that runs with the database's URL are let in and
runs with the old folder are refused from then on. Killed at any point, a rerun
finishes the job: the copy finds what it had copied, and the marker still names the
folder until the very end.
"""

from __future__ import annotations

from pathlib import Path

from tasks.errors import NothingToMigrateError, StateMismatchError
from tasks.failpoints import failpoint
from tasks.layout import DataLayout
from tasks.state.marker import StateName, folder_state_id, move_marker, read_marker

# What to name when there is no source: said by every refusal that lacks one.
SOURCE_HELP = ("name the state folder this root was scored with until now: "
               "--from-state-dir DIR (that host's REVIEWFLOW_STATE_DIR; a local root's own "
               "is <root>/state)")


def default_source(layout: DataLayout) -> Path:
    """The state folder a root was scored with, when ``--from-state-dir`` is not given:
    ``REVIEWFLOW_STATE_DIR`` (``layout.state_root``), else a local root's own ``state/``."""
    if layout.state_root is not None:
        return layout.state_root
    if layout.root.supports_locks:  # a folder that can hold a ledger and lock files
        return layout.root / "state"
    raise NothingToMigrateError(f"{layout.root} is not a local folder, so it has no state "
                                f"folder of its own: {SOURCE_HELP}")


def migrate_to_database(layout: DataLayout, source: Path, url: str) -> dict:
    """Copy the ledger of the state folder ``source`` into the state database at ``url``
    and name that database in ``layout``'s root marker. Returns the rows copied and
    those already present per table (``PostgresState.copy_ledger``), and ``target``,
    where the database is (no password)."""
    from tasks.state.postgres import PostgresState

    ledger = DataLayout(root=layout.root, state_root=source).ledger
    if not ledger.is_file():
        raise NothingToMigrateError(f"no SQLite ledger at {ledger}, nothing to migrate: "
                                    f"{SOURCE_HELP}")
    ours = StateName(folder_state_id(source), str(source))
    target = PostgresState(url)
    try:
        theirs, to = read_marker(layout), target.identity()
        if theirs is not None and theirs.state_id not in (ours.state_id, to.state_id):
            raise StateMismatchError(
                f"{layout.root} is scored with the run state {theirs.where} (id "
                f"{theirs.state_id}), not with {source} (id {ours.state_id}): nothing was "
                "copied; migrate from the root's state folder (--from-state-dir), or, if "
                f"it is retired, delete {layout.state_marker} and run again")
        counts = target.copy_ledger(ledger)
        failpoint("migrate:copied")
        move_marker(layout, to)
    finally:
        target.close()
    return counts | {"target": to.where}

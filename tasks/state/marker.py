"""Which run state scores a data root: the state marker ``<root>/.reviewflow-state.json``.

The ledger and the locks live in the run state (a state folder's SQLite ledger and lock
files, or a PostgreSQL database), so two commands on one root with two states do not
see each other's records or locks: each sweeps the other's temporary parts, both may
score one file, and two rollbacks each take their own pointer lock and both go back
from the same champion. So a root has one state. The first command that opens a run
state for a root names that state in the marker (created exclusively: of two first
commands, one wins); every opening after it (``tasks.state.backend.open_state``, the
one way a command opens the run state of a root) compares its state with the marker
and refuses another in one line (``StateMismatchError``, exit 2) naming both.
``reviewflow state migrate`` moves the marker to the database it copied the ledger to,
as its last step (``move_marker``).

A state is named by its id: a state folder's ``state-id`` file (``STATE_ID_FILE``, made
on first use), or a state database's ``state_identity`` row (``pg-`` and its id).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.errors import StateMismatchError
from tasks.layout import STATE_ID_FILE, DataLayout


@dataclass(frozen=True)
class StateName:
    """A run state as the marker names it: its id, and where it is (no password)."""

    state_id: str
    where: str


def folder_state_id(folder: Path) -> str:
    """The id of the state folder ``folder`` (``STATE_ID_FILE``), made on first use."""
    path = folder / STATE_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        temp.write_text(uuid.uuid4().hex + "\n")
        try:
            os.link(temp, path)  # two first runs at once: one id wins
        except FileExistsError:
            pass
        finally:
            temp.unlink()
        return path.read_text().strip()


def read_marker(layout: DataLayout) -> StateName | None:
    """The state the marker names, or None when there is no marker."""
    marker = layout.state_marker
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return None
    try:
        theirs = json.loads(text)
        return StateName(str(theirs["state_id"]),
                         f"{theirs.get('state_dir')} on {theirs.get('host')}")
    except (ValueError, KeyError, TypeError):
        raise StateMismatchError(
            f"{marker} is unreadable; it names the run state (state folder or database) "
            "that scores this data root: delete it and run again") from None


def claim_root(layout: DataLayout, ours: StateName) -> None:
    """Name ``ours`` in the root's marker if there is none yet, else check that the
    marker names it; ``StateMismatchError`` (one line, exit 2) if it names another."""
    theirs = read_marker(layout)
    if theirs is None:
        # Only if no marker is there: another command may create it first.
        layout.state_marker.create_new(_marker_text(ours).encode("utf-8"))
        theirs = read_marker(layout)  # ours, or the one that won the race to create it
    if theirs is not None and theirs.state_id != ours.state_id:
        raise StateMismatchError(
            f"{layout.root} is scored with the run state {theirs.where} (id "
            f"{theirs.state_id}), this command's is {ours.where} (id {ours.state_id}): two "
            "states on one root do not see each other's locks or records; set "
            "REVIEWFLOW_STATE_URL or REVIEWFLOW_STATE_DIR to the root's state (`reviewflow "
            "state migrate` moves a root from its state folder to a database), or, if the "
            f"root's state is retired, delete {layout.state_marker} and run again")


def move_marker(layout: DataLayout, to: StateName) -> None:
    """Name ``to`` in the root's marker, whatever it named (one atomic write)."""
    # The old marker or the new, never half: one PUT, or a temporary renamed.
    layout.state_marker.write_bytes_atomic(_marker_text(to).encode("utf-8"))


def _marker_text(state: StateName) -> str:
    return json.dumps({"state_id": state.state_id, "state_dir": state.where,
                       "host": socket.gethostname(),
                       "written_at": datetime.now(UTC).isoformat(timespec="seconds")},
                      indent=2) + "\n"

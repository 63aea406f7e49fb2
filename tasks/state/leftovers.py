"""Temporaries that killed runs left where no later step would remove them, and their removal.

A run killed between writing a temporary and renaming (publishing) it leaves the
temporary behind. Each kind is removed only once its writer is known to be dead, each
by the lock its writer held:

- one-shot temporaries (a monitoring row, a reason file, ``champion.json``, a copy into
  ``archive/`` or ``quarantine/files/`` from another file system): written and renamed
  in one call while the writer holds a shared lock on the folder; removed when a sweep
  can take that folder's lock exclusively (``remove_dead_temporaries``). Local only: on
  object storage these are one PUT under their final name and leave nothing.
- staged parts of a content (``scored/``, ``quarantine/rows/``): written by shards and
  published at the commit while the run holds the content's lock; removed when that
  lock is free, unless the run state records one as a checkpoint a stopped run kept for
  the next (``tasks.state.checkpoints``): those are the next run's to reuse or forget. The commit of a content sweeps its own (``replace_stale_parts``); this
  finds those of a content no run commits again: a file quarantined after it killed
  runs, a claimed file whose bytes changed after the kill, a claim removed by hand.
  Local and object storage.
- rejected rows of labeled and unlabeled files (``quarantine/training/``,
  ``quarantine/unlabeled/``): written only by a retraining, which holds the retraining
  lock; the next retraining, holding it too, removes what is there.

Plain functions: the flows call them at the start of a run and log what they removed.
"""

from __future__ import annotations

from tasks.layout import DataLayout, content_key, part_content, part_prefixes
from tasks.state.backend import RunState
from tasks.storage.local import Location, LockHeldError, is_temporary
from tasks.storage.objects import as_location


def one_shot_folders(layout: DataLayout) -> list[Location]:
    """Where one-shot writes put their temporaries: each dated folder of ``monitoring/``,
    ``quarantine/files/`` and ``archive/``, and ``models/`` (its pointer)."""
    dated = [folder for parent in (layout.monitoring, layout.quarantine / "files",
                                   layout.archive) for folder in _subfolders(parent)]
    return [*dated, layout.models]


def sweep_scoring_leftovers(layout: DataLayout, state: RunState) -> list[Location]:
    """Remove the temporaries of dead writers that a scoring run can prove dead: the
    one-shot ones (their folder's lock) and the staged parts of contents whose lock is
    free. Returns what was removed."""
    removed: list[Location] = []
    if layout.root.supports_locks:  # a dead writer is told by its folder's lock
        for folder in one_shot_folders(layout):
            removed += folder.remove_dead_temporaries()
    staged: dict[str, list[Location]] = {}
    for folder in (layout.scored, layout.rejected_rows):
        for partition in _subfolders(folder):
            for temporary in _temporaries(partition):
                if key := part_content(temporary.name):
                    staged.setdefault(key, []).append(temporary)
    for key, temporaries in staged.items():
        try:
            # content_lock is named by the content key alone (RunState.content_lock).
            with state.content_lock(key):
                # Read under the lock: only a holder of it records or forgets checkpoints.
                kept = _checkpoint_names(state, key)
                for temporary in temporaries:
                    if temporary.name in kept:
                        continue
                    temporary.unlink(missing_ok=True)
                    removed.append(temporary)
        except LockHeldError:
            continue  # a live run works on that content: its temporaries are its own
    return removed


def _checkpoint_names(state: RunState, key: str) -> set[str]:
    """The file names of the checkpoint parts the run state keeps of content ``key``."""
    return {part.rstrip("/").rpartition("/")[2]
            for record in state.shard_records() if content_key(record.source_sha256) == key
            for part in (record.scored_part, record.quarantine_part) if part}


def sweep_training_leftovers(layout: DataLayout) -> list[Location]:
    """Remove every temporary in the folders only a retraining writes (its rejected
    rows), the caller holding the retraining lock, so no writer of them is alive; and
    the one-shot temporaries of dead writers, as a scoring run does."""
    removed: list[Location] = []
    if layout.root.supports_locks:  # a dead writer is told by its folder's lock
        for folder in one_shot_folders(layout):
            removed += folder.remove_dead_temporaries()
    for folder in (layout.training_rejects, layout.unlabeled_rejects):
        for temporary in _temporaries(folder):
            temporary.unlink(missing_ok=True)
            removed.append(temporary)
    return removed


def parts_in_partitions(folder: Location, sha256: str) -> list[Location]:
    """Every file in a partition of ``folder`` named for this content (a part of any
    model or shard, or a temporary of one; narrow with ``tasks.layout.part_version``).
    Listed by prefix (``Location.files_starting_with``): on object storage only this
    content's names come back, however many other files a partition holds."""
    return [path for partition in _subfolders(folder)
            for path in partition.files_starting_with(part_prefixes(sha256))]


def _subfolders(folder: Location) -> list[Location]:
    """The folders in ``folder`` (links not followed); none if it is missing. Locally
    from the listing's file types alone, with no ``stat`` per entry."""
    return as_location(folder).subfolders()


def _temporaries(folder: Location) -> list[Location]:
    """The files in ``folder`` named like temporaries (``is_temporary``): the names are
    matched first, so a folder of many parts costs its listing and nothing more."""
    return as_location(folder).files_named(is_temporary)

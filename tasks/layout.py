"""The data-folder contract: every folder, partition and file name under the data root.

This module plays the part of Kedro's data catalog: "where does X land on disk?" is
answered here and nowhere else (docs/data-contract.md). Everything else asks
``DataLayout`` or the functions below for a path or a name; nothing else spells one.

    <root>/
      incoming/                        new review files (the inbox)
        .claimed/<token>/<name>        a file a run has claimed (tasks.state.inbox.claim)
        .claimed/<token>/.attempts     runs that began work on it (tasks.state.inbox.runs_died)
      labeled/                         labeled review files for retraining
      unlabeled/                       review files without labels that retraining may
                                       learn from (self-training); never scored
      scored/scored_date=<day>/        scored rows, one part per file, model and shard
      quarantine/
        rows/quarantined_date=<day>/   rejected rows of scored files
        files/<day>/                   whole files that cannot be read, each beside
                                       <name>.reason.json
        training/                      rejected rows of labeled files
        unlabeled/                     rejected rows of unlabeled files
      monitoring/run_date=<day>/       drift signals, one row per scored file
      production_accuracy/             accuracy of each model version on late labels
        model_version=<version>/       one row per week and main script of the reviews
      models/                          the registry (tasks.training.registry)
        champion.json  history.jsonl  .retrain.lock
        history/<utc time>-<hex>.json  one history event each, on object storage
        versions/<version>/            model.keras, metrics.json, curves.png,
                                       reliability.png, card.md, decision.json,
                                       profile.json
        .staging/<version>/            a version being written
      archive/<day>/<sha16>-<name>     inputs once committed
      state/                           local even when the root is a URL
        ledger.sqlite                  which content was scored by which model
        locks/<sha16>.lock             held while a run works on that content
        state-id                       names this state folder (see STATE_MARKER_FILE)
      .reviewflow-state.json           which run state (state folder or database)
                                       scores this root (tasks.state.marker)

No product folder may be a symbolic link, nor lead out of the root another way: an
uploader who can write only to ``incoming/`` could otherwise make the run move files
from anywhere into the root (``DataLayout.check_contained``).

Every name here is part of what a user's data root already holds: changing one breaks
the ledger's recorded paths, the archive and the readers of ``scored/``.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from tasks.errors import LinkedFolderError
from tasks.settings import Settings
from tasks.storage.location import Location
from tasks.storage.objects import as_location

# Files a run has claimed live in ``incoming/.claimed/<token>/<name>``: a dot-name, so
# no reader of incoming/ mistakes them for new uploads.
CLAIMS_FOLDER = ".claimed"
# Beside a claimed file: how many runs began work on it (tasks.state.inbox.runs_died).
CLAIM_ATTEMPTS_FILE = ".attempts"

# The registry (tasks.training.registry): its pointer, history and per-version files.
CHAMPION_FILE = "champion.json"
HISTORY_FILE = "history.jsonl"
# On object storage, which cannot append: one object per history event.
HISTORY_EVENTS_FOLDER = "history"
RETRAIN_LOCK_FILE = ".retrain.lock"
# Held while the champion pointer or the history changes (tasks.training.registry).
POINTER_LOCK_FILE = ".champion.lock"
VERSIONS_FOLDER = "versions"
STAGING_FOLDER = ".staging"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
DECISION_FILE = "decision.json"
CURVES_FILE = "curves.png"
# The reliability diagram of the version's scores on the gate rows, and its model card:
# one page on its data, split, slices, calibration, curves and decision, which links both
# PNGs (tasks.training.card).
RELIABILITY_FILE = "reliability.png"
CARD_FILE = "card.md"
# The reference profile of a version's training data (tasks.monitoring); absent for
# versions trained before profiles existed.
PROFILE_FILE = "profile.json"

# Which run state (ledger and locks: a state folder or a database) scores a root: two
# commands with different states would not see each other's locks (tasks.state.marker).
STATE_MARKER_FILE = ".reviewflow-state.json"
STATE_ID_FILE = "state-id"

# The monitoring parts, found by name so the trends PNG beside them is never read.
MONITORING_PARTS_GLOB = "run_date=*/*.parquet"
TRENDS_FILE = "_trends.png"
# Committed parts of scored/ (temporaries are dot-names that end in .tmp).
SCORED_PARTS_GLOB = "scored_date=*/part-*.parquet"
# The production accuracy's parts: one per model version (tasks.late_labels).
ACCURACY_PARTS_GLOB = "model_version=*/*.parquet"


def day_of(moment: datetime) -> str:
    """The ``<day>`` of every date partition and dated folder: ``2024-05-01``."""
    return moment.strftime("%Y-%m-%d")


def content_key(sha256: str) -> str:
    """The short content hash that names locks, parts and archived files (16 hex digits)."""
    return sha256[:16]


def kept_name(sha256: str, name: str) -> str:
    """An archived or quarantined input's name: ``<sha16>-<name>``, so two uploads that
    share a name but not their bytes never collide."""
    return f"{content_key(sha256)}-{name}"


def reason_file(quarantined: Location) -> Location:
    """The JSON reason file beside a whole quarantined file."""
    return quarantined.with_name(quarantined.name + ".reason.json")


def part_name(sha256: str, model_version: str | None = None, shard: int | None = None) -> str:
    """Deterministic part name: a rerun of the same file and model overwrites, never adds.

    A file split into shards has one part per shard, ``-s0003`` after the version.
    """
    return (f"part-{content_key(sha256)}" + (f"-{model_version}" if model_version else "")
            + (f"-s{shard:04d}" if shard is not None else "") + ".parquet")


def part_prefixes(sha256: str) -> tuple[str, str]:
    """The name prefixes of every part of this content (any model, any shard) and of
    their temporaries: a listing filtered by them finds all a sweep must look at; narrow
    with ``is_part_of``, since a prefix cannot tell version ``V``'s
    ``part-…-V-s0001.parquet`` from version ``V-b``'s ``part-…-V-b.parquet``."""
    return f"part-{content_key(sha256)}", f".part-{content_key(sha256)}"


def is_part_of(name: str, sha256: str, model_version: str | None = None) -> bool:
    """True if ``name`` is exactly a part ``part_name`` gives this content and model (any
    shard), or a temporary of one (``.<part>.<8 hex>.tmp``, see tasks.storage.local)."""
    stem = re.escape(f"part-{content_key(sha256)}"
                     + (f"-{model_version}" if model_version else ""))
    part = rf"{stem}(?:-s\d{{4}})?\.parquet"
    return re.fullmatch(rf"{part}|\.{part}\.[0-9a-f]{{8}}\.tmp", name) is not None


def is_any_part_of(name: str, sha256: str) -> bool:
    """True if ``name`` is a part of this content by any model (any shard), or a
    temporary of one: what a killed run may have left that a sweep must look at."""
    part = rf"{re.escape(f'part-{content_key(sha256)}')}(?:-.+)?\.parquet"
    return re.fullmatch(rf"{part}|\.{part}\.[0-9a-f]{{8}}\.tmp", name) is not None


def part_content(name: str) -> str | None:
    """The content key (``content_key``) a part or its temporary is named for, or None
    for any other name: what says whose lock guards a temporary found in a sweep."""
    found = re.fullmatch(r"\.?part-([0-9a-f]{16})(?:-.+)?\.parquet(?:\.[0-9a-f]{8}\.tmp)?", name)
    return found.group(1) if found else None


def part_version(name: str, sha256: str) -> str | None:
    """The model version in the name of a part of this content (or of its temporary);
    None for a part named for the content alone (rejected rows) or another name."""
    found = re.fullmatch(rf"\.?part-{re.escape(content_key(sha256))}-(.+?)(?:-s\d{{4}})?"
                         rf"\.parquet(?:\.[0-9a-f]{{8}}\.tmp)?", name)
    return found.group(1) if found else None


class DataLayout(BaseModel):
    """The folders under the data root.

    ``root`` is a ``Location``: a ``LocalPath`` or, for object storage, an ``ObjectPath``
    (``s3://bucket/prefix``); a plain ``Path`` given is made a ``LocalPath``. ``state`` (the ledger and the locks) is always local:
    ``state_root`` when given, else ``<root>/state``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    root: Location
    state_root: Path | None = None
    # The ledger and the locks are in a database (a state URL): no state folder is needed.
    state_in_database: bool = False

    @field_validator("root", mode="before")
    @classmethod
    def _located(cls, root) -> Location:
        return as_location(root)

    @classmethod
    def of(cls, settings: Settings) -> DataLayout:
        """The folders of the data root ``settings`` name: ``data_dir`` with its storage
        options, ``state_dir``, and whether the run state is a database (``state_url``)."""
        root = as_location(settings.data_dir, settings.storage_options)
        return cls(root=root.resolve(),
                   state_root=settings.state_dir.resolve() if settings.state_dir else None,
                   state_in_database=bool(settings.state_url))

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def labeled(self) -> Path:
        return self.root / "labeled"

    @property
    def unlabeled(self) -> Path:
        """Review files without labels for self-training (docs/retraining.md)."""
        return self.root / "unlabeled"

    @property
    def scored(self) -> Path:
        return self.root / "scored"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def state(self) -> Path:
        if self.state_root is not None:
            return self.state_root
        if not self.root.supports_locks:  # no lock files nor SQLite in a bucket
            raise ValueError(f"the data root {self.root} is a URL: give a local state folder "
                             "for the ledger and the locks (REVIEWFLOW_STATE_DIR)")
        return self.root / "state"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def monitoring(self) -> Path:
        """Drift signals, one row per scored file per run (docs/monitoring.md)."""
        return self.root / "monitoring"

    @property
    def production_accuracy(self) -> Path:
        """Each model version's accuracy on labels that arrived after it scored the
        reviews (docs/monitoring.md): a dataset of its own, beside ``monitoring/``, so
        that ``monitoring/**/*.parquet`` still reads the drift rows alone."""
        return self.root / "production_accuracy"

    # --- partitions and dated folders: ``day`` is ``day_of(run start)``
    def scored_partition(self, day: str) -> Path:
        return self.scored / f"scored_date={day}"

    @property
    def rejected_rows(self) -> Path:
        """Rejected rows of scored files, in ``quarantined_date=`` partitions."""
        return self.quarantine / "rows"

    def rejected_partition(self, day: str) -> Path:
        return self.rejected_rows / f"quarantined_date={day}"

    def quarantined_files(self, day: str) -> Path:
        """Whole files that could not be read, each beside its reason file."""
        return self.quarantine / "files" / day

    @property
    def training_rejects(self) -> Path:
        """Rejected rows of labeled files (the retraining flow's quarantine)."""
        return self.quarantine / "training"

    @property
    def unlabeled_rejects(self) -> Path:
        """Rejected rows of unlabeled files (read by the retraining flow)."""
        return self.quarantine / "unlabeled"

    def monitoring_partition(self, day: str) -> Path:
        return self.monitoring / f"run_date={day}"

    def accuracy_partition(self, version: str) -> Path:
        return self.production_accuracy / f"model_version={version}"

    def archive_folder(self, day: str) -> Path:
        return self.archive / day

    # --- state: always local
    @property
    def ledger(self) -> Path:
        return self.state / "ledger.sqlite"

    def lock_file(self, sha256: str) -> Path:
        """The lock a run holds while it works on this content."""
        return self.state / "locks" / f"{content_key(sha256)}.lock"

    @property
    def state_marker(self) -> Location:
        return self.root / STATE_MARKER_FILE

    def data_folders(self) -> list[Path]:
        """The folders directly under the root whose contents runs and users put there
        (the state folder apart: it may live elsewhere). ``make clean-data`` empties
        these, and git ignores their contents; tests/test_layout.py holds the Makefile
        and .gitignore to this list."""
        return [self.incoming, self.labeled, self.unlabeled, self.scored, self.quarantine,
                self.models, self.archive, self.monitoring, self.production_accuracy]

    def ensure(self) -> DataLayout:
        """Create every folder of the contract that does not exist yet; refuse a root
        whose folders are links (``check_contained``)."""
        self.check_contained()
        state = [] if self.state_in_database and self.state_root is None else [self.state]
        for folder in (*self.data_folders(), *state):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def product_folders(self) -> list[Path]:
        """Every folder a run reads or writes, the dated ones apart (``partitioned_folders``
        holds them)."""
        return [self.incoming, self.incoming / CLAIMS_FOLDER, self.labeled, self.unlabeled,
                self.scored, self.rejected_rows, self.quarantine / "files",
                self.training_rejects, self.unlabeled_rejects, self.models,
                self.models / VERSIONS_FOLDER, self.models / STAGING_FOLDER, self.archive,
                self.monitoring, self.production_accuracy, self.state, self.state / "locks"]

    def check_contained(self) -> None:
        """Raise ``LinkedFolderError`` if a product folder (``product_folders``) is a
        symbolic link, or has one on its way down from the root (or the state folder),
        or if any entry of a partitioned folder is one. Folders not there yet are fine:
        the run creates them as real folders."""
        if not self.root.supports_links:  # a bucket: nothing there can be a link
            if self.state_root is not None:
                check_inside(self.state_root, self.state_root / "locks")
            return
        for folder in self.product_folders():
            outside = self.state_root is not None and folder.is_relative_to(self.state_root)
            base = self.state_root if outside else self.root
            check_inside(base, folder)
        # Every partition already there, of any day: a run that crosses midnight writes
        # into the next day's folders, and readers (rescore, accuracy, DuckDB over
        # scored/**) go through all of them.
        for parent in self.partitioned_folders():
            if not parent.is_dir():
                continue
            with os.scandir(parent) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        check_inside(self.root, Path(entry.path))

    def partitioned_folders(self) -> list[Path]:
        """The folders whose every entry is a partition (one per day, or per model
        version): each entry is a folder the run makes, never a link."""
        return [self.scored_partition("x").parent, self.rejected_partition("x").parent,
                self.quarantined_files("x").parent, self.monitoring_partition("x").parent,
                self.archive_folder("x").parent, self.accuracy_partition("x").parent]


def check_inside(base: Path, path: Path) -> None:
    """Raise ``LinkedFolderError`` if ``path`` (under ``base``) or any folder between the
    two is a symbolic link, or if ``path`` is not under ``base`` at all. Looks at each
    level with lstat, so no link is followed to decide."""
    if not as_location(path).supports_links:
        return
    try:
        parts = path.relative_to(base).parts
    except ValueError:
        raise LinkedFolderError(f"{path} is outside the data root {base}: refusing to "
                                "read or write there") from None
    current = base
    for part in parts:
        current = current / part
        if part == "..":
            raise LinkedFolderError(f"{path} leads out of the data root {base} ('..')")
        if current.is_symlink():
            raise LinkedFolderError(
                f"{current} is a symbolic link (to {os.readlink(current)}): a folder of the "
                "data root must be a real folder, or a run could move files from anywhere "
                f"into it; replace the link with a folder (for example: rm {current} && "
                f"mkdir {current}) and run again")

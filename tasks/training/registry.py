"""The model registry under ``models/``.

    models/
      champion.json          the pointer: which version scores, since when, why, and
                             the champions before it (for rollback); replaced atomically
      history.jsonl          every decision and pointer change, one JSON object a line
                             (on object storage: history/, one object per event)
      versions/<version>/    model.keras, metrics.json, curves.png, decision.json,
                             profile.json (reference profile for drift signals)
      .staging/<version>/    a version being written; renamed into versions/ when whole

A crash at any moment leaves ``champion.json`` naming a complete version: versions are
renamed into place whole, and the pointer is replaced only after that.

Every change of the pointer (a retraining's promotion, ``models promote``, ``models
rollback``) and every history line is made under one short lock, ``models/.champion.lock``
(held for the read, check and replace, well under a second; not the retraining lock,
which a retraining holds for its whole run), so two changes never interleave: each reads
the pointer it replaces. A retraining compared its candidate against the champion of the
moment; ``conclude_training`` promotes it only if that is still the champion
(compare-and-swap), else records why not.

``root`` may be an ``ObjectPath`` (``s3://bucket/prefix/models``): retraining, promotion
and rollback work there as on a folder, with the same guarantees, by other means (no
renames, appends or lock files there: ``tasks.training.registry_files``). Changing it
takes the run state's pointer lock (``Registry(root, state)``): with a state URL, one
lock for every host.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tasks.errors import NoChampionError, RegistryError  # noqa: F401 - raised here, and imported from here
from tasks.failpoints import failpoint
from tasks.layout import (
    CHAMPION_FILE,
    DECISION_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    POINTER_LOCK_FILE,
    PROFILE_FILE,
    RETRAIN_LOCK_FILE,
    VERSIONS_FOLDER,
)
from tasks.storage.local import write_json_atomic
from tasks.storage.objects import ObjectPath, as_location
from tasks.training.card import write_card, write_record
from tasks.training.events import CHAMPION_EVENTS, HistoryEvent, VersionStatus
from tasks.training.registry_files import (
    VERSION_NAME,
    LocalFiles,
    ObjectFiles,
    checked_version,
    registry_files,
    waiting_for,
)


@dataclass(frozen=True)
class Registry:
    root: Path | ObjectPath
    # The run state (tasks.state.backend.RunState) whose pointer lock guards a registry on
    # object storage; a local registry locks its own folder and needs none.
    state: object | None = field(default=None, compare=False, repr=False)

    @property
    def files(self) -> LocalFiles | ObjectFiles:
        return registry_files(self.root, self.state)

    def _writable(self) -> None:
        self.files.check_writable()

    @property
    def versions(self) -> Path:
        return self.root / VERSIONS_FOLDER

    @property
    def staging(self) -> Path:
        """Where versions are written before ``publish``: always a local folder."""
        return self.files.staging

    @property
    def pointer(self) -> Path:
        return self.root / CHAMPION_FILE

    @property
    def history(self) -> Path:
        return self.root / HISTORY_FILE

    @property
    def retrain_lock(self) -> Path:
        return self.root / RETRAIN_LOCK_FILE

    @property
    def pointer_lock(self) -> Path:
        return self.root / POINTER_LOCK_FILE

    def _pointer_locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the pointer lock (waiting up to ``POINTER_LOCK_WAIT_SECONDS`` for it)."""
        self._writable()
        return waiting_for(self.files.pointer_lock)

    def model_path(self, version: str) -> Path:
        return self.versions / checked_version(version) / MODEL_FILE

    def local_model(self, version: str) -> Path:
        """The version's model as a local file (Keras loads only those): itself, or a
        copy kept in the temp folder (a published version never changes)."""
        path = self.model_path(version)
        return as_location(path).local_file(version, MODEL_FILE)

    # ---------------------------------------------------------------- versions
    def new_version(self) -> str:
        """A sortable, unique version id: UTC time plus a random suffix."""
        return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)

    def stage(self, version: str) -> Path:
        self._writable()
        folder = self.staging / version
        folder.mkdir(parents=True, exist_ok=False)
        return folder

    def write_record(self, version: str, metrics: dict, decision: dict,
                     profile: dict) -> Path:
        """Write a staged version's record beside its model (``tasks.training.card``:
        metrics, decision, profile, pictures, model card). Published separately."""
        folder = self.staging / checked_version(version)
        write_record(folder, metrics, decision, profile)
        return folder

    def publish(self, version: str) -> Path:
        """Make a whole staged version visible in ``versions/``."""
        self._writable()
        return self.files.publish(version)

    def clean_staging(self) -> list[str]:
        """Remove versions left half-written by a crashed run; returns their names."""
        return self.files.clean_staging()

    def exists(self, version: str) -> bool:
        return self.model_path(version).exists()

    def read_version(self, version: str) -> dict:
        folder = self.versions / checked_version(version)
        info = {"version": version}
        for name, file in (("metrics", METRICS_FILE), ("decision", DECISION_FILE)):
            path = folder / file
            if path.exists():
                info[name] = json.loads(path.read_text(encoding="utf-8"))
        return info

    def read_profile(self, version: str) -> dict | None:
        """The version's reference profile, or None when it was trained without one."""
        path = self.versions / checked_version(version) / PROFILE_FILE
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def latest_version(self) -> str | None:
        """The most recently trained published version, by metrics.json ``trained_at``
        (then by name: new_version() names sort by time, operators may name others)."""
        names = self._version_names()
        trained = {name: self.read_version(name).get("metrics", {}).get("trained_at") or ""
                   for name in names}
        return max(names, key=lambda name: (trained[name], name)) if names else None

    def list_versions(self) -> list[dict]:
        """Every published version, oldest first, with its status."""
        names = self._version_names()
        if not names:
            return []
        pointer, _ = self._read_pointer()  # a list still works while the pointer is broken
        current = pointer["version"] if pointer else None
        former = {e["version"] for e in self.read_history() if e.get("event") in CHAMPION_EVENTS}
        rows = []
        for name in names:
            info = self.read_version(name)
            decision = info.get("decision", {})
            if name == current:
                status = VersionStatus.CHAMPION
            elif name in former:
                status = VersionStatus.FORMER_CHAMPION
            else:
                status = (VersionStatus.NOT_PROMOTED if decision.get("champion_changed") else
                          VersionStatus.REJECTED if decision.get("promote") is False
                          else VersionStatus.CANDIDATE)
            metrics = info.get("metrics", {})
            rows.append({"version": name, "status": status,
                         "accuracy": metrics.get("validation", {}).get("accuracy"),
                         "trained_at": metrics.get("trained_at"),
                         "decision": decision.get("reason")})
        return rows

    def _version_names(self) -> list[str]:
        return sorted(name for name in self.files.version_names()
                      if VERSION_NAME.fullmatch(name))

    # ---------------------------------------------------------------- champion
    def _read_pointer(self) -> tuple[dict | None, str | None]:
        """``(pointer, None)``, ``(None, None)`` without one, or ``(None, why)`` when
        champion.json cannot be used (cut short, emptied, edited by hand)."""
        if not self.pointer.exists():
            return None, None
        try:
            pointer = json.loads(self.pointer.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            return None, f"not valid JSON ({exc})"
        if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), str):
            return None, "it names no version"
        return pointer, None

    def champion(self) -> dict | None:
        """The pointer, or None when the registry never had a champion (``last_champion``).
        RegistryError when it is unusable, or missing while the registry had one: every
        command that reads the champion (scoring, retraining, rollback, demo) then stops
        naming the repair, instead of acting as before a first champion."""
        pointer, problem = self._read_pointer()
        if problem is not None:
            raise RegistryError(
                f"{self.pointer} cannot be read: {problem}. Repair it by naming the champion "
                f"again: `reviewflow models promote VERSION --reason '…'` with a VERSION from "
                f"`reviewflow models list`")
        if pointer is None and (last := self.last_champion()) is not None:
            raise RegistryError(
                f"{self.pointer} is missing, but {self.root} had a champion ({last}); "
                f"name it again: `reviewflow models promote VERSION --reason '…'` with a "
                f"VERSION from `reviewflow models list`")
        return pointer

    def current_version(self) -> str | None:
        """The version champion.json names, or None without a usable one (never raises)."""
        pointer, _ = self._read_pointer()
        return pointer["version"] if pointer else None

    def champion_version(self) -> str:
        """The champion's version. ``NoChampionError``: the registry never had one (before
        the first retraining); ``RegistryError``: it had one and lost it (champion.json
        missing or unusable, or naming a version whose model is not there)."""
        pointer = self.champion()
        if pointer is None:
            raise NoChampionError(
                f"no champion model in {self.root}. Train one first: put labeled reviews "
                f"(review_id, text, label) in the labeled/ folder and run `reviewflow retrain`"
                f" (or `make demo` to train on the bundled sample)")
        version = pointer["version"]
        if not self.exists(version):
            raise RegistryError(
                f"{self.pointer} names version {version!r}, which is not in {self.versions} "
                f"(removed, or not uploaded yet). Point it at one that is: `reviewflow models "
                f"rollback`, or `reviewflow models promote VERSION --reason '…'` with a VERSION "
                f"from `reviewflow models list`")
        return version

    def last_champion(self) -> str | None:
        """The last champion the history names, else the last version whose decision
        promoted it (the history lost too); None: the registry never had a champion."""
        events = [e.get("version") for e in self.read_history()
                  if e.get("event") in CHAMPION_EVENTS and e.get("version")]
        if events:
            return events[-1]
        promoted = [name for name in self._version_names()
                    if self.read_version(name).get("decision", {}).get("promote") is True]
        return promoted[-1] if promoted else None

    def promote_by_hand(self, version: str, reason: str, force: bool = False) -> dict:
        """A manual promotion, recorded with its reason. A version that was rejected, or
        whose recorded held-out accuracy is below the champion's, needs ``force``. The
        check and the change are made on the same pointer, under the pointer lock."""
        if not reason or not reason.strip():
            raise RegistryError("a promotion by hand needs a reason (--reason '…'), kept in "
                                "the history")
        self._writable()
        self._require(version)
        with self._pointer_locked():
            old, _ = self._read_pointer()
            failpoint("registry:pointer-read")
            if not force:
                self._refuse_unless_fit(version, old)
            return self._move_pointer(version, reason, HistoryEvent.MANUAL_PROMOTION, old,
                                      **({"forced": True} if force else {}))

    def _refuse_unless_fit(self, version: str, old: dict | None) -> None:
        info = self.read_version(version)
        decision = info.get("decision", {})
        # Not promoted because the champion changed while it trained: never judged worse.
        rejected = decision.get("promote") is False and not decision.get("champion_changed")
        mine = info.get("metrics", {}).get("validation", {}).get("accuracy")
        theirs = None
        if old and old["version"] != version and self.exists(old["version"]):
            theirs = (self.read_version(old["version"]).get("metrics", {})
                      .get("validation", {}).get("accuracy"))
        worse = mine is not None and theirs is not None and mine < theirs
        if rejected or worse:
            why = (f"it was rejected ({decision.get('reason')})" if rejected else
                   f"its held-out accuracy {mine:.4f} is below the champion's {theirs:.4f}")
            raise RegistryError(f"not promoting {version}: {why}. Add --force to promote "
                                "it anyway; the history records that it was forced")

    def rollback(self, reason: str) -> dict:
        """Go back to the champion before the current one (read under the pointer lock, so
        two rollbacks at once go back two champions)."""
        self._writable()
        with self._pointer_locked():
            old = self.champion()
            failpoint("registry:pointer-read")
            if not old or not old.get("previous"):
                raise RegistryError("there is no earlier champion to roll back to")
            previous = list(old["previous"])
            target = previous.pop()
            if not self.exists(target):
                raise RegistryError(f"the earlier champion {target!r} is not in "
                                    f"{self.versions}; promote a version from `reviewflow "
                                    f"models list` instead")
            return self._write_pointer(target, reason, HistoryEvent.ROLLBACK, previous, old)

    def conclude_training(self, version: str, promote: bool, reason: str,
                          compared_against: str | None) -> tuple[bool, str]:
        """Publish the staged ``version`` and, if ``promote``, make it the champion: only
        if the champion is still ``compared_against`` (None: there was none), the one its
        figures were compared with. Returns ``(promoted, reason)``.

        A champion changed meanwhile (``models promote``, ``models rollback``) stays: a
        candidate never replaces a champion it was not compared with. The version is
        published "not promoted", its decision.json and the history saying why and
        against which champion it was decided, so it can be promoted by hand after a
        look at both. (Comparing it with the new champion instead would need that
        champion's scores on these gate rows, which no record holds, and would overrule
        a choice someone made by hand while this run trained.)
        """
        self._writable()
        with self._pointer_locked():
            old, _ = self._read_pointer()
            current = old["version"] if old else None
            changed = current != compared_against
            if promote and changed:
                promote, reason = False, (
                    f"not promoted: the champion changed from {compared_against or 'none'} to "
                    f"{current or 'none'} during training; {version} was compared against "
                    f"{compared_against or 'no champion'} ({reason}). Compare them and promote "
                    f"by hand if it is better: `reviewflow models promote {version} --reason …`")
                decision = self.staging / version / DECISION_FILE
                write_json_atomic(decision, {
                    **json.loads(decision.read_text(encoding="utf-8")), "promote": False,
                    "reason": reason, "champion_changed": {"from": compared_against,
                                                           "to": current}})
                write_card(decision.parent)
            failpoint("retrain:staged")
            self.publish(version)
            failpoint("retrain:published")
            if promote:
                self._move_pointer(version, reason, HistoryEvent.PROMOTED, old,
                                   compared_against=compared_against)
            else:
                self._append_history({
                    "event": HistoryEvent.NOT_PROMOTED if changed else HistoryEvent.REJECTED, "version": version,
                    "reason": reason, "compared_against": compared_against,
                    **({"champion": current} if changed else {})})
        return promote, reason

    def _require(self, version: str) -> None:
        if not self.exists(version):
            raise RegistryError(f"version {version!r} is not in {self.versions}; "
                                f"see `reviewflow models list`")

    def _move_pointer(self, version: str, reason: str, event: HistoryEvent, old: dict | None,
                      **record) -> dict:
        previous = list(old.get("previous", [])) if old else []
        if old and old["version"] != version:
            previous.append(old["version"])
        return self._write_pointer(version, reason, event, previous, old, **record)

    def _write_pointer(self, version: str, reason: str, event: str, previous: list[str],
                       old: dict | None, **record) -> dict:
        """Replace champion.json and append the change to the history; the caller holds
        the pointer lock. Each change has an id in both, so a change whose history event
        a kill cut off (between the two writes) is recorded by the next, from ``old``."""
        if old and old.get("change") and all(e.get("change") != old["change"]
                                              for e in self.read_history()):
            self._append_history({"at": old["since"], "event": old["event"], "recorded_late":
                                  True, **{k: old.get(k) for k in ("version", "reason", "change")}})
        change = secrets.token_hex(6)
        pointer = {"version": version, "since": _now(), "reason": reason, "event": event,
                   "previous": previous, "change": change}
        write_json_atomic(self.pointer, pointer)
        failpoint("registry:pointer-written")
        self._append_history({"event": event, "version": version, "change": change,
                              "replaced": old["version"] if old else None, "reason": reason,
                              **record})
        return pointer

    def record(self, entry: dict) -> None:
        """Append one event to history.jsonl (under the pointer lock)."""
        with self._pointer_locked():
            self._append_history(entry)

    def _append_history(self, entry: dict) -> None:
        self.files.append_event(json.dumps({"at": _now(), **entry}, sort_keys=True, default=str))

    def read_history(self) -> list[dict]:
        entries = []
        for line in self.files.event_lines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash mid-append
        return entries


@contextlib.contextmanager
def open_registry(layout, state_url: str | None) -> Iterator[Registry]:
    """The data root's registry, to change it, with the root's run state open
    (``open_state``: PostgreSQL at ``state_url``, else the state folder; refused when
    the root is scored with another state). On object storage the registry takes that
    state's pointer lock; a local registry locks its own folder."""
    from tasks.state.backend import open_state

    state = open_state(state_url, layout)
    try:
        yield Registry(layout.models, None if layout.models.supports_locks else state)
    finally:
        state.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

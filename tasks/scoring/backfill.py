"""A backfill's plan: which archived inputs the current champion scores again, and how
many rows they hold (``reviewflow rescore``, the ``rescore-archive`` flow).

``archived_inputs`` chooses the files of ``archive/<day>/`` (a day on or after
``since``, an uploaded name that matches ``pattern``); ``plan_backfill`` hashes each,
leaves out what the champion scored already (the ledger keys scored content by content
and model, as ``score`` does) and counts the rows of the rest with the readers scoring
uses, so the plan's rows are the rows the backfill reads (each ends scored or in
``quarantine/rows``). The scoring itself is ``score``'s: the same queue, claims, locks,
checkpoints and commit, with ``tasks.state.inputs.FromArchive`` as the source.
"""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa

from tasks.errors import poison_reason
from tasks.layout import DataLayout, content_key
from tasks.reading import UnreadableFileError, detect_format, is_review_file, iter_review_batches
from tasks.settings import Settings
from tasks.state.backend import RunState
from tasks.state.inputs import archived_key, original_name
from tasks.storage.local import Location, file_sha256, is_temporary, readable_name


def check_since(since: str | None) -> str | None:
    """``since`` as a day folder's name (YYYY-MM-DD); ``ValueError`` naming the form."""
    if since is None:
        return None
    try:
        return date.fromisoformat(since).isoformat()
    except ValueError:
        raise ValueError(f"--since {since!r} is not a day: give YYYY-MM-DD") from None


def archived_inputs(layout: DataLayout, since: str | None = None,
                    pattern: str | None = None) -> list[Location]:
    """The archived review files of the days on or after ``since`` whose uploaded name
    (or archived name) matches the glob ``pattern``, oldest day first."""
    since = check_since(since)
    if not layout.archive.exists():
        return []
    chosen = []
    for folder in sorted(layout.archive.iterdir(), key=lambda p: p.name):
        if since is not None and folder.name < since or not folder.is_dir():
            continue
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if is_temporary(path.name) or path.name.startswith(".") or not is_review_file(path):
                continue
            if pattern is None or any(fnmatch.fnmatchcase(name, pattern)
                                      for name in (original_name(path.name), path.name)):
                chosen.append(path)
    return chosen


@dataclass
class PlannedFile:
    path: Location
    sha256: str
    rows: int | None = None  # None: it cannot be read, or its bytes changed (``reason``)
    reason: str = ""


@dataclass
class BackfillPlan:
    """What a backfill with ``model_version`` will do: the files it scores (and their
    rows), those it leaves (scored by this model already, or a second copy of a content
    it scores), and those it will refuse (each with its reason)."""

    model_version: str
    files: list[PlannedFile] = field(default_factory=list)
    skipped: list[PlannedFile] = field(default_factory=list)

    @property
    def to_score(self) -> list[PlannedFile]:
        return [f for f in self.files if f.rows is not None]

    @property
    def refused(self) -> list[PlannedFile]:
        return [f for f in self.files if f.rows is None]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.to_score)

    def headline(self) -> str:
        return (f"rescore with {self.model_version}: {len(self.to_score)} files, {self.rows} "
                f"rows to score; {len(self.skipped)} files skipped (already scored by "
                f"{self.model_version}); {len(self.refused)} files that will fail")

    def lines(self) -> list[str]:
        """The headline, then a line per file to score or refuse."""
        return [self.headline(),
                *(f"  {_shown(f.path)}: {f.rows} rows" for f in self.to_score),
                *(f"  {_shown(f.path)}: will fail: {f.reason}" for f in self.refused)]

    def as_dict(self) -> dict:
        return {"model_version": self.model_version, "files": len(self.to_score),
                "rows": self.rows, "files_skipped": len(self.skipped),
                "files_failing": len(self.refused),
                "to_score": [{"file": _shown(f.path), "rows": f.rows} for f in self.to_score],
                "failing": [{"file": _shown(f.path), "reason": f.reason} for f in self.refused]}


def _shown(path: Location) -> str:
    return f"{path.parent.name}/{readable_name(path.name)}"


def plan_backfill(paths: list[Location], state: RunState, model_version: str,
                  settings: Settings) -> BackfillPlan:
    """Hash each file, skip what ``model_version`` scored (and second copies of one
    content), and count the rows of the rest as scoring reads them."""
    plan, seen = BackfillPlan(model_version), set()
    for path in paths:
        sha256 = file_sha256(path)
        planned = PlannedFile(path, sha256)
        if sha256 in seen or state.scored(sha256, model_version) is not None:
            plan.skipped.append(planned)
            continue
        seen.add(sha256)
        plan.files.append(planned)
        if archived_key(path.name) != content_key(sha256):
            planned.reason = "its bytes differ from those it was archived with"
            continue
        try:
            planned.rows = _rows(path, sha256, settings)
        except UnreadableFileError as exc:
            planned.reason = exc.reason
        except Exception as exc:
            if (reason := poison_reason(exc)) is None:
                raise
            planned.reason = reason  # the scoring's read fails the same way
    return plan


def _rows(path: Location, sha256: str, settings: Settings) -> int:
    found = detect_format(path)
    if found is not None and found.format.row_count is not None:
        with contextlib.suppress(pa.ArrowException, OSError):  # the reader says what is wrong
            return found.format.row_count(path)  # from its metadata: no data read
    return sum(batch.num_rows for batch in iter_review_batches(
        path, settings.columns, settings.read_batch_rows, settings.max_decompressed_bytes,
        encodings=tuple(settings.encodings), detect_encoding=settings.detect_encoding,
        sha256=sha256, max_text_chars=settings.max_text_chars))

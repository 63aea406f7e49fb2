"""Which input columns mean what: the ``ColumnMapping`` the settings carry (the user's
choice of names; defined in ``tasks.settings``, imported from here by the readers), and
how a reader finds those columns in a file's header, a Parquet schema or a JSON object's
keys.

Names are matched case-insensitively, ignoring surrounding spaces and a byte-order
mark; the first name of a role found in a file wins. A file without a text column, or
with a role's column twice, is unreadable. A file without an id column gets generated
ids (``GeneratedIds``, see ``tasks.reading.schema``).

What a format's reader uses: ``resolve_columns`` (a file's ``Columns``, or
``UnreadableFileError``), or for keys that differ from record to record (JSON)
``find_columns`` and ``pick``, with ``ColumnsError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.reading.passthrough import extra_columns
from tasks.reading.schema import UnreadableFileError
from tasks.settings import ColumnMapping

# The roles a reader picks from a record, in the order ``find_columns`` returns their columns.
ROLES = ("review_id", "text", "label", "group", "slice")


@dataclass
class GeneratedIds:
    """Where generated review ids come from: the file's content hash (computed once,
    only if a file without an id column needs it and the caller did not pass it)."""

    path: Path
    sha256: str | None

    def prefix(self) -> str:
        if self.sha256 is None:
            from tasks.storage.local import file_sha256

            self.sha256 = file_sha256(self.path)
        return f"{self.sha256[:16]}-row"


def _key(name: str) -> str:
    return name.strip().lower().lstrip("\ufeff")


def pick(names: list[str], wanted: list[str]) -> str | None:
    """The first of ``wanted`` found among ``names`` (as written in ``names``), or None."""
    lowered = {_key(name): name for name in names}
    for candidate in wanted:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


@dataclass(frozen=True)
class Columns:
    """The columns of one file that hold each role, by their names in the file."""

    review_id: str | None  # None: ids are generated, ``id_prefix`` + source_row
    text: str
    label: str | None
    id_prefix: str | None = None
    group: str | None = None  # the file's group column, if it has one
    with_group: bool = False  # batches carry ``group`` and ``slice`` columns (null without one)
    slice: str | None = None  # the file's slice column, if it has one
    # Pass-through columns: (name in the file, name in the output), tasks.reading.passthrough
    extra: tuple[tuple[str, str], ...] = ()


class ColumnsError(Exception):
    """The names lack a text column or name a column twice; the message says which."""


def find_columns(names: list[str], columns: ColumnMapping, where: str = "the header"
                 ) -> tuple[str | None, str, str | None, str | None, str | None]:
    """The names among ``names`` of the id, text, label, group and slice columns."""
    review_id = pick(names, columns.review_id)
    text = pick(names, columns.text)
    label = pick(names, columns.label)
    group = pick(names, columns.group) if columns.group else None
    sliced = pick(names, columns.slice) if columns.slice else None
    if text is None:
        raise ColumnsError(f"missing required column text (looked for "
                           f"{', '.join(columns.text)}); {where} has {names}. Rename the "
                           "column or add its name to the column mapping settings")
    keys = [_key(name) for name in names]
    for role, name in (("review_id", review_id), ("text", text), ("label", label),
                       ("group", group), ("slice", sliced)):
        if name is not None and keys.count(_key(name)) > 1:
            # pyarrow would raise KeyError ('Field "text" exists 2 times in schema') far
            # from here; which of the two holds the reviews cannot be guessed.
            raise ColumnsError(f"column {name!r} (the {role} column) appears "
                               f"{keys.count(_key(name))} times in {where} {names}; rename or "
                               "drop the extra one")
    return review_id, text, label, group, sliced


def resolve_columns(path: Path, names: list[str], columns: ColumnMapping,
                    ids: GeneratedIds | None = None) -> Columns:
    """The ``Columns`` of the file ``path`` whose columns are ``names``; without an id
    column, ids come from ``ids``. ``UnreadableFileError`` saying why not."""
    try:
        review_id, text, label, group, sliced = find_columns(names, columns)
    except ColumnsError as exc:
        raise UnreadableFileError(path, str(exc).replace("the header has", "the file has "
                                                         "columns")) from exc
    prefix = None
    if review_id is None:
        if ids is None:
            raise UnreadableFileError(path, "missing required column review_id")
        prefix = ids.prefix()
    extra = extra_columns(names, [review_id, text, label, group, sliced], columns)
    return Columns(review_id, text, label, prefix, group, carries_training_columns(columns),
                   sliced, extra)


def carries_training_columns(columns: ColumnMapping) -> bool:
    """Whether batches read with ``columns`` carry the ``group`` and ``slice`` columns:
    a reader asked for them (``with_group``) keeps the mapping's names of either."""
    return bool(columns.group or columns.slice)


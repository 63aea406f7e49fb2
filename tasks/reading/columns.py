"""Which input columns mean what: the ``ColumnMapping`` the settings carry (the user's
choice of names), and how a reader finds those columns in a file's header, a Parquet
schema or a JSON object's keys.

Names are matched case-insensitively, ignoring surrounding spaces and a byte-order
mark; the first name of a role found in a file wins. A file without a text column, or
with a role's column twice, is unreadable. A file without an id column gets generated
ids (``_GeneratedIds``, see ``tasks.reading.schema``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from tasks.reading.schema import UnreadableFileError


class ColumnMapping(BaseModel):
    """Which input column names mean review id, text and label.

    The first name found in a file wins; names are matched case-insensitively.
    """

    review_id: list[str] = ["review_id", "id", "reviewid", "review id"]
    text: list[str] = ["text", "review", "document", "content", "body", "comment"]
    label: list[str] = ["label", "sentiment", "polarity", "target"]
    # What a review is about (a movie, a product). Labeled files that carry one are split
    # by it for training, so the held-out figures measure reviews of unseen items, as a
    # new batch will be. Empty: split by review id. Scoring ignores it.
    group: list[str] = ["movie_id", "product_id", "item_id"]
    # A column whose values cut the gate rows into slices for the promotion guard (a
    # product category, a market); retraining reads it, scoring ignores it. Empty: the
    # gate is sliced by script only (tasks.training.slices).
    slice: list[str] = []
    positive_labels: list[str] = ["1", "pos", "positive", "true", "yes"]
    negative_labels: list[str] = ["0", "neg", "negative", "false", "no"]


# The roles a reader picks from a record, in the order ``_names`` returns their columns.
ROLES = ("review_id", "text", "label", "group", "slice")


@dataclass
class _GeneratedIds:
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


def _pick(names: list[str], wanted: list[str]) -> str | None:
    lowered = {_key(name): name for name in names}
    for candidate in wanted:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


@dataclass(frozen=True)
class _Columns:
    review_id: str | None  # None: ids are generated, ``id_prefix`` + source_row
    text: str
    label: str | None
    id_prefix: str | None = None
    group: str | None = None  # the file's group column, if it has one
    with_group: bool = False  # batches carry ``group`` and ``slice`` columns (null without one)
    slice: str | None = None  # the file's slice column, if it has one


class _NoColumns(Exception):
    """The names lack a text column or name a column twice; the message says which."""


def _names(names: list[str], columns: ColumnMapping, where: str = "the header"
           ) -> tuple[str | None, str, str | None, str | None, str | None]:
    """The names among ``names`` of the id, text, label, group and slice columns."""
    review_id = _pick(names, columns.review_id)
    text = _pick(names, columns.text)
    label = _pick(names, columns.label)
    group = _pick(names, columns.group) if columns.group else None
    sliced = _pick(names, columns.slice) if columns.slice else None
    if text is None:
        raise _NoColumns(f"missing required column text (looked for {', '.join(columns.text)}); "
                         f"{where} has {names}. Rename the column or add its name to the "
                         "column mapping settings")
    keys = [_key(name) for name in names]
    for role, name in (("review_id", review_id), ("text", text), ("label", label),
                       ("group", group), ("slice", sliced)):
        if name is not None and keys.count(_key(name)) > 1:
            # pyarrow would raise KeyError ('Field "text" exists 2 times in schema') far
            # from here; which of the two holds the reviews cannot be guessed.
            raise _NoColumns(f"column {name!r} (the {role} column) appears "
                             f"{keys.count(_key(name))} times in {where} {names}; rename or "
                             "drop the extra one")
    return review_id, text, label, group, sliced


def _resolve(path: Path, names: list[str], columns: ColumnMapping,
             ids: _GeneratedIds | None = None) -> _Columns:
    try:
        review_id, text, label, group, sliced = _names(names, columns)
    except _NoColumns as exc:
        raise UnreadableFileError(path, str(exc).replace("the header has", "the file has "
                                                         "columns")) from exc
    prefix = None
    if review_id is None:
        if ids is None:
            raise UnreadableFileError(path, "missing required column review_id")
        prefix = ids.prefix()
    return _Columns(review_id, text, label, prefix, group, carries_training_columns(columns),
                    sliced)


def carries_training_columns(columns: ColumnMapping) -> bool:
    """Whether batches read with ``columns`` carry the ``group`` and ``slice`` columns:
    a reader asked for them (``with_group``) keeps the mapping's names of either."""
    return bool(columns.group or columns.slice)


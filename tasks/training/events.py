"""The names the registry writes: history events and version statuses.

``models/history.jsonl`` lines and the champion pointer carry a ``HistoryEvent``;
``Registry.list_versions`` (``reviewflow models list``) gives each version a ``VersionStatus``.
Both are string enums, so the files keep plain strings and a test or a type checker sees
every value.
"""

from __future__ import annotations

from enum import StrEnum


class HistoryEvent(StrEnum):
    """The ``event`` of a line of ``models/history.jsonl`` (and of the champion pointer)."""

    PROMOTED = "promoted"                    # a retraining's candidate beat the champion
    MANUAL_PROMOTION = "manual promotion"    # reviewflow models promote
    ROLLBACK = "rollback"                    # reviewflow models rollback
    REJECTED = "rejected"                    # a candidate that did not beat the champion
    NOT_PROMOTED = "not promoted"            # judged against a champion replaced meanwhile
    NOTHING_NEW = "nothing new to learn"     # a retraining that found no new labeled rows


class VersionStatus(StrEnum):
    """A version's status in ``Registry.list_versions`` (``reviewflow models list``)."""

    CHAMPION = "champion"
    FORMER_CHAMPION = "former champion"
    NOT_PROMOTED = "not promoted"  # decided against a champion replaced while it trained
    REJECTED = "rejected"
    CANDIDATE = "candidate"


# History events after which the named version was the champion.
CHAMPION_EVENTS = (HistoryEvent.PROMOTED, HistoryEvent.MANUAL_PROMOTION, HistoryEvent.ROLLBACK)

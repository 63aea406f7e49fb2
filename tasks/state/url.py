"""What a state URL is (``REVIEWFLOW_STATE_URL``), and the one form of it that may be shown.

Kept apart from tasks/state/backend.py so that both backends and the CLI can use these
rules without importing each other.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

STATE_URL_SCHEMES = ("postgresql", "postgres")


def is_state_url(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in STATE_URL_SCHEMES


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``: the only form of a state URL that
    may be printed, logged or written."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))

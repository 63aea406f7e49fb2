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
    return url if urlsplit(url).password is None else _with_password(url, "***")


def without_password(url: str | None) -> str | None:
    """``url`` with no password at all: what may be kept where it is shown, such as a
    Prefect flow run's parameters (the password then comes from ``with_password_of``,
    ``PGPASSWORD`` or ``~/.pgpass``)."""
    if not url or urlsplit(url).password is None:
        return url
    return _with_password(url, None)


def with_password_of(url: str | None, source: str | None) -> str | None:
    """``url`` with the password of ``source`` when ``url`` has none and ``source`` names
    the same user, host, port and database; otherwise ``url`` as it is."""
    if not (is_state_url(url) and is_state_url(source)):
        return url
    if urlsplit(url).password is not None or urlsplit(source).password is None:
        return url
    return source if without_password(source) == url else url


def _with_password(url: str, password: str | None) -> str:
    """``url`` with its password replaced by ``password``, or dropped for None."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    if password is not None:
        user = f"{user}:{password}"
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))

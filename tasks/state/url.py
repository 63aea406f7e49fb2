"""What a state URL is (``REVIEWFLOW_STATE_URL``), read the way libpq reads it, and the one
form of it that may be shown.

A state URL is any connection string libpq takes: a ``postgresql://`` (or ``postgres://``)
URI, with its password in the user info or in ``?password=``, or ``key=value`` pairs
(``host=db user=reviewflow dbname=reviewflow``). The password may also come from
``PGPASSWORD`` or ``~/.pgpass``, which libpq reads itself.

Every split, comparison and redaction of a state URL is made here, on what libpq's own
parser (psycopg's ``conninfo_to_dict``) makes of it, so the password taken out is the
one libpq logs in with, whatever characters it holds; what may be shown is rebuilt from
the parsed parameters without it, never cut out of the text. A string libpq cannot
parse is refused (``StateURLError``) in one line that does not repeat it: libpq's own
message quotes the part it could not read, which may be the password.

Kept apart from tasks/state/backend.py so that both backends, the settings and the CLI
can use these rules without importing each other; psycopg is imported only when a state
URL is read.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from tasks.errors import StateURLError

URI_PREFIXES = ("postgresql://", "postgres://")
# The parameters that hold a secret: never shown, never kept where Prefect shows them.
SECRET_KEYS = ("password", "sslpassword")
# What to do, said by every refusal of a state URL.
STATE_URL_HELP = ("write it as postgresql://user@host:port/database (a password in it "
                  "percent-encoded: %40 for @, %2F for /, %25 for %, %20 for a space) or as "
                  "key=value pairs, or leave the password out and put it in PGPASSWORD or "
                  "~/.pgpass")
# libpq's complaints, by the words they start with, and what they mean without the
# text they quote.
_REASONS = (
    ("invalid percent-encoded token", "a % that is not followed by two hexadecimal digits"),
    ("unexpected spaces found", "a space that is not written %20"),
    ("missing key/value separator", "a query parameter without ="),
    ("extra key/value separator", "a query parameter with a second ="),
    ("invalid URI query parameter", "a query parameter libpq does not know"),
    ("invalid connection option", "an option libpq does not know"),
    ("unterminated quoted string", "a quote that is not closed"),
    ("missing \"=\" after", "neither a postgresql:// URL nor key=value pairs"),
)
_PLAIN_HOST = re.compile(r"[A-Za-z0-9._-]+")


def parse(url: str) -> dict[str, str]:
    """libpq's parameters of ``url`` (``user``, ``password``, ``host``, ``port``,
    ``dbname``, …); ``StateURLError``, which does not echo ``url``, if libpq cannot read
    it, or if it is a URI whose user name or password holds an unencoded ``@`` or ``/``
    (libpq would read part of the password as the host or the database)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    if not url or not url.strip():
        raise StateURLError(f"the state URL is empty; {STATE_URL_HELP}")
    _check_uri_user_info(url)
    try:
        params = conninfo_to_dict(url)
    except ProgrammingError as exc:
        raise StateURLError(f"libpq cannot read the state URL ({_reason(str(exc))}); "
                            f"{STATE_URL_HELP}") from None
    if not params:
        raise StateURLError(f"the state URL names no database; {STATE_URL_HELP}")
    return params


def _check_uri_user_info(url: str) -> None:
    """Refuse a URI in which libpq would take part of the user info for the host or the
    database: its user info ends at the first ``@``, or where a ``/`` comes first."""
    prefix = next((p for p in URI_PREFIXES if url.startswith(p)), None)
    if prefix is None:
        return
    rest = url[len(prefix):]
    end = min((i for i in (rest.find("@"), rest.find("/")) if i >= 0), default=-1)
    after = rest[end + 1:] if end >= 0 and rest[end] == "@" else rest
    if "@" in after.split("?", 1)[0]:
        raise StateURLError("the state URL has an @ after its user info (libpq would read "
                            f"part of the password as the host or the database); {STATE_URL_HELP}")


def _reason(message: str) -> str:
    return next((reason for start, reason in _REASONS if message.startswith(start)),
                "not a connection string libpq accepts")


def has_password(url: str) -> bool:
    """Whether libpq reads a password (or a key's password) in ``url`` itself."""
    return any(key in parse(url) for key in SECRET_KEYS)


def public_params(url: str) -> dict[str, str]:
    """``url``'s parameters without the secret ones: what names the database and the login."""
    return {key: value for key, value in parse(url).items() if key not in SECRET_KEYS}


def without_password(url: str | None) -> str | None:
    """``url`` with no password at all, as a ``postgresql://`` URL: what may be kept where
    it is shown, such as a Prefect flow run's parameters (the password then comes from
    ``with_password_of``, ``PGPASSWORD`` or ``~/.pgpass``). A URL without one is kept as
    written."""
    if not url or not has_password(url):
        return url or None
    return _as_url(public_params(url))


def redacted(url: str) -> str:
    """``url`` rebuilt from its parameters, a password shown as ``***``: the only form of
    a state URL that may be printed, logged or written. One libpq cannot read is shown
    as a phrase, never as written."""
    try:
        params = parse(url)
    except StateURLError:
        return "(a state URL libpq cannot read)"
    return _as_url({key: "***" if key in SECRET_KEYS else value
                    for key, value in params.items()}, verbatim=frozenset({"***"}))


def with_password_of(url: str | None, source: str | None) -> str | None:
    """``url`` with the password of ``source`` when ``url`` has none and ``source`` names
    the same user, host, port, database and options; otherwise ``url`` as it is."""
    if not url or not source:
        return url
    try:
        if has_password(url) or not has_password(source):
            return url
        same = public_params(source) == public_params(url)
    except StateURLError:
        return url
    return source if same else url


def describe(url: str) -> str:
    """host:port/db of a state URL, with libpq's defaults: how messages name the database."""
    try:
        params = parse(url)
    except StateURLError:
        return "(a state URL libpq cannot read)"
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    user = params.get("user") or os.environ.get("PGUSER")
    db = params.get("dbname") or os.environ.get("PGDATABASE") or user or "postgres"
    return f"{host}:{port}/{db}"


def secrets_of(url: str) -> list[str]:
    """The secrets libpq would use for ``url``: its own, and ``PGPASSWORD``'s (what a
    message from libpq is scrubbed of)."""
    try:
        own = [value for key, value in parse(url).items() if key in SECRET_KEYS]
    except StateURLError:
        own = []
    return [secret for secret in (*own, os.environ.get("PGPASSWORD")) if secret]


def _as_url(params: dict[str, str], verbatim: frozenset[str] = frozenset()) -> str:
    """A ``postgresql://`` URL that libpq reads as ``params``. A plain host and port go
    in the authority; a list of hosts, a socket folder and every other parameter in
    the query. Values in ``verbatim`` (``***``) are written as they are, the others
    percent-encoded."""
    def enc(value: str) -> str:
        return value if value in verbatim else quote(value, safe="")

    rest = dict(params)
    user, password = rest.pop("user", None), rest.pop("password", None)
    host, port, dbname = rest.get("host"), rest.get("port"), rest.pop("dbname", None)
    netloc = ""
    if host is not None and (_PLAIN_HOST.fullmatch(host) or _is_ipv6(host)):
        if port is None or port.isdigit():
            netloc = f"[{host}]" if _is_ipv6(host) else host
            del rest["host"]
            if port is not None:
                netloc += f":{rest.pop('port')}"
    if user is not None or password is not None:
        info = enc(user or "") + (f":{enc(password)}" if password is not None else "")
        netloc = f"{info}@{netloc}"
    url = f"postgresql://{netloc}" + (f"/{enc(dbname)}" if dbname is not None else "")
    if rest:
        url += "?" + "&".join(f"{key}={enc(value)}" for key, value in rest.items())
    return url


def _is_ipv6(host: str) -> bool:
    return ":" in host and re.fullmatch(r"[0-9A-Fa-f:.]+", host) is not None

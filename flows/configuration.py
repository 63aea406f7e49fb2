"""The one place a ``Settings`` is built: for a command, a flow run and ``deployments/serve.py``.

``tasks/settings.py`` is the bottom of the import graph and imports nothing of reviewflow,
so what it cannot check by itself is done here, on every ``Settings`` a run uses: a state
URL is read as libpq reads it (``StateURLError``, one line that does not repeat it), and a
state URL given without its password takes it back.

A flow run's parameters are kept and shown by Prefect, so a state URL reaches a flow
without its password (``flow_parameters``). The password comes back from the state URL
its caller lends it (``lending_state_url``: the ``reviewflow`` command, which calls the
flow in its own process, through a context variable that Prefect neither records nor
passes on), else from ``REVIEWFLOW_STATE_URL`` (a worker's environment), when that one
names the same user, host, port and database (``tasks.state.url.with_password_of``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from tasks.errors import SettingsError
from tasks.settings import ENV_PREFIX, Settings, state_url_in_environment
from tasks.state.url import parse, with_password_of, without_password

# The state URL (password included) the code that calls a flow in this process lends it:
# the value belongs to the caller's context, set and reset around the call.
_LENT_STATE_URL: ContextVar[str | None] = ContextVar("reviewflow_lent_state_url", default=None)


def settings_from(data_dir: str | None = None, **given: Any) -> Settings:
    """Settings from the environment with the ``given`` values that are not None on top
    (a command's options, a flow's parameters); pydantic's ``ValidationError`` for a value
    a setting cannot take, ``StateURLError`` for a state URL libpq cannot read."""
    values = {name: value for name, value in given.items() if value is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir  # a folder or a URL (s3://bucket/prefix); see Settings
    settings = Settings(**values)
    if settings.state_url:
        parse(settings.state_url)
        lender = _LENT_STATE_URL.get() or state_url_in_environment()
        if (url := with_password_of(settings.state_url, lender)) != settings.state_url:
            settings = settings.model_copy(update={"state_url": url})
    return settings


def command_settings(**given: Any) -> Settings:
    """``settings_from`` for a command: a value a setting cannot take is a
    ``SettingsError``, one line naming each setting and why, never pydantic's text, which
    repeats the values given (a state URL among them)."""
    from pydantic import ValidationError

    try:
        return settings_from(**given)
    except ValidationError as exc:
        raise SettingsError("; ".join(
            (ENV_PREFIX + "__".join(map(str, error["loc"])).upper() + ": " if error["loc"]
             else "") + error["msg"].removeprefix("Value error, ")
            for error in exc.errors())) from None


def flow_parameters(flow_function, settings: Settings, given: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of ``flow_function`` (a flow's own function, ``flow.fn``) with the
    value the run will use: ``given``'s where it is not None, else the setting of the same
    name, so the flow run shows them all. ``data_dir`` as text; the state URL without its
    password (the caller lends it: ``lending_state_url``)."""
    values = {}
    for name in inspect.signature(flow_function).parameters:
        value = given.get(name)
        if value is None and name in Settings.model_fields:
            value = getattr(settings, name)
        if value is not None:
            values[name] = value
    if "data_dir" in values:
        values["data_dir"] = str(values["data_dir"])
    if values.get("state_url"):
        values["state_url"] = without_password(values["state_url"])
    return values


@contextlib.contextmanager
def lending_state_url(url: str | None) -> Iterator[None]:
    """While a flow is called in this process, ``settings_from`` finds the password of its
    ``state_url`` parameter in ``url``."""
    token = _LENT_STATE_URL.set(url)
    try:
        yield
    finally:
        _LENT_STATE_URL.reset(token)

"""Operator tooling for running reviewflow's flows as Prefect deployments.

``deployments/prefect.yaml`` (work pools and workers), ``deployments/serve.py`` (one
process, no work pool), ``deployments/measure_overhead.py`` (what a Prefect server
saves per run). See ``deployments/README.md``.

This module also carries one workaround, :func:`prefect_cli`: with the pinned FastAPI
0.154.0, the Prefect 3.8.8 server answers ``422 Unprocessable Entity`` to every
``POST .../filter`` request whose JSON body holds an explicit ``null`` (``"limit": null``,
``"offset": null``, ``"sort": null``, ``"flows": null``), and Prefect's own client sends
such bodies. FastAPI 0.154 validates an explicit ``null`` against ``int`` instead of
falling back to the parameter's default as older releases did. The affected commands
include ``prefect deploy`` (it deploys the first deployment, then fails while listing
the pool's workers, so ``--all`` stops there), ``prefect deployment ls``,
``prefect flow-run ls`` and ``prefect work-pool ls``. Running a deployment, workers and
flow runs are not affected. Until the pin changes, run those commands as
``python -c 'import deployments; deployments.prefect_cli()' ARGS...`` (the Makefile's
``deploy`` target does), which drops the ``null`` top-level keys of filter bodies on the
client side; the server then applies its defaults, which is what ``null`` meant.
"""

from __future__ import annotations

import sys
from typing import Any

_PATCHED = False


def _without_null_filter_keys(method: str, url: Any, json: Any) -> Any:
    if (method.upper() == "POST" and isinstance(json, dict)
            and str(url).rstrip("/").endswith("/filter")):
        return {key: value for key, value in json.items() if value is not None}
    return json


def tolerate_null_filter_bodies() -> None:
    """Make Prefect's HTTP clients leave ``null`` top-level keys out of filter requests.

    Idempotent, and a no-op in effect once the server accepts ``null`` again.
    """
    global _PATCHED
    if _PATCHED:
        return
    from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

    for cls in (PrefectHttpxAsyncClient, PrefectHttpxSyncClient):
        original = cls.build_request

        def build_request(self, method, url, *args, _original=original, **kwargs):
            if "json" in kwargs:
                kwargs["json"] = _without_null_filter_keys(method, url, kwargs["json"])
            return _original(self, method, url, *args, **kwargs)

        cls.build_request = build_request
    _PATCHED = True


def prefect_cli() -> None:
    """Run the ``prefect`` command line (arguments from ``sys.argv[1:]``) with the workaround."""
    tolerate_null_filter_bodies()
    from prefect.cli import app

    sys.argv[0] = "prefect"
    sys.exit(app())

"""The Prefect API a command talks to: a running server, or a temporary one it owns.

With ``PREFECT_API_URL`` set, flows talk to that server; ``start_temporary_api`` only
checks that something answers there (``check_api``), so a server that is down is one
line and exit code 4, not a traceback from deep inside the first flow.
Without it, Prefect starts a temporary API server (uvicorn, a child process) the first
time a flow needs one, waits ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (20 s
by default) for it to answer, and stops it when the process exits. Two things go wrong
with that on a busy host:

- 20 s is too short: a first run with a new ``PREFECT_HOME`` creates the database, and
  with the load at 3-7 on 2 cores the start alone took longer, so the run died with a
  traceback before it had read anything.
- A process killed with SIGKILL runs no exit handlers, so its server lived on as an
  orphan (~250 MB), holding the dead process's stdout and stderr open: whoever waited
  for that output waited forever.

``start_temporary_api`` starts that server before any flow runs, in the same way and
with the same settings as Prefect does, with two differences: it waits
``DEFAULT_STARTUP_SECONDS`` unless the user set Prefect's variable (theirs wins), and
the server is started through a launcher that asks the Linux kernel to kill it when the
process that started it dies (``prctl(PR_SET_PDEATHSIG)``), however that process dies.
It registers the server where Prefect's own code looks for its temporary server
(as ``prefect.testing.utilities.prefect_test_harness`` does), so every Prefect client in
the process uses it and none starts another. Prefect stops it at normal exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from tasks.errors import APIUnreachableError, TemporaryAPIError  # noqa: F401 - raised here

# How long a server named by PREFECT_API_URL may take to accept a connection: long
# enough for one that is still starting on a busy host, short enough that a command
# run while the server is down says so promptly.
API_WAIT_SECONDS = 15.0

# Seconds to wait for the temporary API to answer when the user did not set
# PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS. A first start (database creation)
# took about 30 s on a quiet 2-core host and several times that under load; waiting
# longer costs nothing when the server is up sooner.
DEFAULT_STARTUP_SECONDS = 180
TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"

# Runs in the server's process before uvicorn. PR_SET_PDEATHSIG (1) makes the kernel send
# SIGKILL to this process when the thread that started it exits, which for a server
# started from the main thread means when the command's process dies, even by SIGKILL.
# If the parent is already gone (it died before prctl), there is nobody to serve. Then
# exec the uvicorn command: the death signal survives exec, and the process stays the
# child Prefect knows. On other systems nothing is asked of the kernel.
_LAUNCHER = """\
import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""




def startup_seconds(settings=None) -> int:
    """How long to wait for the temporary API: the user's own
    ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (environment or Prefect profile)
    if they set one, else ``DEFAULT_STARTUP_SECONDS``. ``settings``: Prefect's settings
    object to read (default: the current ones)."""
    if settings is None:
        from prefect.settings import get_current_settings

        settings = get_current_settings()
    ephemeral = settings.server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return ephemeral.startup_timeout_seconds
    return DEFAULT_STARTUP_SECONDS


def die_with_parent(command: list[str]) -> list[str]:
    """``command`` (``[python, args...]``) run so that it is killed when this process dies.

    Start the result from the main thread: the kernel's parent-death signal follows the
    thread that started the child, not the whole process.
    """
    return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *command[1:]]


def _guarded_server_class():
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class GuardedServer(SubprocessASGIServer):
        """Prefect's temporary server, started so that it dies with this process."""

        def __new__(cls, *args, **kwargs):
            # Not through Prefect's per-port registry: start_temporary_api registers it.
            return object.__new__(cls)

        def _run_uvicorn_command(self) -> subprocess.Popen:
            # The command and environment of Prefect 3.8.8's own
            # SubprocessASGIServer._run_uvicorn_command, started through the launcher.
            import prefect

            command = [sys.executable, "-m", "uvicorn",
                       "--app-dir", str(prefect.__module_path__.parent),
                       "--factory", "prefect.server.api.server:create_app",
                       "--host", "127.0.0.1", "--port", str(self.port),
                       "--log-level", "error", "--lifespan", "on"]
            environment = {**os.environ, "PREFECT_UI_ENABLED": "0",
                           "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
                           **get_current_settings().to_environment_variables(exclude_unset=True)}
            return subprocess.Popen(die_with_parent(command), env=environment)

    return GuardedServer


def start_temporary_api() -> str | None:
    """Make sure the flows of this process have a Prefect API; return its URL.

    With ``PREFECT_API_URL`` set (a real server, or a test harness) it returns that and
    starts nothing. Otherwise it starts the temporary server (see the module's
    docstring) and waits ``startup_seconds()`` for it. Call it from the main thread
    before the first flow runs. Raises ``TemporaryAPIError`` with a one-line message
    if the server does not answer in time; nothing has been read or moved by then.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, get_current_settings

    if PREFECT_API_URL.value():
        check_api(PREFECT_API_URL.value())
        return PREFECT_API_URL.value()
    if not get_current_settings().server.ephemeral.enabled:
        return None  # no-server mode turned off: Prefect itself says a URL is needed
    current = SubprocessASGIServer._instances.get(None)
    if current is not None and current.running:
        return current.api_url
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start_temporary_api() must run in the main thread (the server's "
                           "parent-death signal follows the thread that started it)")
    server = _guarded_server_class()()
    seconds = startup_seconds()
    # Where Prefect's clients look for "the" temporary server (SubprocessASGIServer()).
    SubprocessASGIServer._instances[None] = server
    try:
        server.start(timeout=seconds)
    except Exception as exc:
        server.stop()  # a server still starting is not left behind
        raise TemporaryAPIError(
            f"the temporary Prefect API server did not answer within {seconds} s (a busy "
            f"host or a first run with a new PREFECT_HOME); nothing was read or moved. "
            f"Either run `make server` in another terminal and set "
            f"PREFECT_API_URL=http://127.0.0.1:4200/api, or wait longer with "
            f"{TIMEOUT_VARIABLE}={max(2 * seconds, 600)}. ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})") from exc
    return server.api_url


def check_api(url: str, wait_seconds: float = API_WAIT_SECONDS) -> None:
    """Raise ``APIUnreachableError`` unless something answers HTTP at ``url``.

    Any HTTP answer counts, 401 and 404 included: Prefect Cloud wants credentials for
    its health route, and whether the API works is for Prefect's client to say. Only
    no answer at all (refused, timed out, unknown host) within ``wait_seconds`` fails.
    """
    import httpx

    deadline = time.monotonic() + wait_seconds
    health = url.rstrip("/") + "/health"
    while True:
        try:
            httpx.get(health, timeout=5.0)
            return
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        if time.monotonic() >= deadline:
            raise APIUnreachableError(
                f"the Prefect API at {url} (PREFECT_API_URL) did not answer within "
                f"{wait_seconds:g} s ({problem}); nothing was read or moved. Start that server "
                f"(`make server`), or unset PREFECT_API_URL and this command starts a "
                f"temporary one of its own.")
        time.sleep(0.5)

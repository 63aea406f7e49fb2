"""The Prefect API a command talks to: a running server, or a temporary one it owns.

With ``PREFECT_API_URL`` set, flows talk to that server; ``PrefectAPI.connect`` only
checks that something answers there (``check_api``), so a server that is down is one
line and exit code 4, not a traceback from deep inside the first flow.
Without it, Prefect would start a temporary API server (uvicorn, a child process) the
first time a flow needs one, wait ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
(20 s by default) for it to answer, and stop it when the process exits. Three things go
wrong with that:

- That wait is too short on a busy host: a first run with a new ``PREFECT_HOME``
  creates the database, and the start alone can take longer, so the run would die
  with a traceback before it had read anything.
- A process killed with SIGKILL runs no exit handlers, so its server would live on as
  an orphan, holding the dead process's stdout and stderr open: whoever waited for
  that output would wait forever.
- It is slow to start where it starts: inside the first flow, after this process has
  imported Prefect's whole server package (FastAPI, SQLAlchemy, the database layer)
  only to launch a child that imports it again.

So a command starts that server itself, as early as it can: ``PrefectAPI.launch()``
runs the same uvicorn command with the same environment as Prefect 3.8.8's
``SubprocessASGIServer``, without importing the server package here, while this
process goes on importing Prefect's client, TensorFlow and Great Expectations on the
other core. ``connect()`` then waits for it, ``startup_seconds()`` at most (Prefect's
variable if the user set it, else ``DEFAULT_STARTUP_SECONDS``), and points this
process's Prefect settings and environment at it, as ``prefect_test_harness`` does, so
no Prefect client starts a server of its own. The child is started through a launcher
that asks the Linux kernel to kill it when this process dies, however it dies
(``prctl(PR_SET_PDEATHSIG)``); at normal exit it is stopped like Prefect stops its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import sys
import threading
import time

from tasks.errors import APIUnreachableError, TemporaryAPIError

# How long a server named by PREFECT_API_URL may take to accept a connection: long
# enough for one that is still starting on a busy host, short enough that a command
# run while the server is down says so promptly.
API_WAIT_SECONDS = 15.0

# Seconds to wait for the temporary API to answer when the user did not set
# PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS. A first start (database creation)
# can take many times Prefect's default on a small, busy host; waiting longer costs
# nothing when the server is up sooner.
DEFAULT_STARTUP_SECONDS = 180
TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"

# uvicorn exits with 3 when its port was taken between choosing it and binding it.
_PORT_TAKEN_EXIT = 3

# Runs in the server's process before uvicorn. PR_SET_PDEATHSIG (1) makes the kernel send
# SIGKILL to this process when the thread that started it exits, which for a server
# started from the main thread means when the command's process dies, even by SIGKILL.
# If the parent is already gone (it died before prctl), there is nobody to serve. Then
# exec the uvicorn command: the death signal survives exec.
# On other systems nothing is asked of the kernel.
_LAUNCHER = """\
import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""

log = logging.getLogger("prefect")  # where Prefect logs its own temporary server


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


class PrefectAPI:
    """The Prefect API of one command: the user's server, or a temporary one.

    ``launch()`` (main thread, before the heavy imports) starts the temporary server if
    one is needed; ``connect()`` (before the first flow) waits until the API answers.
    """

    def __init__(self, url: str | None):
        self.url = url
        self._server: subprocess.Popen | None = None  # the temporary server, if started
        self._port: int | None = None

    @classmethod
    def launch(cls) -> PrefectAPI:
        """The user's ``PREFECT_API_URL`` if set; else start the temporary server now.

        Raises ``RuntimeError`` off the main thread (see ``die_with_parent``).
        """
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        if settings.api.url:
            return cls(settings.api.url)
        if not settings.server.ephemeral.enabled:
            return cls(None)  # no-server mode turned off: Prefect itself says a URL is needed
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("PrefectAPI.launch() must run in the main thread (the server's "
                               "parent-death signal follows the thread that started it)")
        api = cls(None)
        api._start_server()
        atexit.register(api.stop)
        return api

    def _start_server(self) -> None:
        import prefect
        from prefect.settings import get_current_settings

        self._port = _free_port()
        self.url = f"http://127.0.0.1:{self._port}/api"
        # Prefect 3.8.8's SubprocessASGIServer._run_uvicorn_command, through the launcher.
        command = [sys.executable, "-m", "uvicorn",
                   "--app-dir", str(prefect.__module_path__.parent),
                   "--factory", "prefect.server.api.server:create_app",
                   "--host", "127.0.0.1", "--port", str(self._port),
                   "--log-level", "error", "--lifespan", "on"]
        environment = {**os.environ, "PREFECT_UI_ENABLED": "0",
                       "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
                       **get_current_settings().to_environment_variables(exclude_unset=True)}
        # A process group of its own: Ctrl-C at a terminal signals the whole foreground
        # group, and a server stopped by it left this process retrying its crash report
        # against it for minutes, then a traceback. It still stops at exit (stop()) and
        # dies with this process (the launcher's parent-death signal).
        self._server = subprocess.Popen(die_with_parent(command), env=environment,
                                        process_group=0)

    def connect(self) -> str | None:
        """Wait until the API answers and point this process's Prefect at it; its URL.

        Raises ``APIUnreachableError`` (the user's server) or ``TemporaryAPIError`` (the
        temporary one, which is then stopped), each with a one-line message; nothing has
        been read or moved by then.
        """
        if self._server is None:
            if self.url is not None:
                check_api(self.url)
            return self.url
        seconds = startup_seconds()
        # Logged here, not at launch: Prefect's logging is set up by now. Said once, in
        # place of the per-run link to this server's UI, which is gone when the command is.
        log.info("Starting temporary server on http://127.0.0.1:%s (set PREFECT_API_URL to "
                 "use a running server instead); it stops when this command ends, and the "
                 "records of its runs stay in %s: to browse them, run `make server` and set "
                 "PREFECT_API_URL=http://127.0.0.1:4200/api before the next command",
                 self._port, records_location())
        try:
            self._wait_for_server(seconds)
        except Exception as exc:
            self.stop()  # a server still starting is not left behind
            raise TemporaryAPIError(
                f"the temporary Prefect API server did not answer within {seconds} s (a busy "
                f"host or a first run with a new PREFECT_HOME); nothing was read or moved. "
                f"Either run `make server` in another terminal and set "
                f"PREFECT_API_URL=http://127.0.0.1:4200/api, or wait longer with "
                f"{TIMEOUT_VARIABLE}={max(2 * seconds, 600)}. ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})") from exc
        self._point_prefect_here()
        return self.url

    def _wait_for_server(self, seconds: float) -> None:
        import httpx

        deadline = time.monotonic() + seconds
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                code = self._server.poll()
                if code == _PORT_TAKEN_EXIT:  # lost a race for the port: a new one
                    self._start_server()
                    continue
                if code is not None:
                    raise RuntimeError(f"the server process exited with code {code}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"no answer from {self.url}/health")

    def _point_prefect_here(self) -> None:
        # The settings of this thread (and of the threads and tasks Prefect starts from
        # it, which copy its context), and the environment: a Settings() built later and
        # a child process (a Dask worker) read it there.
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

        # No UI URL: Prefect then prints no "View at http://127.0.0.1:…/runs/…" link per
        # run, a link to a server that stops with the command (connect() says where the
        # records go instead). A user's own server (PREFECT_API_URL) keeps its links.
        os.environ["PREFECT_API_URL"] = self.url
        os.environ["PREFECT_UI_URL"] = ""
        self._settings = temporary_settings(updates={PREFECT_API_URL: self.url,
                                                     PREFECT_UI_URL: ""})
        self._settings.__enter__()  # for the rest of the process: exit handlers use it too

    def stop(self) -> None:
        """Stop the temporary server (TERM, then KILL after 5 s); nothing for a user's."""
        server, self._server = self._server, None
        if server is None or server.poll() is not None:
            return
        log.info("Stopping temporary server on http://127.0.0.1:%s", self._port)
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def records_location() -> str:
    """Where the temporary server keeps its runs: its SQLite file, or, for another
    database, the setting that names it (its URL may hold a password)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    url = url.get_secret_value() if url is not None else ""
    if url.startswith("sqlite"):
        return url.split(":///", 1)[-1]
    return "the database PREFECT_SERVER_DATABASE_CONNECTION_URL names"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_api(url: str, wait_seconds: float = API_WAIT_SECONDS) -> None:
    """Raise ``APIUnreachableError`` unless something answers HTTP at ``url``, and
    ``APIRefusedError`` if it answers 401 to this process's credentials.

    Any answer of the health route counts, 401 and 404 included: Prefect Cloud wants
    credentials for its health route, and whether the API works is for Prefect's client
    to say. Only no answer at all (refused, timed out, unknown host) within
    ``wait_seconds`` fails. Then ``check_credentials`` and ``check_ready``.
    """
    import httpx

    deadline = time.monotonic() + wait_seconds
    health = url.rstrip("/") + "/health"
    while True:
        try:
            httpx.get(health, timeout=5.0)
            break
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        if time.monotonic() >= deadline:
            raise APIUnreachableError(
                f"the Prefect API at {url} (PREFECT_API_URL) did not answer within "
                f"{wait_seconds:g} s ({problem}); nothing was read or moved. Start that server "
                f"(`make server`), or unset PREFECT_API_URL and this command starts a "
                f"temporary one of its own.")
        time.sleep(0.5)
    # Something answers. A probe below that gets no answer in time (a loaded host) is
    # not a failure: only the server's own 401 or 503 is; else Prefect's client goes on.
    try:
        check_credentials(url)
        check_ready(url)
    except httpx.HTTPError:
        pass


class APIRefusedError(APIUnreachableError):
    """The Prefect API answers, but 401 to this process's PREFECT_API_AUTH_STRING."""


def check_credentials(url: str) -> None:
    """Raise ``APIRefusedError`` if ``url`` answers 401 to the request Prefect's client
    makes first (``/admin/version``, its API version check), sent with the header that
    client sends (``PREFECT_API_AUTH_STRING`` as basic auth, else ``PREFECT_API_KEY``).

    A server with ``PREFECT_SERVER_API_AUTH_STRING`` leaves its health route open, so a
    missing or wrong string passes ``check_api``'s probe; without this check the first
    flow would end in Prefect's traceback of that 401. Any other answer is left to
    Prefect's client.
    """
    import base64

    import httpx
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    auth_string, api_key = PREFECT_API_AUTH_STRING.value(), PREFECT_API_KEY.value()
    headers = {}
    if auth_string:
        headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
    elif api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    answer = httpx.get(url.rstrip("/") + "/admin/version", headers=headers, timeout=10.0)
    if answer.status_code != 401:
        return
    given = ("PREFECT_API_AUTH_STRING is not the server's" if auth_string
             else "PREFECT_API_KEY was refused" if api_key
             else "PREFECT_API_AUTH_STRING is not set")
    raise APIRefusedError(
        f"the Prefect API at {url} (PREFECT_API_URL) answered 401 Unauthorized: it asks for "
        f"a password and {given}; nothing was read or moved. Export "
        "PREFECT_API_AUTH_STRING=user:password, the server's PREFECT_SERVER_API_AUTH_STRING "
        "(deployments/README.md).")


def check_ready(url: str) -> None:
    """Raise ``APIUnreachableError`` if the server says it is not ready: Prefect's
    ``/ready`` answers 503 when the server cannot reach its own database (PostgreSQL
    down), while ``/health`` still answers 200. Without this check the first flow would
    end in Prefect's traceback of a 500. Any other answer (a server without the route)
    is left to Prefect's client."""
    import httpx

    answer = httpx.get(url.rstrip("/") + "/ready", timeout=10.0)
    if answer.status_code != 503:
        return
    raise APIUnreachableError(
        f"the Prefect API at {url} (PREFECT_API_URL) answers, but is not ready (503 from "
        "/ready): the server cannot reach its database (PREFECT_API_DATABASE_CONNECTION_URL "
        "on the server's host); nothing was read or moved. Start that database, or look in "
        "the server's log, then run again.")

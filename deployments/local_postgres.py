"""A throwaway PostgreSQL 15 cluster on this machine: ``make postgres``, the tests'
cluster (tests/postgres.py) and the benchmarks' (section ``shared_state``).

``Cluster(folder).start()`` runs ``initdb`` (password authentication, scram-sha-256, one
superuser with a password: the product must pass a password the way a real
deployment does) and ``postgres`` on a free port of 127.0.0.1 (or of the addresses
it is given), then waits until it accepts connections. PostgreSQL refuses to run as
root, so as root its binaries run as the ``postgres`` user, the folder handed to it.
The server asks the kernel to be SIGKILLed when the thread that started it dies
(``PR_SET_PDEATHSIG``, as flows/prefect_api.py does for Prefect's server): a process
killed outright leaves no server behind.

``python -m deployments.local_postgres FOLDER`` (``make postgres``) starts one in FOLDER
(kept between runs), prints its URL and serves in the foreground until Ctrl-C. It is a
convenience for trying ``REVIEWFLOW_STATE_URL`` on one machine, with a fixed password
and ``fsync=off``: never a database to keep data in.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Where Debian's postgresql-15 package puts its programs (the version the project tests with).
BIN = Path("/usr/lib/postgresql/15/bin")
USER = "reviewflow"
PASSWORD = "rf-test-secret-7Q"  # distinctive, so a test can look for it in output
READY_SECONDS = 120  # generous: a loaded 2-core host starts a cluster in seconds, not minutes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> str | None:
    """None if a cluster can be started here, else why not."""
    missing = [name for name in ("initdb", "postgres") if not (BIN / name).exists()]
    if missing:
        return f"PostgreSQL binaries {', '.join(missing)} not found in {BIN}: install PostgreSQL 15 (Debian: apt-get install postgresql-15)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
    return None


class Cluster:
    """``listen`` is the addresses the server takes connections on, the first one the
    host in its URLs; ``hba`` is extra ``pg_hba.conf`` lines (e.g. one that lets a
    subnet in with a password). Both exist for a test whose clients come from other
    network namespaces (tests/netns.py); by default only 127.0.0.1 is served."""

    def __init__(self, folder: Path, port: int | None = None, *,
                 listen: tuple[str, ...] = ("127.0.0.1",), hba: tuple[str, ...] = ()):
        self.folder = Path(folder)
        self.data = self.folder / "data"
        self.port = port or free_port()
        self.listen = tuple(listen)
        self.host = self.listen[0]
        self.hba = tuple(hba)
        self.process: subprocess.Popen | None = None
        self._as = _run_as()

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@{self.host}:{self.port}/{database}"

    def start(self) -> Cluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._allow(self.hba)
        log = open(self.folder / "server.log", "ab")
        command = [str(BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                   "-c", f"listen_addresses={','.join(self.listen)}",
                   "-c", "unix_socket_directories=",
                   "-c", "max_connections=200", "-c", "fsync=off"]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=_server_child(os.getpid()))
        log.close()
        self._wait_ready()
        return self

    def _initdb(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        secret = self.folder / "pwfile"
        secret.write_text(PASSWORD + "\n")
        if self._as:
            for path in (self.folder, self.data, secret):
                shutil.chown(path, "postgres", "postgres")
        os.chmod(self.data, 0o700)
        done = subprocess.run(
            [str(BIN / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={secret}",
             "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            capture_output=True, text=True, **self._as)
        secret.unlink()
        if done.returncode:
            raise RuntimeError(f"initdb failed in {self.data}:\n{done.stdout}\n{done.stderr}")

    def _allow(self, lines: tuple[str, ...]) -> None:
        """Append the ``pg_hba.conf`` lines not there yet (a kept folder starts again)."""
        if not lines:
            return
        hba = self.data / "pg_hba.conf"
        present = set(hba.read_text().splitlines())
        missing = [line for line in lines if line not in present]
        if missing:
            with hba.open("a") as out:  # appending keeps the postgres user's ownership
                out.write("".join(line + "\n" for line in missing))

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + READY_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; see "
                                   f"{self.folder / 'server.log'}")
            try:
                psycopg.connect(self.url, connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres on port {self.port} not ready after "
                                       f"{READY_SECONDS} s; see {self.folder / 'server.log'}"
                                       ) from None
                time.sleep(0.2)

    def create_database(self, name: str) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _run_as() -> dict:
    """Popen arguments that run a PostgreSQL binary as the postgres user when root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _server_child(parent: int):
    """The server process's set-up between fork and exec: become the postgres user if
    root, then ask for SIGKILL when the starting thread dies (after the switch of user,
    which clears that request). A parent already gone has nobody to serve."""
    def setup() -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(0)
    return setup


def temporary_cluster(**options) -> Cluster:
    """A started cluster in a fresh folder under the system's temporary folder (a folder
    the postgres user can reach, unlike pytest's 0700 ones); ``options`` go to
    ``Cluster`` (``listen``, ``hba``)."""
    folder = Path(tempfile.mkdtemp(prefix="reviewflow-pg-"))
    os.chmod(folder, 0o755)
    return Cluster(folder, **options).start()


def main(argv: list[str]) -> int:
    if (why := available()) is not None:
        print(why, file=sys.stderr)
        return 1
    folder = Path(argv[0] if argv else ".postgres").resolve()
    if _run_as():
        # The postgres user must reach the folder through its parents.
        for parent in folder.parents:
            if not os.stat(parent).st_mode & 0o001:
                print(f"{parent} is not searchable by the postgres user; pick a folder "
                      "under one that is (e.g. /tmp)", file=sys.stderr)
                return 1
    port_file = folder / "port"
    port = int(port_file.read_text()) if port_file.exists() else None
    cluster = Cluster(folder, port=port)
    try:
        cluster.start()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    port_file.write_text(f"{cluster.port}\n")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop it cleanly on kill too
    print(f"PostgreSQL {folder} is ready. Use:\n"
          f"  export REVIEWFLOW_STATE_URL={cluster.url_for('postgres', password=False)}\n"
          f"  export PGPASSWORD={PASSWORD}\n"
          "Ctrl-C stops it (the data stays in the folder).", flush=True)
    try:
        cluster.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Separate "hosts" on one machine: Linux network namespaces on a bridge (needs root).

``hosts(n)`` makes ``n`` network namespaces, each with its own loopback and one veth
whose other end is on a bridge that holds the host's address on a private /24
(``10.231.X.1``; the namespaces are ``.2``, ``.3``, ...). A process started with
``Network.exec(i, command)`` (``ip netns exec``, which execs, so the pid is the
command's own) reaches the host only through that address, as a second machine on the
same LAN would: the host's 127.0.0.1 is not its 127.0.0.1. A server a test wants them
to reach listens on ``Network.address``; ``forward`` relays a loopback-only one (the
session's Prefect server) onto it.

Names carry the creating process's pid (``rfn<pid>...``), so concurrent runs do not
collide, and whatever a run killed before its teardown left behind (a namespace, a
veth, a bridge whose pid is gone) is removed by the next ``hosts``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

PREFIX = "rfn"
_OURS = re.compile(rf"^{PREFIX}(\d+)[bhn-]")
OCTET = 231  # 10.231.X.0/24: a private range nothing on a test machine is expected to use


def unavailable() -> str | None:
    """None if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    bridge = f"{PREFIX}{os.getpid()}b"
    made = _ip("link", "add", bridge, "type", "bridge", check=False)
    if made.returncode:
        return f"`ip link add ... type bridge` failed: {made.stderr.strip()}"
    _ip("link", "del", bridge, check=False)
    return None


@dataclass
class Network:
    address: str  # the host's end, on the bridge: servers for the namespaces listen here
    subnet: str
    bridge: str
    namespaces: list[str] = field(default_factory=list)

    def exec(self, i: int, command: list[str]) -> list[str]:
        """``command`` run in namespace ``i`` (same pid: ``ip netns exec`` execs it)."""
        return ["ip", "netns", "exec", self.namespaces[i], *command]

    def inode(self, i: int) -> int:
        """The network namespace ``i`` as the kernel names it (compare /proc/PID/ns/net)."""
        return os.stat(f"/run/netns/{self.namespaces[i]}").st_ino

    def reaches(self, i: int, targets: list[tuple[str, int]], timeout: float = 3.0
                ) -> list[bool]:
        """For each ``(host, port)``, whether a TCP connection to it from namespace ``i``
        is accepted (one process in the namespace tries them all)."""
        probe = ("import socket, sys\n"
                 f"for target in {targets!r}:\n"
                 "    try:\n"
                 f"        socket.create_connection(target, {timeout}).close()\n"
                 "        print(1)\n"
                 "    except OSError:\n"
                 "        print(0)\n")
        done = subprocess.run(self.exec(i, [sys.executable, "-c", probe]), check=True,
                              capture_output=True, text=True,
                              timeout=timeout * len(targets) + 60)
        return [line == "1" for line in done.stdout.split()]


def namespace_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


@contextlib.contextmanager
def hosts(count: int) -> Iterator[Network]:
    """``count`` namespaces on a fresh bridge; all of it removed on exit, failure included.
    Processes still inside a namespace keep it alive: stop them before leaving."""
    clean_leftovers()
    tag = f"{PREFIX}{os.getpid()}"
    block = _free_block()
    net = Network(address=f"10.{OCTET}.{block}.1", subnet=f"10.{OCTET}.{block}.0/24",
                  bridge=f"{tag}b")
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.address}/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        for i in range(count):
            name, outer, inner = f"{tag}-{i}", f"{tag}h{i}", f"{tag}n{i}"
            _ip("netns", "add", name)
            net.namespaces.append(name)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", name)
            _ip("link", "set", outer, "master", net.bridge, "up")
            _ip("-n", name, "addr", "add", f"10.{OCTET}.{block}.{i + 2}/24", "dev", inner)
            _ip("-n", name, "link", "set", inner, "up")
            _ip("-n", name, "link", "set", "lo", "up")  # its own loopback, for its own use
        yield net
    finally:
        _remove(tag)


def clean_leftovers() -> None:
    """Remove namespaces and links of our prefix whose creating process is gone."""
    for pid in {int(m.group(1)) for name in _our_names() if (m := _OURS.match(name))}:
        if not _alive(pid):
            _remove(f"{PREFIX}{pid}")


def _remove(tag: str) -> None:
    """Every namespace and link named ``tag...`` (a namespace takes its veth end with it;
    the kernel frees the other end lazily, so it is deleted by name too)."""
    namespaces, links = _names()
    for name in namespaces:
        if _matches(name, tag):
            _ip("netns", "del", name, check=False)
    for name in links:
        if _matches(name, tag):
            _ip("link", "del", name, check=False)


def _matches(name: str, tag: str) -> bool:
    return name.startswith(tag) and name[len(tag):len(tag) + 1] in ("b", "h", "n", "-")


def _our_names() -> list[str]:
    namespaces, links = _names()
    return [n for n in namespaces + links if n.startswith(PREFIX)]


def _names() -> tuple[list[str], list[str]]:
    listed = _ip("netns", "list", check=False).stdout.splitlines()
    namespaces = [line.split()[0] for line in listed if line.strip()]
    links = [line.split(":")[1].strip().split("@")[0]
             for line in _ip("-o", "link", "show", check=False).stdout.splitlines()]
    return namespaces, links


def _free_block() -> int:
    """A third octet no address on this host uses (starting from one derived from the
    pid, so that concurrent runs rarely even try the same one)."""
    used = set(re.findall(rf"inet 10\.{OCTET}\.(\d+)\.",
                          _ip("-o", "-4", "addr", "show", check=False).stdout))
    start = os.getpid() % 254
    for k in range(254):
        block = (start + k) % 254 + 1
        if str(block) not in used:
            return block
    raise RuntimeError(f"every 10.{OCTET}.X.0/24 is in use on this host")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


@contextlib.contextmanager
def forward(address: str, target: tuple[str, int]) -> Iterator[int]:
    """Relay TCP connections made to ``address`` (a free port, yielded) to ``target``."""
    listener = socket.create_server((address, 0))
    listener.settimeout(0.5)
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # pass the end of one direction on
        except OSError:  # either side gone: the other direction ends with it
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def serve(client: socket.socket) -> None:
        with client:
            try:
                upstream = socket.create_connection(target, timeout=30)
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                client.settimeout(None)
                back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
                back.start()
                pump(client, upstream)
                back.join()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join()
        listener.close()

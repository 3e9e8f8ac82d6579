"""Open TCP sockets inside a network namespace without starting any process.

``setns(2)`` changes the namespace of the calling *thread* only, so a short-lived
dedicated thread enters the namespace, creates and connects the socket, and
exits. A socket stays bound to the namespace it was created in, so the caller's
thread (and the rest of the process) keeps its own namespace. This is how the
emulated lab reaches sshd inside its namespaces.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from pyroute2 import netns as pr_netns

NETNS_RUN_DIR = "/var/run/netns"

T = TypeVar("T")

def netns_path(name: str) -> str:
    """Where iproute2 keeps the namespace handle; a path is accepted as is."""
    if "/" in name:
        return name
    return os.path.join(NETNS_RUN_DIR, name)


def call_in_netns(name: str, func: Callable[[], T], timeout: float | None = None) -> T:
    """Run ``func`` in a fresh thread that has joined network namespace ``name``.

    Raises ``FileNotFoundError`` when the namespace does not exist, ``OSError``
    when setns fails, ``TimeoutError`` when ``func`` outlives ``timeout``, and
    re-raises whatever ``func`` raised.
    """
    path = netns_path(name)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # FileNotFoundError names the path
    value: list[T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            pr_netns.setns(fd, flags=0)  # this thread only; the fd stays ours to close
            value.append(func())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    try:
        thread = threading.Thread(target=worker, name=f"netns-{name}", daemon=True)
        thread.start()
        thread.join(timeout)
    finally:
        os.close(fd)
    if thread.is_alive():
        raise TimeoutError(f"netns {name}: call did not finish within {timeout} s")
    if error:
        raise error[0]
    return value[0]


def connect_tcp(
    address: str, port: int, timeout: float, netns: str | None = None, nodelay: bool = True
) -> socket.socket:
    """A connected TCP socket, created inside ``netns`` when given.

    TCP_NODELAY is set by default: a request/response protocol like SSH would
    otherwise pay Nagle plus delayed-ACK (~40 ms) on many small writes.
    """

    def make() -> socket.socket:
        sock = socket.create_connection((address, port), timeout=timeout)
        try:
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return sock

    if netns is None:
        return make()
    # the thread join gets a little slack over the connect timeout itself
    return call_in_netns(netns, make, timeout=timeout + 5.0)


def free_tcp_port(address: str = "127.0.0.1", netns: str | None = None) -> int:
    """A port that was free a moment ago (the usual race applies: retry on bind failure)."""

    def pick() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
            return int(sock.getsockname()[1])

    return pick() if netns is None else call_in_netns(netns, pick, timeout=10.0)

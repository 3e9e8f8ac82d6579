"""Processes the emulated lab starts: pidfiles, ownership checks and stops by pid.

A pid read from a pidfile may be stale (the daemon died, the pid was reused), so
nothing is killed unless ``/proc/PID/cmdline`` names the lab's state directory:
every daemon the lab starts carries that path on its command line. Exited
daemons can stay zombies for a second or two before PID 1 reaps them; a zombie
counts as stopped.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from vdpalab.processes import pid_running, pid_start_time, wait_pid_stopped

__all__ = [
    "cmdline",
    "netns_inode",
    "pid_is_ours",
    "pid_running",
    "pids_in_netns",
    "read_pidfile",
    "stop_ours",
    "wait_pid_stopped",
]


def read_pidfile(path: Path) -> int | None:
    """The pid in ``path``, None when the file is missing or not a number."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cmdline(pid: int) -> str:
    """The process's argv joined by spaces ('' when it is gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace").strip()


def pid_is_ours(pid: int | None, marker: str) -> bool:
    """True when ``pid`` runs (not a zombie) and its command line contains ``marker`` (the state dir)."""
    if not pid or pid <= 1 or pid == os.getpid():
        return False
    return pid_running(pid) and marker in cmdline(pid)


def stop_ours(pid: int | None, marker: str, timeout: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``, a pid verified to be ours.

    Returns True when a process was stopped, False when there was nothing (of ours) to stop.
    """
    if not pid_is_ours(pid, marker):
        return False
    assert pid is not None
    started = pid_start_time(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if pid_start_time(pid) != started:  # reaped and reused meanwhile: not ours any more
            return True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        if wait_pid_stopped(pid, timeout, interval=0.005):
            return True
    return True


def netns_inode(name: str) -> int | None:
    """The inode of a named network namespace (as in ``/proc/PID/ns/net``), None when absent."""
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def pids_in_netns(inodes: set[int]) -> list[int]:
    """Live processes whose network namespace is one of ``inodes``."""
    found: list[int] = []
    if not inodes:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            link = os.readlink(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        # "net:[4026532281]"
        try:
            inode = int(link[link.index("[") + 1 : -1])
        except ValueError:
            continue
        if inode in inodes and pid_running(int(entry)):
            found.append(int(entry))
    return found


def kill_and_wait(pids: list[int], timeout: float = 3.0) -> None:
    """SIGKILL ``pids`` (already known to be the lab's) and wait until each has stopped."""
    starts = {pid: pid_start_time(pid) for pid in pids}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        if pid_start_time(pid) == starts[pid]:
            wait_pid_stopped(pid, max(0.0, deadline - time.monotonic()), interval=0.005)

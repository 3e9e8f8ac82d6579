"""Processes the suite started, by pid (psutil): state, start time, descendants, stopping.

A pid alone names a process only while it lives; with its start time it names one process across
pid reuse, so nothing is ever signalled that the suite did not start. A zombie (exited, not yet
reaped) counts as stopped: ``kill -0`` would still succeed on it.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

# psutil's status names -> the /proc/PID/stat letters callers and messages use
_LETTERS = {
    psutil.STATUS_RUNNING: "R",
    psutil.STATUS_SLEEPING: "S",
    psutil.STATUS_DISK_SLEEP: "D",
    psutil.STATUS_STOPPED: "T",
    psutil.STATUS_TRACING_STOP: "t",
    psutil.STATUS_ZOMBIE: "Z",
    psutil.STATUS_DEAD: "X",
    psutil.STATUS_IDLE: "I",
    psutil.STATUS_PARKED: "P",
}


def pid_state(pid: int) -> str | None:
    """The state letter (R, S, D, Z, ...), None when there is no such process."""
    try:
        status = psutil.Process(pid).status()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return _LETTERS.get(status, "?")


def pid_start_time(pid: int) -> float | None:
    """When the process started (seconds since the epoch): with the pid, one process across pid reuse."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def pid_cmdline(pid: int) -> list[str]:
    """The process's argv ([] when it is gone or a zombie)."""
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def pid_running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    state = pid_state(pid)
    return state is not None and state not in ("Z", "X")


def wait_pid_stopped(pid: int, timeout: float, interval: float = 0.01) -> bool:
    """Wait until ``pid`` is gone or a zombie; True if it stopped within ``timeout``."""
    deadline = time.monotonic() + timeout
    while pid_running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid``, children first (breadth first)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        try:
            children = psutil.Process(todo.pop(0)).children()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for child in sorted(children, key=lambda p: p.pid):
            found.append(child.pid)
            todo.append(child.pid)
    return found


def stop_pid(pid: int, timeout: float = 5.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig``, wait, then SIGKILL; True when the process is gone (or a zombie)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    if wait_pid_stopped(pid, timeout):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return wait_pid_stopped(pid, timeout)

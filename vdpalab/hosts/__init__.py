"""Hosts: one interface (``Host``), two backends here (local, SSH); the scripted one is test code.

``SSHHost`` is imported lazily so that code that only needs ``LocalHost`` does not pay for
importing paramiko. ``ScriptedHost`` (a recorded transcript played back) lives in
``vdpalab.testing.scripted``: only the self-tests use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vdpalab.hosts.base import CommandHistory, CommandResult, HistoryEntry, Host, to_shell
from vdpalab.hosts.local import LocalHost

if TYPE_CHECKING:
    from vdpalab.hosts.ssh import SSHHost

__all__ = [
    "CommandHistory",
    "CommandResult",
    "HistoryEntry",
    "Host",
    "LocalHost",
    "SSHHost",
    "to_shell",
]


def __getattr__(name: str) -> Any:
    if name == "SSHHost":
        from vdpalab.hosts.ssh import SSHHost

        return SSHHost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

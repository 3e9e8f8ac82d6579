"""Hosts: one interface (``Host``), three backends (local, SSH, scripted).

``SSHHost`` is imported lazily so that code that only needs ``LocalHost`` or
``ScriptedHost`` does not pay for importing paramiko.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vdpalab.hosts.base import CommandHistory, CommandResult, HistoryEntry, Host, to_shell
from vdpalab.hosts.local import LocalHost
from vdpalab.hosts.scripted import ScriptedHost, ScriptMismatch, ScriptStep

if TYPE_CHECKING:
    from vdpalab.hosts.ssh import SSHHost

__all__ = [
    "CommandHistory",
    "CommandResult",
    "HistoryEntry",
    "Host",
    "LocalHost",
    "SSHHost",
    "ScriptMismatch",
    "ScriptStep",
    "ScriptedHost",
    "to_shell",
]


def __getattr__(name: str) -> Any:
    if name == "SSHHost":
        from vdpalab.hosts.ssh import SSHHost

        return SSHHost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

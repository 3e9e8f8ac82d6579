"""What one command did on a host: a plain record with no dependencies, so errors and hosts can both use it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    """What one command did: enough to judge it and to show it in a report."""

    host: str
    command: str
    rc: int
    stdout: str
    stderr: str
    started: float
    duration: float

    @property
    def ok(self) -> bool:
        return self.rc == 0

"""A host that replays an ordered script of expected commands and recorded results.

Self-tests use it to prove the exact command sequence a layer issues, and to
feed parsers and layers with real recorded tool output, without any machine.
Any unexpected or out-of-order command raises ``ScriptMismatch``;
``assert_done()`` fails if expected steps never ran.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, Unpack

from vdpalab.errors import CommandTimeout, HostKeyRejected, HostUnreachable
from vdpalab.hosts.base import CommandResult, Host

Raise = Literal["timeout", "unreachable", "host-key"]
RAISES: tuple[Raise, ...] = ("timeout", "unreachable", "host-key")


class ScriptedOptions(TypedDict, total=False):
    """ScriptedHost's keyword arguments, for the helpers that build one."""

    files: Mapping[str, bytes | str] | None
    needs_sudo: bool
    command_timeout: float
    sudo: bool


class ScriptMismatch(AssertionError):
    """The code under test issued a command the script did not expect (or not then)."""


@dataclass(frozen=True)
class ScriptStep:
    """One expected command and what it returns.

    ``expect`` is the exact command string, or a compiled regex that must match
    the whole command (``fullmatch``). ``stdout_file`` loads the recorded output
    from a file (read when the step is replayed). ``raises`` makes the step
    fail like a real host would: ``"timeout"``, ``"unreachable"`` or ``"host-key"`` (a key known_hosts does not pin).
    """

    expect: str | re.Pattern[str]
    rc: int = 0
    stdout: str = ""
    stderr: str = ""
    stdout_file: str | Path | None = None
    raises: Raise | None = None
    duration: float = 0.0

    def __post_init__(self) -> None:
        if self.raises is not None and self.raises not in RAISES:
            raise ValueError(f"ScriptStep.raises must be one of {RAISES} or None, not {self.raises!r}")
        if self.stdout and self.stdout_file is not None:
            raise ValueError("ScriptStep: give stdout or stdout_file, not both")

    def matches(self, command: str) -> bool:
        if isinstance(self.expect, re.Pattern):
            return self.expect.fullmatch(command) is not None
        return self.expect == command

    def describe(self) -> str:
        if isinstance(self.expect, re.Pattern):
            return f"/{self.expect.pattern}/"
        return repr(self.expect)

    def output(self) -> str:
        if self.stdout_file is not None:
            return Path(self.stdout_file).read_text(encoding="utf-8", errors="replace")
        return self.stdout


StepLike = ScriptStep | tuple[str | re.Pattern[str], str] | tuple[str | re.Pattern[str], str, int]


class ScriptedHost(Host):
    """Replays ``script`` in order; every ``run`` must match the next step.

    ``put``/``get`` work on an in-memory file store (``files``) and are logged
    in ``transfers``; they are not part of the command script.
    """

    def __init__(
        self,
        name: str,
        script: Iterable[ScriptStep],
        *,
        files: Mapping[str, bytes | str] | None = None,
        needs_sudo: bool = False,
        command_timeout: float = 60.0,
        sudo: bool = False,
    ) -> None:
        super().__init__(name, command_timeout, sudo=sudo)
        self.script: list[ScriptStep] = list(script)
        self.position = 0
        self.executed: list[str] = []
        self.files: dict[str, bytes] = {
            path: data.encode() if isinstance(data, str) else data for path, data in (files or {}).items()
        }
        self.transfers: list[tuple[str, str, str]] = []  # (op, local, remote)
        self._needs_sudo = needs_sudo
        self._lock = threading.Lock()

    @classmethod
    def from_pairs(cls, pairs: Iterable[StepLike], name: str = "scripted", **kwargs: Unpack[ScriptedOptions]
                   ) -> ScriptedHost:
        """Build from ``(command, stdout)`` or ``(command, stdout, rc)`` tuples (or ready ``ScriptStep``s).

        A stdout given as a ``Path`` is loaded from that file.
        """
        steps: list[ScriptStep] = []
        for item in pairs:
            if isinstance(item, ScriptStep):
                steps.append(item)
                continue
            expect, out, *rest = item
            rc = int(rest[0]) if rest else 0
            if isinstance(out, Path):
                steps.append(ScriptStep(expect, rc=rc, stdout_file=out))
            else:
                steps.append(ScriptStep(expect, rc=rc, stdout=out))
        return cls(name, steps, **kwargs)

    def needs_sudo(self) -> bool:
        return self._needs_sudo

    @property
    def remaining(self) -> list[ScriptStep]:
        with self._lock:
            return self.script[self.position :]

    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        with self._lock:
            index = self.position
            if index >= len(self.script):
                raise ScriptMismatch(
                    f"{self.name}: unexpected command #{index + 1} {command!r}: the script has only "
                    f"{len(self.script)} steps (already ran: {self.executed[-3:]!r})"
                )
            step = self.script[index]
            if not step.matches(command):
                later = [i for i in range(index + 1, len(self.script)) if self.script[i].matches(command)]
                order = f"; it matches step #{later[0] + 1}, so it came out of order" if later else ""
                raise ScriptMismatch(
                    f"{self.name}: command #{index + 1} was {command!r}, expected {step.describe()}{order}"
                )
            self.position += 1
            self.executed.append(command)
        if step.raises == "timeout":
            raise CommandTimeout(self.name, self.shown(command), timeout)
        if step.raises == "unreachable":
            raise HostUnreachable(self.name, self.shown(command), "scripted transport failure")
        if step.raises == "host-key":
            raise HostKeyRejected(self.name, self.shown(command), "host key rejected (scripted)")
        return CommandResult(
            host=self.name,
            command=command,
            rc=step.rc,
            stdout=step.output(),
            stderr=step.stderr,
            started=time.time(),
            duration=step.duration,
        )

    def assert_done(self) -> None:
        """Fail when expected commands never ran (the layer stopped early or skipped one)."""
        left = self.remaining
        if left:
            listing = ", ".join(step.describe() for step in left[:5]) + (" ..." if len(left) > 5 else "")
            raise ScriptMismatch(f"{self.name}: {len(left)} scripted step(s) never ran: {listing}")

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        self.files[str(remote_path)] = Path(local_path).read_bytes()
        self.transfers.append(("put", str(local_path), str(remote_path)))

    def get(self, remote_path: str, local_path: str) -> None:
        try:
            data = self.files[str(remote_path)]
        except KeyError:
            raise FileNotFoundError(2, f"{self.name}: no such scripted file", str(remote_path))
        Path(local_path).write_bytes(data)
        self.transfers.append(("get", str(local_path), str(remote_path)))

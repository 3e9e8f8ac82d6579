"""The machine the suite runs on: ``/bin/sh -c`` in a process group of its own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from vdpalab.errors import CommandTimeout, HostUnreachable
from vdpalab.hosts.base import CommandResult, Host

# after the kill, how long to wait for the pipes to close (a process that left
# the group with setsid could hold them open forever)
_DRAIN_AFTER_KILL = 5.0


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def _shell_rc(returncode: int) -> int:
    """Killed by signal N -> 128+N, like a shell reports it (and like the SSH backend)."""
    return 128 - returncode if returncode < 0 else returncode


class LocalHost(Host):
    """Run commands locally.

    Each command gets its own session (``start_new_session``) so that a timeout
    kills the whole process group it started, not only the shell.
    """

    def __init__(self, name: str = "local", command_timeout: float = 60.0, sudo: bool = False) -> None:
        super().__init__(name, command_timeout, sudo=sudo)

    def needs_sudo(self) -> bool:
        return os.geteuid() != 0

    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        started = time.time()
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:  # no /bin/sh, out of pids or fds
            raise HostUnreachable(self.name, self.shown(command), f"cannot start /bin/sh: {exc}")
        data = stdin.encode("utf-8") if stdin is not None else None
        try:
            out, err = proc.communicate(data, timeout=timeout)  # reads both pipes: no deadlock on big output
        except subprocess.TimeoutExpired:
            out, err = self._kill(proc)
            raise CommandTimeout(self.name, self.shown(command), timeout, _decode(out), _decode(err))
        except BaseException:  # KeyboardInterrupt and friends: leave nothing behind
            self._kill(proc)
            raise
        return CommandResult(
            host=self.name,
            command=command,
            rc=_shell_rc(proc.returncode),
            stdout=_decode(out),
            stderr=_decode(err),
            started=started,
            duration=time.monotonic() - t0,
        )

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
        """SIGKILL the whole process group, reap the shell, return what it printed."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            out, err = proc.communicate(timeout=_DRAIN_AFTER_KILL)
        except subprocess.TimeoutExpired:
            # a descendant escaped the group and keeps the pipes open: stop reading
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()
            out, err = b"", b""
        return out or b"", err or b""

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        shutil.copyfile(local_path, remote_path)
        if mode is not None:
            os.chmod(remote_path, mode)

    def get(self, remote_path: str, local_path: str) -> None:
        shutil.copyfile(remote_path, local_path)

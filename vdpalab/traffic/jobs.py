"""Background processes on a host (an iperf3 server, a sniffer), started and stopped by pid.

Why not a second blocking ``Host.run`` in a thread: the caller must know when the
process is *ready* (listening, sniffing) before it sends traffic, and must be able
to stop it even when the command that started it timed out. So each job gets a
private work directory on the host, runs detached in a session of its own
(``setsid``, so a timeout kill of another command's process group never hits it),
writes its output to files there, and is stopped by the pid the shell printed.
Only that pid is ever signalled, so a job should be one process (``exec`` in a shell
wrapper): children of a killed job are not hunted down.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vdpalab.errors import HostError
from vdpalab.hosts.base import Command, Host

# housekeeping commands (kill -0, cat, rm) wait only the host's quick_timeout: a dead host must not hang anybody


class JobError(HostError):
    """A background job could not be started, did not become ready, or failed.

    ``exited`` tells "it died" (worth a retry, e.g. a port race) from "it hangs".
    """

    def __init__(self, host: str, command: str, message: str, *, exited: bool = False) -> None:
        super().__init__(host, command, message)
        self.exited = exited


@dataclass
class WorkDir:
    """A private temporary directory on a host, removed by ``remove()``."""

    host: Host
    path: str

    @classmethod
    def create(cls, host: Host, prefix: str = "vdpalab") -> WorkDir:
        result = host.run(["mktemp", "-d", f"/tmp/{prefix}.XXXXXX"], timeout=host.quick_timeout)
        path = result.stdout.strip()
        if not result.ok or not path.startswith("/tmp/"):
            raise JobError(host.name, result.command, f"mktemp failed (rc={result.rc}): {result.stderr.strip()}")
        return cls(host, path)

    @classmethod
    def create_with(cls, host: Host, prefix: str, name: str, text: str) -> tuple[WorkDir, str]:
        """``create`` and ``write(name, text)`` in one command (one round trip); the directory and the file's path."""
        script = (f"d=$(mktemp -d /tmp/{prefix}.XXXXXX) && echo \"$d\" && cat > \"$d\"/{shlex.quote(name)}")
        result = host.run(script, stdin=text, timeout=host.quick_timeout)
        path = result.stdout.strip()
        if not result.ok or not path.startswith("/tmp/"):
            if path.startswith("/tmp/"):
                cls(host, path).remove()
            raise JobError(host.name, result.command,
                           f"mktemp + writing {name} failed (rc={result.rc}): {result.stderr.strip()}")
        workdir = cls(host, path)
        return workdir, workdir.file(name)

    def file(self, name: str) -> str:
        return f"{self.path}/{name}"

    def write(self, name: str, text: str) -> str:
        """Write ``text`` to a file in the directory (through stdin: works on any Host backend)."""
        path = self.file(name)
        self.host.run(f"cat > {shlex.quote(path)}", stdin=text, timeout=self.host.quick_timeout, check=True)
        return path

    def read(self, name: str) -> str:
        result = self.host.run(["cat", self.file(name)], timeout=self.host.quick_timeout)
        return result.stdout if result.ok else ""

    def remove(self) -> None:
        """Best effort: the directory is under /tmp and named by mktemp, so nothing else is touched."""
        try:
            self.host.run(["rm", "-rf", "--", self.path], timeout=self.host.quick_timeout)
        except HostError:
            pass


@dataclass
class Job:
    """One detached process on a host: its pid and where its stdout/stderr go."""

    host: Host
    name: str
    pid: int
    workdir: WorkDir
    command: str
    stopped: bool = False
    exited: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def stdout_path(self) -> str:
        return self.workdir.file(f"{self.name}.out")

    @property
    def stderr_path(self) -> str:
        return self.workdir.file(f"{self.name}.err")

    @property
    def alive_command(self) -> str:
        return f"kill -0 {self.pid} 2>/dev/null && ! grep -q '^State:.*Z' /proc/{self.pid}/status 2>/dev/null"

    def alive(self) -> bool:
        """True while the pid exists and is not a zombie."""
        return self.host.run(self.alive_command, timeout=self.host.quick_timeout).ok

    def stdout(self) -> str:
        return self.workdir.read(f"{self.name}.out")

    def stderr(self) -> str:
        return self.workdir.read(f"{self.name}.err")

    def wait_for(
        self, ready: Callable[[], bool], timeout: float, what: str, poll: float = 0.05, reads: Sequence[Command] = ()
    ) -> None:
        """Poll ``ready()`` until true; raise JobError (with the job's stderr) on exit or timeout.

        ``reads``: the commands ``ready()`` runs on the job's host; each poll then sends them and the liveness
        check in one round trip."""
        deadline = time.monotonic() + timeout
        while True:
            if reads:
                self.host.prefetch([*reads, self.alive_command], timeout=self.host.quick_timeout)
            if ready():
                return
            if not self.alive():
                raise JobError(
                    self.host.name, self.command,
                    f"{self.name} exited before {what}: {self.stderr().strip()[-500:] or self.stdout().strip()[-500:]}",
                    exited=True,
                )
            if time.monotonic() >= deadline:
                raise JobError(self.host.name, self.command, f"{self.name} not {what} after {timeout:g} s")
            time.sleep(poll)
            poll = min(poll * 1.5, 0.5)

    def wait_exit(self, timeout: float, poll: float = 0.05) -> bool:
        """Wait for the process to end by itself; False when it is still running at the deadline."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
            poll = min(poll * 1.5, 0.5)
        self.exited = True
        return True

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; only this pid. Never raises."""
        if self.stopped or self.exited:  # (seen gone by wait_exit: its pid is nobody's to signal)
            return
        self.stopped = True
        try:
            if not self.alive():
                return
            self.host.run(["kill", "-TERM", str(self.pid)], timeout=self.host.quick_timeout)
            if self.wait_exit(grace):
                return
            self.host.run(["kill", "-KILL", str(self.pid)], timeout=self.host.quick_timeout)
            self.notes.append(f"{self.name} (pid {self.pid}) ignored SIGTERM and was killed")
            self.wait_exit(grace)
        except HostError as exc:
            self.notes.append(f"could not stop {self.name} (pid {self.pid}): {exc}")


_PID_RE = re.compile(r"^\s*(\d+)\s*$", re.MULTILINE)


def start_job(
    host: Host, name: str, argv: Sequence[str], workdir: WorkDir, *, env: dict[str, str] | None = None
) -> Job:
    """Start ``argv`` detached on ``host`` and return its pid.

    ``setsid`` puts it in its own session (exec, no fork: the pid printed is the
    process itself); stdin is /dev/null, stdout and stderr go to files in ``workdir``.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"job name {name!r}: letters, digits, '_', '.', '-' only")
    out = shlex.quote(workdir.file(f"{name}.out"))
    err = shlex.quote(workdir.file(f"{name}.err"))
    cmd = shlex.join(list(argv))
    prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
    text = (
        f"cd {shlex.quote(workdir.path)} && "
        f"if command -v setsid >/dev/null 2>&1; then S=setsid; else S=; fi; "
        f"{prefix}$S {cmd} > {out} 2> {err} < /dev/null & echo $!"
    )
    result = host.run(text, timeout=host.quick_timeout)
    match = _PID_RE.search(result.stdout)
    if not result.ok or match is None:
        raise JobError(host.name, cmd, f"could not start {name} (rc={result.rc}): {result.stderr.strip()}")
    return Job(host, name, int(match.group(1)), workdir, cmd)

"""The one Host interface every backend implements (testinfra's backend split).

Layers, tests and the emulated lab only ever see ``Host``; whether the command
runs locally, over SSH or against a recorded script is the backend's business.
"""

from __future__ import annotations

import logging
import re
import secrets
import shlex
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from vdpalab.command_result import CommandResult
from vdpalab.errors import CommandFailed, CommandTimeout, HostUnreachable
from vdpalab.logs import own_logger

log = logging.getLogger(__name__)

Command = str | Sequence[str]


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a host's command log, with secrets already redacted."""

    host: str
    command: str
    rc: int | None
    started: float
    duration: float
    outcome: str  # "ok", "failed", "timeout", "unreachable", "scripted"


def to_shell(cmd: Command) -> str:
    """A list is quoted argument by argument; a string is taken as shell text."""
    if isinstance(cmd, str):
        return cmd
    return shlex.join([str(part) for part in cmd])


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_SECRET_PATTERNS = [
    re.compile(r"(?i)(password|passwd|secret|token)(\s*[=:]\s*|\s+)(\S+)"),
]


class CommandHistory(logging.Handler):
    """What ran on a host, for reports and failure diagnostics: a log handler on the host's own logger.

    ``Host.run`` logs every command as a DEBUG record carrying a ``HistoryEntry`` (``command_entry``);
    this handler keeps the last ``limit`` of them. The records also propagate to ``vdpalab.hosts.base``
    (``--log-file``, ``--log-cli-level=DEBUG``).
    """

    def __init__(self, limit: int = 5000) -> None:
        super().__init__(logging.DEBUG)
        self._entries: list[HistoryEntry] = []
        self._limit = limit
        self._secrets: set[str] = set()

    def add_secret(self, secret: str) -> None:
        if secret:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
        return text

    def emit(self, record: logging.LogRecord) -> None:
        entry = getattr(record, "command_entry", None)
        if not isinstance(entry, HistoryEntry):
            return
        self._entries.append(entry)  # handle() holds the handler's lock
        if len(self._entries) > self._limit:
            del self._entries[: len(self._entries) - self._limit]

    def entries(self, since: float | None = None) -> list[HistoryEntry]:
        self.acquire()
        try:
            return [e for e in self._entries if since is None or e.started >= since]
        finally:
            self.release()


def batch_script(commands: Sequence[str], token: str, stop_on_failure: bool = False) -> str:
    """One shell text that runs ``commands`` in turn, each in a subshell with no stdin, and after each prints
    ``@@TOKEN RC@@`` on stdout and ``@@TOKEN@@`` on stderr (own lines), so ``split_batch`` can take it apart.
    ``stop_on_failure``: nothing runs after the first command that exits non-zero."""
    stop = "; [ $rc -eq 0 ] || exit 0" if stop_on_failure else ""
    parts = [
        f"(\n{cmd}\n) </dev/null; rc=$?; printf '\\n@@%s %d@@\\n' {token} $rc; printf '\\n@@%s@@\\n' {token} >&2"
        + stop
        for cmd in commands
    ]
    return "\n".join(parts)


def batch_label(commands: Sequence[str]) -> str:
    """How an error names a batch: its commands, not the shell text that wraps them."""
    text = "; ".join(commands)
    return f"{len(commands)} batched commands: " + (text if len(text) <= 200 else text[:197] + "...")


def split_batch(
    batch: CommandResult, commands: Sequence[str], token: str, stop_on_failure: bool = False
) -> list[CommandResult] | None:
    """Each command's own result out of a ``batch_script`` run; None when the batch did not run to its end
    (with ``stop_on_failure``: to its end or to its first failure)."""
    out = re.split(rf"\n@@{token} (\d+)@@\n", batch.stdout)
    err = re.split(rf"\n@@{token}@@\n", batch.stderr)
    ran = (len(out) - 1) // 2
    results = [
        CommandResult(batch.host, cmd, int(out[2 * i + 1]), out[2 * i], err[i], batch.started, batch.duration)
        for i, cmd in enumerate(commands[:ran])
    ] if len(err) == ran + 1 and ran <= len(commands) else []  # fmt: skip
    if len(results) == len(commands) or (stop_on_failure and results and not results[-1].ok):
        return results
    return None


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, CommandTimeout):
        return "timeout"
    if isinstance(exc, HostUnreachable):
        return "unreachable"
    return type(exc).__name__


# How a tool says it does not know its JSON option: iproute2 before 4.14 ('Option "-j" is unknown'), BusyBox
# ip (its usage text), ethtool before 6.x ('bad command line argument(s)'), getopt ('invalid/unrecognized option').
_JSON_REJECTED = re.compile(
    r'Option "-j(?:son)?" is unknown|bad command line argument|invalid option|unrecognized option|unknown option'
    r"|^Usage:",
    re.IGNORECASE | re.MULTILINE,
)


def json_option_rejected(result: CommandResult) -> bool:
    """True when a failed ``--json``/``-j`` command failed because the tool has no such option."""
    return not result.ok and bool(_JSON_REJECTED.search(result.stderr or result.stdout))


def run_json_or_text(
    host: Host, json_cmd: Command, text_cmd: Command, *, timeout: float | None = None, sudo: bool = False
) -> CommandResult:
    """The tool's JSON output where it has one, else its text: ``text_cmd`` runs only when the tool rejected
    the JSON option (old iproute2 or ethtool, BusyBox ip). The parsers take either, so the caller need not
    know which it got; any other failure is returned as it is."""
    result = host.run(json_cmd, timeout=timeout, sudo=sudo)
    if json_option_rejected(result):
        return host.run(text_cmd, timeout=timeout, sudo=sudo)
    return result


class Host(ABC):
    """Run commands and move files on one machine.

    ``run`` returns a ``CommandResult``; it raises ``HostUnreachable`` when the
    transport fails, ``CommandTimeout`` when the command outlives ``timeout``
    (after killing it), and ``CommandFailed`` only when ``check=True``.
    """

    name: str
    default_timeout: float = 60.0
    #: how long a quick read (``ss``, ``kill -0``, ``cat`` of a small file, ``mktemp``) may take here before it
    #: counts as hung: 10 s on a real machine; a nested TCG guest is given more by its lab file (``quick_timeout_s``)
    quick_timeout: float = 10.0
    sudo_all: bool = False
    #: whether ``prefetch`` sends its reads in one round trip: True where each command costs a round trip that
    #: is worth saving (SSH: a channel, a shell, and on a TCG VM up to a second); local and scripted hosts keep
    #: False, so every command still runs (and is scripted) on its own where it is asked for
    batches_reads: bool = False

    def __init__(self, name: str, default_timeout: float = 60.0, sudo: bool = False) -> None:
        self.name = name
        self.default_timeout = default_timeout
        self.sudo_all = sudo  # every command as if run(sudo=True)
        self.history = CommandHistory()
        self.command_log = own_logger(log, name)
        self.command_log.addHandler(self.history)
        self._prefetched: dict[str, CommandResult] = {}
        self._prefetch_lock = threading.Lock()

    def _final(self, cmd: Command, sudo: bool, env: Mapping[str, str] | None = None) -> str:
        """The shell text ``run`` sends for ``cmd``: with ``env`` exported first and sudo where it is needed."""
        command = to_shell(cmd)
        if env:
            # exported first, so that the whole shell text (not only its first command) sees them
            bad = [k for k in env if not _ENV_NAME.fullmatch(k)]
            if bad:
                raise ValueError(f"{self.name}: invalid environment variable name(s) {bad!r}")
            command = "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + "; " + command
        if (sudo or self.sudo_all) and self.needs_sudo():
            command = "sudo -n sh -c " + shlex.quote(command)
        return command

    def prefetch(self, cmds: Sequence[Command], *, timeout: float | None = None, sudo: bool = False) -> None:
        """Run read-only ``cmds`` now, in one round trip where the backend ``batches_reads``.

        The next ``run`` of each exact command (same ``sudo``) returns its result instead of running it again;
        any other command on this host drops what is left (it may change what they read). A batch that did
        not run to its end leaves nothing behind: each read then runs on its own, as without ``prefetch``.
        """
        with self._prefetch_lock:  # reads a caller already prefetched stay; only the others are sent
            kept = dict(self._prefetched)
        commands = [c for c in dict.fromkeys(self._final(c, sudo) for c in cmds) if c not in kept]
        if not self.batches_reads or not commands or (len(commands) == 1 and not kept):
            return  # (one read alone gains nothing from a batch, unless it would drop the ones kept)
        token = f"vdpalab-batch-{secrets.token_hex(6)}"
        try:
            batch = self._run_batch(commands, token, timeout=timeout)
        except CommandTimeout:  # each read runs on its own and meets its own timeout
            parts = None
        else:
            parts = split_batch(batch, commands, token)
        with self._prefetch_lock:  # the batch only read: what was kept still holds
            self._prefetched = {**kept, **({} if parts is None else {r.command: r for r in parts})}

    def run_sequence(
        self, cmds: Sequence[Command], *, timeout: float | None = None, sudo: bool = False
    ) -> list[CommandResult]:
        """Run ``cmds`` in order until one exits non-zero; the results of those that ran (the last one failed
        when fewer came back). One round trip where the backend ``batches_reads``, else one ``run`` each.

        A batch that did not come back whole (cut by its timeout) raises ``CommandTimeout`` as ``run`` does."""
        commands = [self._final(c, sudo) for c in cmds]
        if not self.batches_reads or len(commands) < 2:
            results = []
            for command in commands:
                results.append(self.run(command, timeout=timeout))
                if not results[-1].ok:
                    break
            return results
        token = f"vdpalab-batch-{secrets.token_hex(6)}"
        limit = self.default_timeout if timeout is None else timeout
        batch = self._run_batch(commands, token, timeout=limit * len(commands), stop_on_failure=True)
        parts = split_batch(batch, commands, token, stop_on_failure=True)
        if parts is None:
            raise CommandFailed(batch)
        for result in parts:  # each also as its own line in the history (the batch above is the round trip)
            self._logged(result.command, result.rc, time.time(), 0.0, "ok" if result.ok else "failed")
        return parts

    def _run_batch(
        self, commands: Sequence[str], token: str, *, timeout: float | None, stop_on_failure: bool = False
    ) -> CommandResult:
        """One round trip of ``commands``; its errors name the commands (``batch_label``), not the batch script."""
        try:
            return self.run(batch_script(commands, token, stop_on_failure), timeout=timeout)
        except HostUnreachable as exc:
            raise type(exc)(exc.host, batch_label(commands), exc.reason) from None
        except CommandTimeout as exc:
            raise CommandTimeout(exc.host, batch_label(commands), exc.timeout, exc.stdout, exc.stderr) from None

    def _take_prefetched(self, command: str, may_take: bool = True) -> CommandResult | None:
        """The prefetched result of ``command`` (once); any other command (or one fed stdin) drops the rest."""
        with self._prefetch_lock:
            result = self._prefetched.pop(command, None) if may_take else None
            if result is None:
                self._prefetched.clear()
            return result

    def run(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        check: bool = False,
        sudo: bool = False,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        command = self._final(cmd, sudo, env)
        result = self._take_prefetched(command, stdin is None)
        if result is not None:  # ran moments ago in a prefetch batch (logged there); logged again as read here
            self._logged(command, result.rc, time.time(), 0.0, "ok" if result.ok else "failed")
        else:
            limit = self.default_timeout if timeout is None else timeout
            started = time.time()
            try:
                result = self._run(command, limit, stdin)
            except Exception as exc:  # record every outcome, then re-raise
                self._logged(command, None, started, time.time() - started, _outcome(exc))
                raise
            self._logged(command, result.rc, started, result.duration, "ok" if result.ok else "failed")
        if check and not result.ok:
            # the message ends up in logs and reports: never with a secret in it
            shown = replace(
                result,
                command=self.shown(result.command),
                stdout=self.history.redact(result.stdout),
                stderr=self.history.redact(result.stderr),
            )
            raise CommandFailed(shown)
        return result

    def _logged(self, command: str, rc: int | None, started: float, duration: float, outcome: str) -> None:
        """One DEBUG record per command; the host's ``history`` handler keeps it."""
        entry = HistoryEntry(self.name, self.history.redact(command), rc, started, duration, outcome)
        self.command_log.debug(
            "%s: %s -> %s (%.3f s)",
            self.name,
            entry.command,
            rc if outcome in ("ok", "failed") else outcome,
            duration,
            extra={"command_entry": entry},
        )

    def shown(self, command: str) -> str:
        """The command as it may appear in a message or a log (secrets redacted)."""
        return self.history.redact(command)

    def check(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        sudo: bool = False,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        """``run(..., check=True)``: for commands whose failure is an error."""
        return self.run(cmd, timeout=timeout, check=True, sudo=sudo, env=env, stdin=stdin)

    def needs_sudo(self) -> bool:
        """Backends that log in as root return False so ``sudo=True`` costs nothing."""
        return False

    @abstractmethod
    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        """Run shell text; never raise CommandFailed (``run`` does that)."""

    @abstractmethod
    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        """Copy a local file to the host."""

    @abstractmethod
    def get(self, remote_path: str, local_path: str) -> None:
        """Copy a file from the host to a local path."""

    def read_text(self, remote_path: str, timeout: float | None = None) -> str:
        return self.run(["cat", remote_path], timeout=timeout, check=True).stdout

    def close(self) -> None:  # noqa: B027 - a hook: most backends hold nothing to release
        """Release connections; safe to call twice."""

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

"""One small exception hierarchy for the whole suite.

Every message names where it happened (host, command, exit code, file, key)
so that a nightly log line is enough to start debugging.
"""

from __future__ import annotations

from vdpalab.command_result import CommandResult


class VdpaLabError(Exception):
    """Base of every error this suite raises on purpose."""


class LabConfigError(VdpaLabError):
    """A lab file is missing, not TOML, or fails validation.

    One line per problem: ``FILE: KEY.PATH: problem``. ``key``/``problem`` are the first problem;
    ``problems`` holds every (key, problem) and ``str()`` is their lines joined by newlines.
    """

    def __init__(self, path: str, key: str, problem: str, more: list[tuple[str, str]] | None = None) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        self.problems = [(key, problem), *(more or [])]
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}"
                for key, problem in self.problems]


class HostError(VdpaLabError):
    """Something went wrong while talking to a host."""

    def __init__(self, host: str, command: str, message: str) -> None:
        self.host = host
        self.command = command
        super().__init__(f"{host}: {message}")


class HostUnreachable(HostError):
    """Connect or transport failure (ssh's exit code 255): the command may not have run."""

    def __init__(self, host: str, command: str, reason: str) -> None:
        self.reason = reason
        what = f" while running {command!r}" if command else ""
        super().__init__(host, command, f"unreachable{what}: {reason}")


class HostKeyRejected(HostUnreachable):
    """The host answered with a key its known_hosts does not pin: asking again cannot help (a rebuilt guest image,
    a reinstalled host, or someone in between), so waits for a booting host stop at once."""


class CommandTimeout(HostError):
    """The command ran longer than its timeout; its process group was killed."""

    def __init__(self, host: str, command: str, timeout: float, stdout: str = "", stderr: str = "") -> None:
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(host, command, f"command {command!r} timed out after {timeout:g} s and was killed")


class CommandFailed(HostError):
    """A command exited non-zero while the caller asked for ``check=True``."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        tail = result.stderr.strip()[-500:] or result.stdout.strip()[-300:]
        super().__init__(
            result.host,
            result.command,
            f"command {result.command!r} exited with rc={result.rc}" + (f": {tail}" if tail else ""),
        )


class ParseError(VdpaLabError):
    """A parser met text it does not understand; it never guesses."""

    def __init__(self, kind: str, message: str, line_no: int | None = None, line: str | None = None) -> None:
        self.kind = kind
        self.line_no = line_no
        self.line = line
        where = f" at line {line_no}" if line_no is not None else ""
        text = f": {line!r}" if line is not None else ""
        super().__init__(f"{kind}: {message}{where}{text}")


class LayerError(VdpaLabError):
    """A bring-up layer could not reach or verify its state."""

    def __init__(self, layer: str, message: str) -> None:
        self.layer = layer
        super().__init__(f"layer {layer}: {message}")


class SafetyRefusal(LayerError):
    """A layer refused to touch something that could take the host off the network."""


class LabStateError(VdpaLabError):
    """The emulated lab could not be built, probed or torn down."""


class TeardownError(LabStateError):
    """Restoring a lab failed; ``problems`` maps each part ("infrastructure" or a layer) to its error."""

    def __init__(self, lab: str, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__(f"lab {lab}: down finished with problems: "
                         + "; ".join(f"{part}: {error}" for part, error in self.problems.items()))

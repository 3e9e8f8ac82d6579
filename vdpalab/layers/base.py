"""The bring-up layer contract: probe, plan, up, verify, down (LNST config/deconfig, labgrid states).

A layer reads the host's current state (``probe``), says exactly which commands
it would run (``plan``), runs them only when needed (``up`` is idempotent), proves
the outcome (``verify``) and restores exactly what it changed from a journal of
the state before (``down``). Layers never retry: a broken layer is reported once,
and every test that depends on it is an ERROR with that reason (labgrid #1681); a
layer the lab says it does not have is NOT APPLICABLE and its dependants skip.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from vdpalab.config import Lab
from vdpalab.errors import HostError, LayerError
from vdpalab.hosts.base import CommandResult, Host, run_json_or_text, to_shell


class LayerStatus(StrEnum):
    """Where a layer stands after bring-up."""

    PENDING = "pending"
    UP = "up"  # up ran (or found it already up) and verify passed
    BROKEN = "broken"  # up or verify failed: dependants are ERRORs with the reason
    NOT_APPLICABLE = "not-applicable"  # the lab file says it is absent (e.g. no PF with a PCI address: no eswitch)
    DOWN = "down"


@dataclass(frozen=True)
class PlannedCommand:
    """One command a layer would run, on which host, and why (for `vdpalab plan`).

    ``host`` is the role key in ``LayerContext.hosts``: ``"host"`` for the lab host, else a guest name.
    ``check=False`` marks a command whose failure is expected and handled (e.g. a best-effort QMP quit).
    """

    host: str
    command: str
    why: str = ""
    check: bool = True


@dataclass(frozen=True)
class Evidence:
    """What verify relied on: the outputs an engineer would otherwise read by eye."""

    ok: bool
    summary: str
    details: tuple[str, ...] = ()


@dataclass
class LayerOutcome:
    """The recorded result of one layer's bring-up, shared with every test that depends on it."""

    layer: str
    status: LayerStatus = LayerStatus.PENDING
    reason: str = ""
    changed: bool = False
    commands_run: list[str] = field(default_factory=list)
    evidence: Evidence | None = None
    duration_s: float = 0.0

    @property
    def skip_reason(self) -> str:
        if self.status is LayerStatus.NOT_APPLICABLE:
            return f"layer {self.layer} not available: {self.reason}"
        return f"layer {self.layer} broken: {self.reason}"


class Journal:
    """The state before a layer changed anything, persisted so `down` can run in another process.

    Entries are (key, before-value) pairs recorded the first time a key is changed;
    a second `up` on an already-up layer records nothing, so `down` restores the
    original state, not an intermediate one.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.entries: dict[str, Any] = {}
        if path is not None and path.exists():
            self.entries = json.loads(path.read_text())

    def record(self, key: str, before: Any) -> None:
        if key not in self.entries:
            self.entries[key] = before
            self._save()

    def get(self, key: str, default: Any = None) -> Any:
        return self.entries.get(key, default)

    def forget(self, key: str) -> None:
        """Drop one entry once what it recorded is undone (a guest driver's stop of one guest)."""
        self.entries.pop(key, None)
        self._save()

    def clear(self) -> None:
        self.entries.clear()
        if self.path is not None and self.path.exists():
            self.path.unlink()

    def _save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries, indent=2, sort_keys=True))
            tmp.replace(self.path)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __bool__(self) -> bool:
        return bool(self.entries)


@dataclass
class LayerContext:
    """What a layer may use: the lab, its hosts (by role) and where to keep journals."""

    lab: Lab
    hosts: Mapping[str, Host]  # "host" plus one entry per guest name, opened lazily by the caller
    state_dir: Path
    versions: dict[str, str | None] = field(default_factory=dict)  # filled by preflight for the reports

    @property
    def host(self) -> Host:
        return self.hosts["host"]


class Layer(ABC):
    """One step of the seed's procedure. Subclasses keep ``up`` idempotent and ``down`` exact.

    The usual shape (the default ``up``): ``probe`` reads the state, ``plan(state)`` turns the
    difference to the lab into commands, ``journal_before(state, planned)`` records what those
    commands will overwrite, and ``execute`` runs exactly the planned commands. So what
    `vdpalab plan` prints is, by construction, what ``up`` runs. Layers whose later commands
    depend on earlier results (OVS after a start, guests after boot) override ``up``.
    """

    name: ClassVar[str]
    requires: tuple[str, ...] = ()  # an instance may add to it from its lab file (vdpa with VDUSE needs ovs)

    def __init__(self, ctx: LayerContext) -> None:
        self.ctx = ctx
        self.lab = ctx.lab
        self.journal = Journal(ctx.state_dir / "journal" / f"{self.name}.json")
        self.changes: list[str] = []  # changing commands run by up/down, "role: command"

    @property
    def host(self) -> Host:
        return self.ctx.host

    def on(self, role: str) -> Host:
        """The host for a role key ("host" or a guest name)."""
        return self.ctx.hosts[role]

    def not_applicable(self) -> str | None:
        """A reason when this layer cannot exist in the lab (tests skip with it); None otherwise."""
        return None

    @abstractmethod
    def probe(self) -> Any:
        """Read the current state; runs only read-only commands."""

    @abstractmethod
    def plan(self, state: Any | None = None) -> list[PlannedCommand]:
        """The commands ``up`` would run from ``state`` (probed when None). Empty when already up."""

    def fresh_state(self) -> Any:
        """The state of a host nobody has touched yet (the seed's starting point), for ``vdpalab plan --offline``."""
        raise NotImplementedError(f"layer {self.name} has no offline plan")

    def journal_before(self, state: Any, planned: list[PlannedCommand]) -> None:  # noqa: B027 - optional hook
        """Record, before anything changes, the values ``planned`` will overwrite (default: nothing)."""

    def up(self) -> bool:
        """Bring the layer up; return True when anything changed. Records the journal first."""
        state = self.probe()
        planned = self.plan(state)
        if not planned:
            return False
        self.journal_before(state, planned)
        self.execute(planned)
        return True

    @abstractmethod
    def verify(self) -> Evidence:
        """Prove the layer is up, with the evidence relied on."""

    def down_plan(self) -> list[PlannedCommand]:
        """The commands ``down`` would run, from the journal alone (no probing): a dry run of the teardown."""
        return []

    def down(self) -> None:
        """Restore what this layer changed, from the journal; a no-op when it changed nothing.

        The journal is cleared only when every command succeeded, so a failed down can be run again.
        """
        self.execute(self.down_plan())
        self.journal.clear()

    # --- helpers for subclasses ---
    def read(
        self, cmd: str | list[str], *, role: str = "host", timeout: float | None = None, sudo: bool = True
    ) -> CommandResult:
        """A read-only probe command; its failure is data (rc), not an exception."""
        return self.on(role).run(cmd, timeout=timeout, sudo=sudo)

    def prefetch(self, cmds: list[str | list[str]], *, role: str = "host") -> None:
        """Send the read-only probes ``read`` is about to ask for in one round trip (where the host batches)."""
        self.on(role).prefetch(cmds, sudo=True)

    def read_ok(self, cmd: str | list[str], *, role: str = "host", what: str = "") -> str:
        """A read-only command that must succeed; a failure is a LayerError naming the command."""
        return self.required(self.read(cmd, role=role), what)

    def read_json_ok(self, json_cmd: list[str], text_cmd: list[str], *, role: str = "host", what: str = "") -> str:
        """``read_ok`` of a tool's JSON output, or of its text where the tool has no JSON (the parsers take both)."""
        return self.required(run_json_or_text(self.on(role), json_cmd, text_cmd, sudo=True), what)

    def required(self, result: CommandResult, what: str) -> str:
        """The stdout of a read that must succeed; a failure is a LayerError naming host, command and rc."""
        if not result.ok:
            detail = (result.stderr.strip() or result.stdout.strip())[-300:]
            raise LayerError(
                self.name, f"{what or 'probe'} failed on {result.host}: {result.command!r} rc={result.rc}: {detail}"
            )
        return result.stdout

    def execute(self, planned: Iterable[PlannedCommand], *, timeout: float | None = None) -> list[CommandResult]:
        """Run planned (changing) commands in order; stop at the first failure with a LayerError."""
        results: list[CommandResult] = []
        for group in _runs_of(list(planned)):  # consecutive checked commands on one host: one round trip
            host = self.on(group[0].host)
            self.changes += [f"{cmd.host}: {cmd.command}" for cmd in group]
            if len(group) == 1:
                ran = [host.run(group[0].command, timeout=timeout, sudo=True)]
            else:
                ran = host.run_sequence([cmd.command for cmd in group], timeout=timeout, sudo=True)
                del self.changes[len(self.changes) - len(group) + len(ran) :]  # what did not run changed nothing
            results += ran
            cmd, result = group[len(ran) - 1], ran[-1]
            if cmd.check and not result.ok:
                detail = (result.stderr.strip() or result.stdout.strip())[-500:]
                raise LayerError(
                    self.name,
                    f"{cmd.command!r} on {host.name} exited with rc={result.rc}" + (f": {detail}" if detail else ""),
                )
        return results

    def planned(
        self, command: str | list[str], why: str = "", *, role: str = "host", check: bool = True
    ) -> PlannedCommand:
        """A PlannedCommand for this layer; lists are quoted with shlex like ``Host.run`` does."""
        return PlannedCommand(host=role, command=to_shell(command), why=why, check=check)


def _runs_of(planned: list[PlannedCommand]) -> list[list[PlannedCommand]]:
    """Planned commands cut into runs that may go in one round trip: consecutive, on the same host, each one
    checked (a failure stops the run there, as it stops ``execute``); an unchecked command goes alone."""
    runs: list[list[PlannedCommand]] = []
    for cmd in planned:
        if runs and cmd.check and runs[-1][-1].check and runs[-1][-1].host == cmd.host:
            runs[-1].append(cmd)
        else:
            runs.append([cmd])
    return runs


def run_layer(layer: Layer, *, assume_up: bool = False) -> LayerOutcome:
    """Bring one layer up and verify it.

    NOT APPLICABLE when the lab says the layer cannot exist; BROKEN when verify fails or up/verify
    raise the suite's own LayerError/HostError family (the host or the layer's state is wrong).
    Any other exception is a bug in the layer's code: it propagates with its traceback.
    """
    started = time.monotonic()
    outcome = LayerOutcome(layer=layer.name)
    reason = layer.not_applicable()
    if reason:
        outcome.status = LayerStatus.NOT_APPLICABLE
        outcome.reason = reason
        return outcome
    try:
        if not assume_up:
            outcome.changed = layer.up()
        evidence = layer.verify()
        outcome.evidence = evidence
        if evidence.ok:
            outcome.status = LayerStatus.UP
        else:
            outcome.status = LayerStatus.BROKEN
            outcome.reason = f"verify failed: {evidence.summary}"
    except (LayerError, HostError) as exc:  # a broken layer is recorded once; its dependants ERROR with it
        outcome.status = LayerStatus.BROKEN
        outcome.reason = f"{type(exc).__name__}: {exc}"
    outcome.commands_run = list(layer.changes)
    outcome.duration_s = time.monotonic() - started
    return outcome


def outcome_to_dict(outcome: LayerOutcome) -> dict[str, Any]:
    data = asdict(outcome)
    data["status"] = outcome.status.value
    return data


def outcome_from_dict(data: Mapping[str, Any]) -> LayerOutcome:
    """The inverse of ``outcome_to_dict`` (session.json is read back by other processes, e.g. xdist workers)."""
    evidence = data.get("evidence")
    return LayerOutcome(
        layer=str(data["layer"]),
        status=LayerStatus(data.get("status", LayerStatus.PENDING.value)),
        reason=str(data.get("reason", "")),
        changed=bool(data.get("changed", False)),
        commands_run=list(data.get("commands_run", [])),
        evidence=Evidence(
            ok=bool(evidence["ok"]), summary=str(evidence["summary"]), details=tuple(evidence.get("details", ()))
        )
        if evidence
        else None,
        duration_s=float(data.get("duration_s", 0.0)),
    )

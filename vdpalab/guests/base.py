"""The guest driver contract: one driver per guest kind, so a new kind is a new model plus a driver, no new branches.

How to add a guest kind (the vDPA lab's ``vdpa-netns`` guests are one):

1. its model in ``vdpalab/config.py``: a subclass of ``GuestBase`` (or ``VmGuest``) with ``kind: Literal["my-kind"]``
   and only the fields that kind uses (``extra="forbid"`` rejects the others with a one-line error), checks across
   its own fields in ``own_problems``; add it to the ``GuestSettings`` union and to ``GUEST_MODELS``;
2. its driver in ``vdpalab/guests/my_kind.py``: a subclass of ``GuestDriverBase`` (SSH readiness, no console and
   nothing to start or stop by default) overriding what the kind does differently, with ``kind = "my-kind"``;
3. one line in ``DRIVERS`` (``vdpalab/guests/__init__.py``); ``selftest/test_guest_drivers.py`` checks every model
   kind has a driver.

The guests layer (``vdpalab.layers.guests``), preflight and hugepages only ever talk to ``GuestDriver``; none of
them asks which kind a guest is. Whatever the driver does on a host goes through the layer (``GuestContext``), so
``vdpalab plan`` shows it and the layer's journal lets ``down`` undo it from another process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from vdpalab.errors import HostError, HostKeyRejected, LayerError
from vdpalab.logs import seconds

if TYPE_CHECKING:
    from vdpalab.config import GuestBase, Lab, SSHSettings
    from vdpalab.hosts.base import CommandResult, Host
    from vdpalab.layers.base import Journal, PlannedCommand

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuestRun:
    """The host side of one guest: is it running, and was it started from our files."""

    running: bool
    pid: int | None = None
    defined: bool | None = None  # libvirt only
    domain: Any = None  # libvirt: the domain as probed (a libvirt_domain.DomainState)
    cmdline: str | None = None  # qemu: the running process's /proc/PID/cmdline, NULs as spaces (read by probe)


@dataclass(frozen=True)
class GuestNeeds:
    """What a guest needs from the lab host, for preflight and hugepages (which never ask for the kind)."""

    qemu_binary: str | None = None  # a QEMU binary that must run
    netdev_backends: frozenset[str] = field(default_factory=frozenset)  # `-netdev help` must list these
    libvirt: bool = False  # libvirt >= LIBVIRT_MIN must be installed
    hugepages_mib: int = 0  # guest RAM backed by hugetlbfs
    host_tools: tuple[str, ...] = ()  # programs the guest runs from the lab host's filesystem


class GuestContext(Protocol):
    """What a driver may use: the guests layer's lab, journal and (planned, recorded) commands."""

    lab: Lab
    journal: Journal

    @property
    def name(self) -> str: ...

    def on(self, role: str) -> Host: ...

    def read(
        self, cmd: str | list[str], *, role: str = "host", timeout: float | None = None, sudo: bool = True
    ) -> CommandResult: ...

    def read_ok(self, cmd: str | list[str], *, role: str = "host", what: str = "") -> str: ...

    def execute(self, planned: Iterable[PlannedCommand], *, timeout: float | None = None) -> list[CommandResult]: ...

    def planned(
        self, command: str | list[str], why: str = "", *, role: str = "host", check: bool = True
    ) -> PlannedCommand: ...

    def put_text(self, text: str, remote: str, mode: int = 0o644) -> None: ...

    def reset_host(self, role: str) -> None: ...


class GuestDriver(Protocol):
    """How the suite starts, reaches and stops one kind of guest.

    ``start``/``stop`` run exactly what ``start_plan``/``stop_plan`` return (plus files put to the host), and record
    in the layer's journal what ``stop`` needs; ``wait_ready`` returns once the guest answers over SSH; ``address``
    is how the suite reaches the guest's shell; ``console`` is the tail of its console (for error messages).
    """

    kind: ClassVar[str]
    runtime_files: ClassVar[str]  # what runtime_dir() holds (the plan's reason for its mkdir)
    guest: Any  # the kind's model (a GuestBase subclass)

    @property
    def sets_mac(self) -> bool:
        """The layer sets the lab's MAC on the interface (a VM's NIC has it from its device)."""
        ...

    def address(self) -> SSHSettings: ...

    def needs(self) -> GuestNeeds: ...

    def runtime_dir(self) -> str | None: ...

    def probe(self) -> GuestRun: ...

    def fresh(self) -> GuestRun: ...

    def start_plan(self, run: GuestRun) -> list[PlannedCommand]: ...

    def start(self, run: GuestRun) -> bool: ...

    def wait_ready(self) -> float: ...

    def console(self) -> str: ...

    def started_here(self) -> bool: ...

    def stop_plan(self) -> list[PlannedCommand]: ...

    def stop(self) -> None: ...

    def log_files(self) -> list[tuple[str, str]]: ...

    def datapath_evidence(self, run: GuestRun) -> tuple[list[str], list[str]]: ...


class GuestDriverBase:
    """Defaults for a guest the suite reaches over SSH and does not start (a netns guest is exactly this)."""

    kind: ClassVar[str] = ""
    runtime_files: ClassVar[str] = ""  # what runtime_dir() holds, for the plan's mkdir line

    def __init__(self, guest: GuestBase, ctx: GuestContext | None = None) -> None:
        self.guest: Any = guest
        self._ctx = ctx
        self.started_at: float | None = None  # when start ran (monotonic), for the boot time in verify

    @property
    def ctx(self) -> GuestContext:
        if self._ctx is None:
            raise RuntimeError(f"the {self.kind} driver of {self.guest.name} was made without the guests layer")
        return self._ctx

    @property
    def lab(self) -> Lab:
        return self.ctx.lab

    @property
    def sets_mac(self) -> bool:
        return False

    def address(self) -> SSHSettings:
        return self.guest.ssh

    def needs(self) -> GuestNeeds:
        return GuestNeeds()

    def runtime_dir(self) -> str | None:
        return None

    def probe(self) -> GuestRun:
        return GuestRun(True)

    def fresh(self) -> GuestRun:
        """Nothing started: a guest that is not running yet is never dialled by an offline plan."""
        return GuestRun(False)

    def start_plan(self, run: GuestRun) -> list[PlannedCommand]:
        return []

    def start(self, run: GuestRun) -> bool:
        planned = self.start_plan(run)
        if not planned:
            return False
        self.started_at = time.monotonic()
        self.ctx.execute(planned)
        return True

    def boot_problem(self) -> str | None:
        """Why waiting longer for SSH is pointless (the guest died); None while it may still come up."""
        return None

    def wait_ready(self) -> float:
        """Until ``true`` runs over SSH on the guest; on timeout the console tail goes into the error."""
        guest = self.guest
        deadline = time.monotonic() + guest.boot_timeout_s
        start = time.monotonic()
        last = ""
        watched = self.watches_boot()
        ssh = self.address()
        log.info("guest %s: waiting for SSH on %s:%s (%s boot, up to %s)", guest.name, ssh.address, ssh.port,
                 self.kind, seconds(guest.boot_timeout_s))
        while True:
            try:
                result = self.ctx.on(guest.name).run("true", timeout=max(1.0, min(10.0, deadline - time.monotonic())))
                if result.ok:
                    log.info("guest %s: SSH answered after %s", guest.name, seconds(time.monotonic() - start))
                    return time.monotonic() - start
                last = f"`true` exited with rc={result.rc}"
            except HostKeyRejected as exc:  # the guest is up, with a key that is not pinned: waiting cannot help
                raise LayerError(
                    self.ctx.name,
                    f"guest {guest.name}: answered after {seconds(time.monotonic() - start)} with a host key that "
                    f"{self.lab.resolve(ssh.known_hosts) or '~/.ssh/known_hosts'} does not pin ({exc})"
                    + self.console(),
                ) from exc
            except (HostError, OSError) as exc:
                last = str(exc)
                self.ctx.reset_host(guest.name)  # dial again next time
            if watched:
                problem = self.boot_problem()
                if problem:
                    raise LayerError(self.ctx.name, f"guest {guest.name}: {problem} ({last})" + self.console())
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(self.poll_s(), left))
        raise LayerError(
            self.ctx.name,
            f"guest {guest.name}: no SSH after {guest.boot_timeout_s:g} s ({last})" + self.console(),
        )

    def poll_s(self) -> float:
        """Seconds between SSH attempts while the guest boots."""
        return 2.0

    def watches_boot(self) -> bool:
        """Whether ``boot_problem`` can tell a dead guest early (then SSH is polled faster, too)."""
        return False

    def console(self) -> str:
        return ""

    def started_here(self) -> bool:
        """Whether this layer started the guest (its interface settings then go away with it)."""
        return False

    def stop_plan(self) -> list[PlannedCommand]:
        return []

    def stop(self) -> None:
        self.ctx.execute(self.stop_plan())

    def log_files(self) -> list[tuple[str, str]]:
        """(label, path on the lab host) of logs worth showing when a test fails."""
        return []

    def datapath_evidence(self, run: GuestRun) -> tuple[list[str], list[str]]:
        """(evidence lines, problems) that the running guest's data NIC is the lab's backend; verify shows both."""
        return [], []

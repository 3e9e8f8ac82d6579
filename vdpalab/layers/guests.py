"""Guests: start the two guests on their vDPA devices, wait for SSH, give them their addresses (seed 7-7, 7-8).

* ``kind = "qemu"``: the seed's command line (built by ``vdpalab.qemu.qemu_argv``)
  ``-netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0 -device virtio-net-pci,
  netdev=vhost-vdpa0,page-per-vq=on,iommu_platform=on,disable-legacy=on``, run in the background
  with ``-daemonize`` instead of the seed's foreground ``-nographic 2>&1 | tee vm153.log``: the
  serial console goes to a log file, plus a pidfile and a QMP socket for a clean shutdown.
* ``kind = "libvirt"``: a generated domain with the seed's ``<interface type='vdpa'><source
  dev='/dev/vhost-vdpa-0'/></interface>``, put to the host, ``virsh define`` and ``virsh start``;
  ``down`` runs ``virsh destroy`` and ``virsh undefine``.
* ``kind = "netns"`` (the emulated lab): the namespace and its sshd exist already; only the
  data interface is configured (MAC, MTU, address, link up).

The emulated-qemu lab's guests are ``kind = "qemu"`` too, run by the same code: lab.toml gives them
a vhost-user data NIC (OVS-DPDK's ``dpdkvhostuserclient`` connects to it) with the seed's device
options plus ``vectors=0``, TCG instead of KVM, a shared memfd for guest RAM (``memory_backend``),
a direct kernel boot of the built image (``kernel``/``initrd``/``append``), a management NIC with a
loopback port forward for SSH (``mgmt_ssh_port``) and runtime files in the lab's state dir
(``runtime_dir``).

For every kind the layer waits for SSH (``boot_timeout_s``; on failure the console log tail is
in the error; a QEMU the layer started that exits, or a console that shows a kernel panic, fails
at once) and then sets the data interface's address (``ip addr replace``) over SSH.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdpalab.config import GuestSettings, Lab, defines_libvirt_domain
from vdpalab.errors import HostError, LayerError
from vdpalab.layers.base import Evidence, Layer, PlannedCommand
from vdpalab.layers.libvirt_domain import DomainFiles, DomainState, LibvirtDomain, suite_domain_xml
from vdpalab.logs import seconds
from vdpalab.parsers.iplink import parse_ip_link
from vdpalab.qemu import CONSOLE_ERRORS, DataNic, QemuSpec, qemu_argv

log = logging.getLogger(__name__)

STOP_WAIT_S = 30
CONSOLE_TAIL_LINES = 40
DEFAULT_RUNTIME_ROOT = "/run/vdpalab"


def guest_runtime_dir(lab: Lab, guest: GuestSettings) -> str:
    """Where a guest's console log, pidfile and QMP socket live on the lab host (``/run/vdpalab/LAB`` by default)."""
    if guest.runtime_dir:
        return os.path.abspath(str(lab.resolve(guest.runtime_dir)))
    return f"{DEFAULT_RUNTIME_ROOT}/{lab.lab.name}"


def guest_path(lab: Lab, guest: GuestSettings, suffix: str) -> str:
    return f"{guest_runtime_dir(lab, guest)}/{guest.name}.{suffix}"


def memory_backend(guest: GuestSettings) -> str:
    """The guest RAM QEMU gets: the lab's choice, else the seed's own RAM (vhost-vdpa) or hugepages (vhost-user)."""
    if guest.memory_backend is not None:
        return guest.memory_backend
    return "file" if guest.vhost_user_socket and not guest.vdpa_device else "none"


@dataclass(frozen=True)
class GuestRun:
    """The host side of one guest: is it running, and was it started from our files."""

    running: bool
    pid: int | None = None
    defined: bool | None = None  # libvirt only
    domain: DomainState | None = None  # libvirt: the domain as probed (its inactive XML)


@dataclass(frozen=True)
class GuestNet:
    """The guest side: its data interface as ``ip link show`` / ``ip -4 -o addr show`` report it."""

    mac: str | None
    mtu: int | None
    up: bool
    addresses: tuple[str, ...] = field(default_factory=tuple)


def nic_id(vdpa_device: str) -> str:
    """``/dev/vhost-vdpa-0`` -> ``vhost-vdpa0`` (the seed's netdev id)."""
    m = re.search(r"(\d+)$", vdpa_device)
    return f"vhost-vdpa{m.group(1)}" if m else "vhost-vdpa"


class Guests(Layer):
    name = "guests"
    requires = ("preflight", "hugepages", "vdpa", "ovs")

    def not_applicable(self) -> str | None:
        if not self.lab.guest:
            return "the lab has no [[guest]]"
        return None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started_at: dict[str, float] = {}  # guest -> when up started its QEMU (monotonic)
        self.boot_s: dict[str, float] = {}  # guest -> seconds from QEMU start to SSH answering

    # --- files on the lab host ---
    @property
    def runtime_dir(self) -> str:
        return f"{DEFAULT_RUNTIME_ROOT}/{self.lab.lab.name}"

    def path(self, guest: GuestSettings, suffix: str) -> str:
        return guest_path(self.lab, guest, suffix)

    def started_here(self) -> list[GuestSettings]:
        return [g for g in self.lab.guest if g.kind in ("qemu", "libvirt")]

    # --- QEMU ---
    def lab_path(self, value: str | None) -> Path | None:
        """A path from the lab file, absolute (relative ones are relative to the lab file)."""
        resolved = self.lab.resolve(value)
        return Path(os.path.abspath(resolved)) if resolved is not None else None

    def qemu_spec(self, guest: GuestSettings) -> QemuSpec:
        nics: list[DataNic] = []
        # the seed's guests run on QEMU's own RAM (vhost-vdpa pins it through the IOMMU); a vhost-user backend maps
        # guest memory, so it must be shared: hugetlbfs on hardware, a memfd in the emulated-qemu lab
        backend = memory_backend(guest)
        mem_path = self.lab.resolve(self.lab.hugepages.mount) if backend == "file" else None
        if guest.vdpa_device:
            nics.append(
                DataNic(
                    "vhost-vdpa",
                    Path(guest.vdpa_device),
                    id=nic_id(guest.vdpa_device),
                    device_options=tuple(guest.device_options),
                )
            )
        elif guest.vhost_user_socket:
            nics.append(
                DataNic(
                    "vhost-user",
                    self.lab_path(guest.vhost_user_socket) or Path(guest.vhost_user_socket),
                    id="net0",
                    mac=guest.mac,
                    device_options=tuple(guest.device_options),
                )
            )
        return QemuSpec(
            binary=guest.qemu_binary,
            name=guest.name,
            accel=guest.accel,
            cpu=guest.cpu,
            smp=guest.vcpus,
            memory_mib=guest.memory_mib,
            disk=Path(guest.image) if guest.image else None,
            kernel=self.lab_path(guest.kernel),
            initrd=self.lab_path(guest.initrd),
            append=guest.append,
            mgmt_ssh_port=guest.mgmt_ssh_port,
            mgmt_mac=guest.mgmt_mac,
            data_nics=tuple(nics),
            memory_backend=backend,  # type: ignore[arg-type]
            mem_path=mem_path,
            serial_log=Path(self.path(guest, "console.log")),
            pidfile=Path(self.path(guest, "pid")),
            qmp_socket=Path(self.path(guest, "qmp")),
            nographic=False,
            no_reboot=False,
            minimal_config=False,
            extra_args=(*guest.extra_qemu_args, "-daemonize"),
        )

    def qemu_command(self, guest: GuestSettings) -> str:
        return shlex.join(qemu_argv(self.qemu_spec(guest)))

    # --- libvirt ---
    def domain_files(self, guest: GuestSettings) -> DomainFiles:
        return DomainFiles(
            xml=self.path(guest, "xml"),
            console_log=self.path(guest, "console.log"),
            kernel=str(self.lab_path(guest.kernel)) if guest.kernel else None,
            initrd=str(self.lab_path(guest.initrd)) if guest.initrd else None,
        )

    def domain_xml(self, guest: GuestSettings) -> str:
        """The domain the suite defines around the seed's ``<interface type='vdpa'>`` (libvirt.domain = "define")."""
        return suite_domain_xml(guest, self.domain_files(guest))

    def libvirt(self, guest: GuestSettings) -> LibvirtDomain:
        """The guest's domain, either way (an existing one edited for the run, or one the suite defines)."""
        return LibvirtDomain(self, guest, self.domain_files(guest))

    # --- probe ---
    def probe_run(self, guest: GuestSettings) -> GuestRun:
        if guest.kind == "qemu":
            pid_text = self.read(["cat", self.path(guest, "pid")])
            pid = pid_text.stdout.strip()
            if not pid_text.ok or not pid.isdigit():
                return GuestRun(False)
            if self.qemu_alive(guest, int(pid)):
                return GuestRun(True, int(pid))
            return GuestRun(False)
        if guest.kind == "libvirt":
            domain = self.libvirt(guest).probe()
            return GuestRun(domain.running, defined=domain.defined, domain=domain)
        return GuestRun(True)  # netns: the emulated lab keeps the namespace and its sshd running

    def qemu_alive(self, guest: GuestSettings, pid: int) -> bool:
        """Alive and ours: /proc/PID/cmdline names our pidfile (a stale pidfile never makes us touch another pid)."""
        result = self.read(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
        return result.ok and self.path(guest, "pid") in result.stdout.split()

    def probe(self) -> dict[str, GuestRun]:
        return {g.name: self.probe_run(g) for g in self.lab.guest}

    def fresh_state(self) -> dict[str, GuestRun]:
        """Nothing started; a netns guest counts as not running here so an offline plan never dials it."""
        return {g.name: self.fresh_run(g) for g in self.lab.guest}

    @staticmethod
    def fresh_run(guest: GuestSettings) -> GuestRun:
        """Nothing started: an existing libvirt domain is there, shut off and without the vDPA interface."""
        if guest.kind != "libvirt":
            return GuestRun(False)
        existing = not defines_libvirt_domain(guest)
        return GuestRun(False, defined=existing, domain=DomainState(defined=existing))

    def probe_net(self, guest: GuestSettings) -> GuestNet:
        iface = guest.interface
        link = parse_ip_link(
            self.read_ok(
                ["ip", "link", "show", "dev", iface], role=guest.name, what=f"ip link show {iface} in {guest.name}"
            )
        ).by_name(iface)
        if link is None:
            raise LayerError(self.name, f"guest {guest.name} has no interface {iface}")
        addrs = self.read_ok(
            ["ip", "-4", "-o", "addr", "show", "dev", iface],
            role=guest.name,
            what=f"ip addr show {iface} in {guest.name}",
        )
        found = tuple(re.findall(r"\binet (\d+\.\d+\.\d+\.\d+/\d+)", addrs))
        return GuestNet(link.mac.lower() if link.mac else None, link.mtu, "UP" in link.flags, found)

    @staticmethod
    def fresh_net() -> GuestNet:
        return GuestNet(None, 1500, False)

    # --- plan ---
    def plan_host(self, state: dict[str, GuestRun]) -> list[PlannedCommand]:
        out: list[PlannedCommand] = []
        made: set[str] = set()
        for guest in self.started_here():
            st = state[guest.name]
            domain_cmds: list[PlannedCommand] = []
            if guest.kind == "libvirt":
                assert st.domain is not None
                domain_cmds = self.libvirt(guest).plan(st.domain)  # raises when the domain must not be touched
                if not domain_cmds:
                    continue
            elif st.running:
                continue
            directory = guest_runtime_dir(self.lab, guest)
            if directory not in made:
                made.add(directory)
                out.append(
                    self.planned(
                        ["mkdir", "-p", directory],
                        "guest runtime files: console logs, "
                        + ("pidfiles, QMP sockets" if guest.kind == "qemu" else "domain XML"),
                    )
                )
            if guest.kind == "qemu":
                out.append(
                    self.planned(self.qemu_command(guest), f"guest {guest.name} (seed 7-7/7-8, in the background)")
                )
            out += domain_cmds
        return out

    def plan_net(self, guest: GuestSettings, net: GuestNet) -> list[PlannedCommand]:
        iface, out = guest.interface, []
        if guest.kind == "netns" and net.mac != guest.mac:
            out.append(
                self.planned(
                    ["ip", "link", "set", "dev", iface, "address", guest.mac], "the lab's MAC", role=guest.name
                )
            )
        if net.mtu != guest.mtu:
            out.append(self.planned(["ip", "link", "set", "dev", iface, "mtu", str(guest.mtu)], "", role=guest.name))
        if guest.ip not in net.addresses:
            out.append(
                self.planned(["ip", "addr", "replace", guest.ip, "dev", iface], "the data address", role=guest.name)
            )
        if not net.up:
            out.append(self.planned(["ip", "link", "set", "dev", iface, "up"], "", role=guest.name))
        return out

    def plan(self, state: Any | None = None) -> list[PlannedCommand]:
        st: dict[str, GuestRun] = self.probe() if state is None else state
        out = self.plan_host(st)
        for guest in self.lab.guest:
            # a guest not running yet cannot be asked: plan from a fresh interface
            net = self.probe_net(guest) if st[guest.name].running else self.fresh_net()
            out += self.plan_net(guest, net)
        return out

    # --- up ---
    def up(self) -> bool:
        state = self.probe()
        host_cmds = self.plan_host(state)
        self.execute([c for c in host_cmds if c.command.startswith("mkdir ")])
        planned = {c.command for c in host_cmds}
        for guest in self.started_here():
            st = state[guest.name]
            if guest.kind == "libvirt":
                assert st.domain is not None
                if not st.running:
                    self.started_at[guest.name] = time.monotonic()
                self.libvirt(guest).up(st.domain)  # the same commands plan_host listed, with the XML put first
            elif self.qemu_command(guest) in planned:
                self.started_at[guest.name] = time.monotonic()
                self.execute([self.planned(self.qemu_command(guest), f"guest {guest.name}")])
        for guest in self.started_here():
            if guest.kind == "qemu" and not state[guest.name].running:
                pid = self.read_ok(["cat", self.path(guest, "pid")], what=f"reading {guest.name}'s pidfile").strip()
                self.journal.record(f"qemu:{guest.name}", int(pid) if pid.isdigit() else None)
        for guest in self.lab.guest:
            self.wait_ssh(guest)
            if guest.name in self.started_at:
                self.boot_s[guest.name] = time.monotonic() - self.started_at[guest.name]
        changed = bool(host_cmds)
        for guest in self.lab.guest:
            net = self.probe_net(guest)
            planned = self.plan_net(guest, net)
            if not planned:
                continue
            self.journal.record(
                f"net:{guest.name}", {"mac": net.mac, "mtu": net.mtu, "up": net.up, "addresses": list(net.addresses)}
            )
            self.execute(planned)
            changed = True
        return changed

    def put_text(self, text: str, remote: str, mode: int = 0o644) -> None:
        """Write ``text`` to ``remote`` on the lab host (``mode`` 0o600 for XML that may carry secrets)."""
        fd, local = tempfile.mkstemp(prefix="vdpalab-", suffix=".xml")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            self.host.put(local, remote, mode=mode)
        finally:
            os.unlink(local)

    def wait_ssh(self, guest: GuestSettings) -> float:
        """Until ``true`` runs over SSH on the guest; on timeout the console tail goes into the error."""
        deadline = time.monotonic() + guest.boot_timeout_s
        start = time.monotonic()
        last = ""
        pid = self.journal.get(f"qemu:{guest.name}") if guest.kind == "qemu" else None
        log.info("guest %s: waiting for SSH on %s:%s (%s boot, up to %s)", guest.name, guest.ssh.address,
                 guest.ssh.port, guest.kind, seconds(guest.boot_timeout_s))
        while True:
            try:
                result = self.on(guest.name).run("true", timeout=max(1.0, min(10.0, deadline - time.monotonic())))
                if result.ok:
                    log.info("guest %s: SSH answered after %s", guest.name, seconds(time.monotonic() - start))
                    return time.monotonic() - start
                last = f"`true` exited with rc={result.rc}"
            except (HostError, OSError) as exc:
                last = str(exc)
                reset = getattr(self.ctx.hosts, "reset", None)
                if callable(reset):
                    reset(guest.name)  # dial again next time
            if pid or guest.name in self.started_at:  # a guest this layer started: fail at once when it died
                problem = self.boot_problem(guest, pid)
                if problem:
                    raise LayerError(self.name, f"guest {guest.name}: {problem} ({last})" + self.console_tail(guest))
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(0.5 if pid else 2.0, left))
        raise LayerError(
            self.name,
            f"guest {guest.name}: no SSH after {guest.boot_timeout_s:g} s ({last})" + self.console_tail(guest),
        )

    def boot_problem(self, guest: GuestSettings, pid: int | None) -> str | None:
        """Why waiting longer for SSH is pointless: QEMU exited, or the console shows a fatal boot error."""
        if guest.kind == "libvirt":
            if not self.libvirt(guest).running():
                return f"libvirt domain {self.libvirt(guest).name} is no longer running"
        elif pid is None or not self.qemu_alive(guest, pid):
            return f"QEMU (pid {pid}) exited before SSH answered"
        result = self.read(["tail", "-n", str(CONSOLE_TAIL_LINES), self.console_log(guest)])
        for marker in CONSOLE_ERRORS:
            if result.ok and marker in result.stdout:
                return f"the console shows {marker!r}"
        return None

    def console_log(self, guest: GuestSettings) -> str:
        return self.libvirt(guest).console_log() if guest.kind == "libvirt" else self.path(guest, "console.log")

    def console_tail(self, guest: GuestSettings) -> str:
        if guest.kind == "netns":
            return ""
        log = self.console_log(guest)
        try:
            result = self.read(["tail", "-n", str(CONSOLE_TAIL_LINES), log])
        except HostError as exc:
            return f"\n(console log unreadable: {exc})"
        text = result.stdout.rstrip() if result.ok else f"(no console log: {result.stderr.strip()})"
        return f"\n--- console {log} (last {CONSOLE_TAIL_LINES} lines) ---\n{text}"

    # --- verify ---
    def verify(self) -> Evidence:
        problems, details = [], []
        for guest in self.lab.guest:
            run = self.probe_run(guest)
            if guest.kind != "netns" and not run.running:
                problems.append(f"guest {guest.name} is not running")
                continue
            details.append(
                f"{guest.name}: {guest.kind}"
                + (f" pid {run.pid}" if run.pid else "")
                + (f", boot to SSH {self.boot_s[guest.name]:.1f} s" if guest.name in self.boot_s else "")
            )
            try:
                net = self.probe_net(guest)
            except (HostError, OSError, LayerError) as exc:
                problems.append(f"guest {guest.name} not reachable over SSH: {exc}")
                continue
            details.append(
                f"{guest.name} {guest.interface}: mac {net.mac} mtu {net.mtu} up {net.up} "
                f"inet {', '.join(net.addresses) or '-'}"
            )
            if net.mac != guest.mac:
                problems.append(f"{guest.name} {guest.interface} MAC is {net.mac}, the lab wants {guest.mac}")
            if guest.ip not in net.addresses:
                problems.append(f"{guest.name} {guest.interface} lacks {guest.ip}")
            if net.mtu != guest.mtu:
                problems.append(f"{guest.name} {guest.interface} MTU is {net.mtu}, the lab wants {guest.mtu}")
            if not net.up:
                problems.append(f"{guest.name} {guest.interface} is down")
        if problems:
            return Evidence(False, "; ".join(problems), tuple(details))
        return Evidence(True, ", ".join(f"{g.name} {g.ip}" for g in self.lab.guest), tuple(details))

    # --- down ---
    def down_net(self, guest: GuestSettings) -> list[PlannedCommand]:
        before = self.journal.get(f"net:{guest.name}")
        started = self.journal.get(f"qemu:{guest.name}") or (
            guest.kind == "libvirt" and self.libvirt(guest).started_here()
        )
        if not before or started:
            return []  # nothing changed, or the guest goes away with its settings
        iface, out = guest.interface, []
        if guest.ip not in before["addresses"]:
            out.append(self.planned(["ip", "addr", "del", guest.ip, "dev", iface], "", role=guest.name))
        if before["mtu"] is not None and before["mtu"] != guest.mtu:
            out.append(
                self.planned(["ip", "link", "set", "dev", iface, "mtu", str(before["mtu"])], "", role=guest.name)
            )
        if guest.kind == "netns" and before["mac"] and before["mac"] != guest.mac:
            out.append(self.planned(["ip", "link", "set", "dev", iface, "address", before["mac"]], "", role=guest.name))
        return out

    def qmp_quit(self, guest: GuestSettings) -> PlannedCommand:
        qmp = shlex.quote(f"UNIX-CONNECT:{self.path(guest, 'qmp')}")
        return self.planned(
            'printf \'%s\\n\' \'{"execute":"qmp_capabilities"}\' \'{"execute":"quit"}\' | socat - ' + qmp,
            "QMP quit (a clean shutdown)",
            check=False,
        )

    def wait_gone(self, pid: int) -> PlannedCommand:
        return self.planned(
            f"for i in $(seq 1 {STOP_WAIT_S}); do kill -0 {pid} 2>/dev/null || exit 0; sleep 1; done; exit 1",
            f"wait up to {STOP_WAIT_S} s for QEMU to exit",
            check=False,
        )

    def down_plan(self) -> list[PlannedCommand]:
        out: list[PlannedCommand] = []
        for guest in self.lab.guest:
            out += self.down_net(guest)
        for guest in reversed(self.lab.guest):
            pid = self.journal.get(f"qemu:{guest.name}")
            if pid:
                out += [
                    self.qmp_quit(guest),
                    self.wait_gone(pid),
                    self.planned(["rm", "-f", self.path(guest, "pid"), self.path(guest, "qmp")]),
                ]
            if guest.kind == "libvirt":
                out += self.libvirt(guest).down_plan()
        return out

    def down(self) -> None:
        for guest in self.lab.guest:
            self.execute(self.down_net(guest))
        for guest in reversed(self.lab.guest):
            pid = self.journal.get(f"qemu:{guest.name}")
            if pid and self.qemu_alive(guest, pid):
                quit_result = self.execute([self.qmp_quit(guest)])[0]
                if not quit_result.ok:  # no socat, or QMP not answering: SIGTERM is QEMU's other clean exit
                    self.execute([self.planned(["kill", "-TERM", str(pid)], "QMP failed: SIGTERM")])
                if not self.execute([self.wait_gone(pid)])[0].ok and self.qemu_alive(guest, pid):
                    self.execute([self.planned(["kill", "-KILL", str(pid)], "QEMU did not exit")])
            if pid:
                self.execute([self.planned(["rm", "-f", self.path(guest, "pid"), self.path(guest, "qmp")])])
            if guest.kind == "libvirt":
                self.libvirt(guest).down()
        self.journal.clear()

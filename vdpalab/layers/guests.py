"""Guests: start the two guests on their vDPA devices, wait for SSH, give them their addresses (seed 7-7, 7-8).

* ``kind = "qemu"``: the seed's command line (built by ``vdpalab.emulated.qemu.qemu_argv``)
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

import os
import re
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from vdpalab.config import GuestSettings, Lab
from vdpalab.emulated.qemu import CONSOLE_ERRORS, DataNic, QemuSpec, qemu_argv
from vdpalab.errors import HostError, LayerError
from vdpalab.layers.base import Evidence, Layer, PlannedCommand
from vdpalab.parsers.iplink import parse_ip_link
from vdpalab.parsers.libvirt import parse_libvirt_xml

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
    foreign: bool = False  # libvirt: a domain of that name the suite did not define


@dataclass(frozen=True)
class GuestNet:
    """The guest side: its data interface as ``ip link show`` / ``ip -4 -o addr show`` report it."""

    mac: str | None
    mtu: int | None
    up: bool
    addresses: tuple[str, ...] = field(default_factory=tuple)


def quoteattr(value: str) -> str:
    """An XML attribute in single quotes, as the seed writes ``<source dev='/dev/vhost-vdpa-0'/>``."""
    return "'" + escape(value, {"'": "&apos;", '"': "&quot;"}) + "'"


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
    def domain_xml(self, guest: GuestSettings) -> str:
        """A whole domain around the seed's ``<interface type='vdpa'>`` (the seed edited a virt-manager domain)."""
        dom_type = "kvm" if guest.accel == "kvm" else "qemu"
        cpu = (
            "<cpu mode='host-passthrough'/>"
            if guest.cpu == "host"
            else (f"<cpu mode='custom'><model>{guest.cpu}</model></cpu>")
        )
        disk = ""
        if guest.image:
            disk = (
                "    <disk type='file' device='disk'>\n"
                "      <driver name='qemu' type='qcow2'/>\n"
                f"      <source file={quoteattr(guest.image)}/>\n"
                "      <target dev='hda' bus='ide'/>\n"
                "    </disk>\n"
            )
        iface = ""
        if guest.vdpa_device:
            iface = (
                f"    <interface type='vdpa'>\n      <source dev={quoteattr(guest.vdpa_device)}/>\n    </interface>\n"
            )
        log = quoteattr(self.path(guest, "console.log"))
        return (
            f"<domain type='{dom_type}'>\n"
            f"  <name>{guest.name}</name>\n"
            f"  <memory unit='MiB'>{guest.memory_mib}</memory>\n"
            f"  <vcpu>{guest.vcpus}</vcpu>\n"
            "  <os>\n    <type arch='x86_64'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n"
            "  <features>\n    <acpi/>\n    <apic/>\n  </features>\n"
            f"  {cpu}\n"
            "  <devices>\n"
            f"    <emulator>{guest.qemu_binary}</emulator>\n"
            f"{disk}{iface}"
            "    <serial type='pty'>\n"
            f"      <log file={log} append='off'/>\n"
            "      <target port='0'/>\n"
            "    </serial>\n"
            "    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n"
            "  </devices>\n"
            "</domain>\n"
        )

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
            state = self.read(["virsh", "domstate", guest.name])
            if not state.ok:
                return GuestRun(False, defined=False)
            foreign = not self.journal.get(f"defined:{guest.name}") and not self.has_vdpa_interface(guest)
            return GuestRun(state.stdout.strip() == "running", defined=True, foreign=foreign)
        return GuestRun(True)  # netns: the emulated lab keeps the namespace and its sshd running

    def qemu_alive(self, guest: GuestSettings, pid: int) -> bool:
        """Alive and ours: /proc/PID/cmdline names our pidfile (a stale pidfile never makes us touch another pid)."""
        result = self.read(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
        return result.ok and self.path(guest, "pid") in result.stdout.split()

    def has_vdpa_interface(self, guest: GuestSettings) -> bool:
        xml = self.read(["virsh", "dumpxml", guest.name])
        if not xml.ok:
            return False
        domain = parse_libvirt_xml(xml.stdout)
        return any(i.type == "vdpa" and i.source_dev == guest.vdpa_device for i in domain.interfaces)

    def probe(self) -> dict[str, GuestRun]:
        return {g.name: self.probe_run(g) for g in self.lab.guest}

    def fresh_state(self) -> dict[str, GuestRun]:
        """Nothing started; a netns guest counts as not running here so an offline plan never dials it."""
        return {g.name: GuestRun(False, defined=False if g.kind == "libvirt" else None) for g in self.lab.guest}

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
            if st.running:
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
            else:
                if st.foreign:
                    raise LayerError(
                        self.name,
                        f"libvirt domain {guest.name} exists without <interface type='vdpa'> on {guest.vdpa_device}; "
                        "the suite does not redefine a domain it did not create",
                    )
                if not st.defined:
                    out.append(
                        self.planned(
                            ["virsh", "define", self.path(guest, "xml")],
                            f"domain {guest.name} (its XML is put to the host first)",
                        )
                    )
                out.append(self.planned(["virsh", "start", guest.name], f"guest {guest.name}"))
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
        for cmd in host_cmds:
            words = shlex.split(cmd.command)
            if words[:2] == ["virsh", "define"]:
                self.journal.record(f"defined:{words[2].rsplit('/', 1)[1].removesuffix('.xml')}", True)
            elif words[:2] == ["virsh", "start"]:
                self.journal.record(f"started:{words[2]}", True)
        self.execute([c for c in host_cmds if c.command.startswith("mkdir ")])
        host_cmds = [c for c in host_cmds if not c.command.startswith("mkdir ")]
        for guest in self.started_here():
            if guest.kind == "libvirt" and not state[guest.name].defined:
                self.put_text(self.domain_xml(guest), self.path(guest, "xml"))
        qemu_starts = {self.qemu_command(g): g.name for g in self.started_here() if g.kind == "qemu"}
        for cmd in host_cmds:
            if cmd.command in qemu_starts:
                self.started_at[qemu_starts[cmd.command]] = time.monotonic()
            self.execute([cmd])
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

    def put_text(self, text: str, remote: str) -> None:
        fd, local = tempfile.mkstemp(prefix="vdpalab-", suffix=".xml")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            self.host.put(local, remote, mode=0o644)
        finally:
            os.unlink(local)

    def wait_ssh(self, guest: GuestSettings) -> float:
        """Until ``true`` runs over SSH on the guest; on timeout the console tail goes into the error."""
        deadline = time.monotonic() + guest.boot_timeout_s
        start = time.monotonic()
        last = ""
        pid = self.journal.get(f"qemu:{guest.name}") if guest.kind == "qemu" else None
        while True:
            try:
                result = self.on(guest.name).run("true", timeout=max(1.0, min(10.0, deadline - time.monotonic())))
                if result.ok:
                    return time.monotonic() - start
                last = f"`true` exited with rc={result.rc}"
            except (HostError, OSError) as exc:
                last = str(exc)
                reset = getattr(self.ctx.hosts, "reset", None)
                if callable(reset):
                    reset(guest.name)  # dial again next time
            if pid:  # a QEMU this layer started: fail at once when it died or its kernel panicked
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

    def boot_problem(self, guest: GuestSettings, pid: int) -> str | None:
        """Why waiting longer for SSH is pointless: QEMU exited, or the console shows a fatal boot error."""
        if not self.qemu_alive(guest, pid):
            return f"QEMU (pid {pid}) exited before SSH answered"
        result = self.read(["tail", "-n", str(CONSOLE_TAIL_LINES), self.path(guest, "console.log")])
        for marker in CONSOLE_ERRORS:
            if result.ok and marker in result.stdout:
                return f"the console shows {marker!r}"
        return None

    def console_tail(self, guest: GuestSettings) -> str:
        if guest.kind == "netns":
            return ""
        try:
            result = self.read(["tail", "-n", str(CONSOLE_TAIL_LINES), self.path(guest, "console.log")])
        except HostError as exc:
            return f"\n(console log unreadable: {exc})"
        text = result.stdout.rstrip() if result.ok else f"(no console log: {result.stderr.strip()})"
        return f"\n--- console {self.path(guest, 'console.log')} (last {CONSOLE_TAIL_LINES} lines) ---\n{text}"

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
        if not before or self.journal.get(f"qemu:{guest.name}") or self.journal.get(f"started:{guest.name}"):
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
            if self.journal.get(f"started:{guest.name}"):
                out.append(self.planned(["virsh", "destroy", guest.name], "stop the guest up started"))
            if self.journal.get(f"defined:{guest.name}"):
                out.append(self.planned(["virsh", "undefine", guest.name], "remove the domain up defined"))
                out.append(self.planned(["rm", "-f", self.path(guest, "xml")]))
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
            if self.journal.get(f"started:{guest.name}"):
                self.execute([self.planned(["virsh", "destroy", guest.name])])
            if self.journal.get(f"defined:{guest.name}"):
                self.execute(
                    [
                        self.planned(["virsh", "undefine", guest.name]),
                        self.planned(["rm", "-f", self.path(guest, "xml")]),
                    ]
                )
        self.journal.clear()

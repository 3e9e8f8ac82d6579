"""Preflight: is this host able to run the seed at all, and is it safe to touch? Changes nothing.

Checks (seed section 1-1 and 2-1): kernel >= lab.kernel.min_version (vDPA is upstream since 5.7,
the seed ran 5.11), the kernel command line arguments (hugepages, IOMMU), the tools the layers
call, QEMU's vhost-vdpa netdev (the seed rebuilt QEMU with ``--enable-vhost-vdpa`` for it),
libvirt >= 7.4 for libvirt guests. Records the versions of kernel, NIC driver and firmware,
OFED, OVS, DPDK, QEMU and libvirt in ``ctx.versions`` for the reports (None when absent).
Runs the safety checks (``vdpalab.layers.safety``) last; a refusal breaks every layer after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vdpalab.errors import ParseError
from vdpalab.guests import driver_for
from vdpalab.hosts.base import CommandResult
from vdpalab.layers import _text
from vdpalab.layers.base import Evidence, Layer, PlannedCommand
from vdpalab.layers.safety import check_safety
from vdpalab.parsers.ovs import ovsdb_optional, ovsdb_row, ovsdb_text, vsctl_list_argv

LIBVIRT_MIN = "7.4"
# the DPDK version OVS recorded at dpdk-init ("DPDK 22.11.1"): a column since OVS 2.11, read when --version has none
DPDK_VERSION_ARGV = vsctl_list_argv([("Open_vSwitch", ("dpdk_version",))])
VERSION_KEYS = ("kernel", "nic_driver", "nic_firmware", "ofed", "ovs", "dpdk", "qemu", "libvirt")


@dataclass
class PreflightState:
    checks: list[tuple[bool, str]] = field(default_factory=list)  # (ok, what)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(VERSION_KEYS))

    def check(self, ok: bool, what: str) -> None:
        self.checks.append((ok, what))


def ovs_versions(text: str) -> tuple[str | None, str | None]:
    """``ovs-vswitchd --version`` -> (OVS version, DPDK version or None)."""
    ovs = dpdk = None
    for line in text.splitlines():
        m = re.search(r"\(Open vSwitch\)\s+(\S+)", line)
        if m:
            ovs = m.group(1)
        m = re.match(r"\s*DPDK\s+(\S+)", line)
        if m:
            dpdk = m.group(1)
    return ovs, dpdk


def qemu_version(text: str) -> str | None:
    m = re.search(r"QEMU emulator version (\S+)(?: \((\S+)\))?", text)
    if not m:
        return None
    return f"{m.group(1)} ({m.group(2)})" if m.group(2) else m.group(1)


class Preflight(Layer):
    name = "preflight"
    requires = ()

    def _run(self, cmd: str | list[str], **kwargs: Any) -> CommandResult:
        return self.read(cmd, **kwargs)

    @property
    def pci_nic(self) -> bool:
        """Whether the lab file gives any PF a PCI address (a real NIC port: SR-IOV, devlink, driver, OFED)."""
        return any(pf.pci for pf in self.lab.pf)

    @property
    def vswitchd(self) -> str:
        return self.lab.ovs.vswitchd_binary or "ovs-vswitchd"

    def required_tools(self) -> list[str]:
        """What the lab file asks for: devlink for a PCI NIC, the vdpa tool for vDPA, OVS, and what guests need."""
        tools = ["devlink"] if self.pci_nic else []
        if self.lab.vdpa.enabled:
            tools.append("vdpa")
        tools.append("ovs-vsctl")
        for guest in self.lab.guest:
            tools += [t for t in driver_for(guest).needs().host_tools if t not in tools]
        return tools

    def probe(self) -> PreflightState:
        state = PreflightState()
        lab = self.lab
        self.prefetch([
            ["uname", "-r"], *([["cat", "/proc/cmdline"]] if lab.kernel.required_cmdline else []),
            *(f"command -v {tool}" for tool in self.required_tools()),
            [self.vswitchd, "--version"],
        ])  # fmt: skip
        kernel = self.read_ok(["uname", "-r"], what="uname -r").strip()
        state.versions["kernel"] = kernel
        state.check(
            _text.version_at_least(kernel, lab.kernel.min_version),
            f"kernel {kernel} >= {lab.kernel.min_version}",
        )
        if lab.kernel.required_cmdline:
            cmdline = self.read_ok(["cat", "/proc/cmdline"], what="reading /proc/cmdline")
            missing = _text.cmdline_missing(cmdline, lab.kernel.required_cmdline)
            state.check(
                not missing,
                "kernel command line has "
                + " ".join(lab.kernel.required_cmdline)
                + (f" (missing: {' '.join(missing)}; add them to GRUB_CMDLINE_LINUX and reboot)" if missing else ""),
            )
        for tool in self.required_tools():
            found = self._run(f"command -v {tool}")
            state.check(
                found.ok and bool(found.stdout.strip()), f"tool {tool} found" + ("" if found.ok else " (missing)")
            )
        if not self.pci_nic:
            state.notes.append("no PF has a PCI address in the lab: devlink, NIC driver/firmware and OFED not checked")
        self._probe_qemu(state)
        self._probe_libvirt(state)
        if self.pci_nic:
            ofed = self._run(["ofed_info", "-s"])
            if ofed.ok and ofed.stdout.strip():
                state.versions["ofed"] = ofed.stdout.strip().rstrip(":").removeprefix("MLNX_OFED_LINUX-")
        self._probe_ovs(state)
        # safety last: a refusal raises, after the versions above are known
        self.ctx.versions.update(state.versions)
        env_reliable = not (self.host.sudo_all and self.host.needs_sudo())
        report = check_safety(lab, self._run, env_reliable=env_reliable)
        state.notes.extend(report.notes)
        if report.drivers:
            first = next(iter(report.drivers.values()))
            state.versions["nic_driver"] = first.driver
            state.versions["nic_firmware"] = first.firmware_version
        for name, bus in report.bus_info.items():
            state.check(True, f"PF {name} is PCI {bus} as lab.toml says")
        if any(pf.switchdev for pf in lab.pf):
            state.check(
                True,
                "no switchdev PF carries the default route"
                + (f" ({', '.join(report.default_route_devs)})" if report.default_route_devs else "")
                + " or the SSH session's address"
                + (
                    f" ({report.ssh_server_address} on {', '.join(report.ssh_devs) or '?'})"
                    if report.ssh_server_address
                    else ""
                ),
            )
        self.ctx.versions.update(state.versions)
        return state

    def _probe_qemu(self, state: PreflightState) -> None:
        binaries: dict[str, set[str]] = {}
        for guest in self.lab.guest:
            needs = driver_for(guest).needs()
            if needs.qemu_binary:
                binaries.setdefault(needs.qemu_binary, set()).update(needs.netdev_backends)
        for binary, backends in binaries.items():
            version = self._run([binary, "--version"])
            if not version.ok:
                state.check(False, f"QEMU {binary} runs (rc={version.rc}: {version.stderr.strip()[:120]})")
                continue
            if state.versions["qemu"] is None:
                state.versions["qemu"] = qemu_version(version.stdout)
            listing = self._run([binary, "-netdev", "help"])
            have = set(_text.lines(listing.stdout))
            for backend in sorted(backends):
                state.check(
                    backend in have,
                    f"{binary} supports -netdev {backend}"
                    + (
                        ""
                        if backend in have
                        else " (not in `-netdev help`: rebuild QEMU with --enable-" + backend + ")"
                    ),
                )

    def _probe_libvirt(self, state: PreflightState) -> None:
        if not any(driver_for(g).needs().libvirt for g in self.lab.guest):
            return
        result = self._run(["virsh", "--version"])
        text = result.stdout.strip() if result.ok else ""
        if not text:
            result = self._run(["libvirtd", "-V"])
            m = re.search(r"(\d+\.\d+(?:\.\d+)?)", result.stdout) if result.ok else None
            text = m.group(1) if m else ""
        state.versions["libvirt"] = text or None
        state.check(
            bool(text) and _text.version_at_least(text, LIBVIRT_MIN),
            f"libvirt {text or '(not found)'} >= {LIBVIRT_MIN} (interface type='vdpa')",
        )

    def _probe_ovs(self, state: PreflightState) -> None:
        binary = self.vswitchd
        result = self._run([binary, "--version"])
        if not result.ok:
            state.check(False, f"{binary} --version runs (rc={result.rc})")
            return
        ovs, dpdk = ovs_versions(result.stdout)
        state.versions["ovs"] = ovs
        if dpdk is None and self.lab.ovs.dpdk:
            db = self._run(DPDK_VERSION_ARGV)
            try:
                value = ovsdb_optional(ovsdb_row(db.stdout)["dpdk_version"]) if db.ok else None
            except (ParseError, KeyError):
                value = None  # an OVS without the column, or an answer that is not the table: unknown
            m = re.search(r"DPDK\s+(\S+)$", ovsdb_text(value).strip()) if value is not None else None
            dpdk = m.group(1) if m else None
            if dpdk is None:
                state.notes.append("DPDK version unknown (no DPDK line in ovs-vswitchd --version, no dpdk_version yet)")
        state.versions["dpdk"] = dpdk

    def plan(self, state: Any | None = None) -> list[PlannedCommand]:
        return []  # preflight only reads

    def fresh_state(self) -> None:
        return None

    def up(self) -> bool:
        return False  # verify does the reading: nothing to bring up

    def verify(self) -> Evidence:
        state = self.probe()
        failed = [what for ok, what in state.checks if not ok]
        details = (
            tuple(f"{'ok' if ok else 'FAILED'}: {what}" for ok, what in state.checks)
            + tuple(f"note: {n}" for n in state.notes)
            + tuple(f"version {k}: {v}" for k, v in state.versions.items())
        )
        if failed:
            return Evidence(False, "; ".join(failed), details)
        return Evidence(True, f"{len(state.checks)} checks passed", details)

    def down(self) -> None:
        return None  # preflight changed nothing

"""SR-IOV: the number of VFs per PF and each VF's MAC (seed 2-2, its /etc/rc.local).

``echo 1 > /sys/class/net/ens2f0/device/sriov_numvfs`` for both PFs, then
``ip link set ens2f0 vf 0 mac 00:11:22:33:44:00`` (the seed found the guest did not see the VF
without a MAC). VFs that are already right are left alone: a PF that has the wanted number of
VFs is never reset to 0 and back (that would unplug the VFs and everything bound to them).
``down`` puts back the previous number of VFs (0 on a fresh host) and the MACs it changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vdpalab.config import PFSettings
from vdpalab.errors import LayerError
from vdpalab.layers.base import Evidence, Layer, PlannedCommand
from vdpalab.parsers.iplink import parse_ip_link


@dataclass(frozen=True)
class PfVfState:
    numvfs: int
    macs: dict[int, str] = field(default_factory=dict)


def numvfs_path(pf: str) -> str:
    return f"/sys/class/net/{pf}/device/sriov_numvfs"


class Sriov(Layer):
    name = "sriov"
    requires = ("preflight",)

    def pfs(self) -> list[PFSettings]:
        """The PFs to give VFs: SR-IOV is a PCI feature, so only PFs with a PCI address in the lab file."""
        return [pf for pf in self.lab.pf if pf.num_vfs > 0 and pf.pci]

    def not_applicable(self) -> str | None:
        wanted = [pf.name for pf in self.lab.pf if pf.num_vfs > 0]
        if not wanted:
            return "no PF in the lab asks for VFs (num_vfs = 0)"
        if not self.pfs():
            return f"no SR-IOV NIC: no PF asking for VFs has a PCI address in the lab ({', '.join(wanted)})"
        return None

    def probe(self) -> dict[str, PfVfState]:
        state = {}
        for pf in self.pfs():
            text = self.read_ok(["cat", numvfs_path(pf.name)], what=f"reading {pf.name}'s sriov_numvfs").strip()
            if not text.isdigit():
                raise LayerError(self.name, f"{numvfs_path(pf.name)} reads {text!r}, not a number")
            link = parse_ip_link(self.read_json_ok(
                ["ip", "-j", "link", "show", pf.name], ["ip", "link", "show", pf.name], what=f"ip link show {pf.name}"
            ))
            found = link.by_name(pf.name)
            if found is None:
                raise LayerError(self.name, f"`ip link show {pf.name}` does not list {pf.name}")
            macs = {vf.vf: vf.mac.lower() for vf in found.vfs if vf.mac}
            state[pf.name] = PfVfState(int(text), macs)
        return state

    def fresh_state(self) -> dict[str, PfVfState]:
        return {pf.name: PfVfState(0) for pf in self.pfs()}

    def plan(self, state: Any | None = None) -> list[PlannedCommand]:
        st: dict[str, PfVfState] = self.probe() if state is None else state
        numvfs, macs = [], []
        for pf in self.pfs():
            cur = st[pf.name]
            if cur.numvfs != pf.num_vfs:
                if cur.numvfs != 0:  # the kernel refuses N -> M directly
                    numvfs.append(self.planned(f"echo 0 > {numvfs_path(pf.name)}", f"{pf.name}: {cur.numvfs} VFs -> 0"))
                numvfs.append(
                    self.planned(f"echo {pf.num_vfs} > {numvfs_path(pf.name)}", f"{pf.name}: create {pf.num_vfs} VF(s)")
                )
            for vf, mac in enumerate(pf.vf_macs):
                have = cur.macs.get(vf) if cur.numvfs == pf.num_vfs else None
                if have != mac:
                    macs.append(
                        self.planned(
                            ["ip", "link", "set", pf.name, "vf", str(vf), "mac", mac],
                            f"{pf.name} VF {vf} MAC (the guest does not see the VF without it)",
                        )
                    )
        return numvfs + macs  # the seed's order: all VF counts, then all MACs

    def journal_before(self, state: Any, planned: list[PlannedCommand]) -> None:
        st: dict[str, PfVfState] = state
        for pf in self.pfs():
            cur = st[pf.name]
            if cur.numvfs != pf.num_vfs:
                self.journal.record(f"numvfs:{pf.name}", cur.numvfs)
            elif any(f"ip link set {pf.name} vf " in cmd.command for cmd in planned):
                for vf, mac in enumerate(pf.vf_macs):
                    if cur.macs.get(vf) not in (None, mac):
                        self.journal.record(f"mac:{pf.name}:{vf}", cur.macs[vf])

    def verify(self) -> Evidence:
        st = self.probe()
        problems, details = [], []
        for pf in self.pfs():
            cur = st[pf.name]
            details.append(f"{pf.name}: sriov_numvfs {cur.numvfs}, VF MACs {cur.macs or '(none listed)'}")
            if cur.numvfs != pf.num_vfs:
                problems.append(f"{pf.name} has {cur.numvfs} VFs, the lab wants {pf.num_vfs}")
            for vf, mac in enumerate(pf.vf_macs):
                if cur.macs.get(vf) != mac:
                    problems.append(f"{pf.name} VF {vf} MAC is {cur.macs.get(vf)}, the lab wants {mac}")
        if problems:
            return Evidence(False, "; ".join(problems), tuple(details))
        return Evidence(True, ", ".join(f"{pf.name}: {pf.num_vfs} VF(s)" for pf in self.pfs()), tuple(details))

    def down_plan(self) -> list[PlannedCommand]:
        planned = []
        for pf in self.pfs():
            for vf in range(pf.num_vfs):
                before = self.journal.get(f"mac:{pf.name}:{vf}")
                if before is not None:
                    planned.append(self.planned(["ip", "link", "set", pf.name, "vf", str(vf), "mac", before]))
        for pf in self.pfs():
            before = self.journal.get(f"numvfs:{pf.name}")
            if before is None:
                continue
            if before != 0:
                planned.append(self.planned(f"echo 0 > {numvfs_path(pf.name)}"))
            planned.append(self.planned(f"echo {before} > {numvfs_path(pf.name)}", f"{pf.name}: back to {before} VFs"))
        return planned

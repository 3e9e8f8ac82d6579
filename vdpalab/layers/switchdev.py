"""switchdev: each PF's eswitch in switchdev mode, with VF representors and TC offload (seed 6).

The seed's dance, for both PFs at once: unbind the VFs from mlx5_core, set the eswitch mode,
rebind the VFs (the mode cannot change while VFs are bound)::

    echo 0000:07:00.2 > /sys/bus/pci/drivers/mlx5_core/unbind
    echo 0000:07:01.2 > /sys/bus/pci/drivers/mlx5_core/unbind
    devlink dev eswitch set pci/0000:07:00.0 mode switchdev
    devlink dev eswitch set pci/0000:07:00.1 mode switchdev
    echo 0000:07:00.2 > /sys/bus/pci/drivers/mlx5_core/bind
    echo 0000:07:01.2 > /sys/bus/pci/drivers/mlx5_core/bind

Verified with ``devlink -j dev eswitch show`` (mode switchdev), ``devlink -j port show`` (a ``pcivf``
port whose netdev is the lab's representor name, e.g. ens2f0_0) and ``ethtool --json -k PF`` (its text on an
ethtool without JSON, before 6.x)
(``hw-tc-offload: on``, set with ``ethtool -K`` when off). ``down`` goes back to the recorded mode
with the same unbind/rebind dance.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from vdpalab.config import PFSettings
from vdpalab.errors import LayerError
from vdpalab.layers.base import Evidence, Layer, PlannedCommand
from vdpalab.parsers.devlink import parse_devlink_eswitch, parse_devlink_port
from vdpalab.parsers.ethtool import parse_ethtool_k

VF_DRIVER = "mlx5_core"
ABSENT = "absent"  # the VF does not exist yet (sriov not up): it will appear bound to its PF's driver


@dataclass(frozen=True)
class PfSwitchState:
    mode: str
    vf_drivers: dict[str, str | None] = field(default_factory=dict)  # VF PCI -> driver, None, or ABSENT
    hw_tc_offload: bool | None = None


def driver_path(action: str) -> str:
    return f"/sys/bus/pci/drivers/{VF_DRIVER}/{action}"


class Switchdev(Layer):
    name = "switchdev"
    requires = ("preflight", "sriov")

    def pfs(self) -> list[PFSettings]:
        """The PFs to put in switchdev mode: a devlink eswitch is a PCI device's, so only PFs with a PCI address."""
        return [pf for pf in self.lab.pf if pf.switchdev and pf.pci]

    def not_applicable(self) -> str | None:
        wanted = [pf.name for pf in self.lab.pf if pf.switchdev]
        if not wanted:
            return "no PF in the lab has switchdev = true"
        if not self.pfs():
            return f"no devlink eswitch: no PF with switchdev = true has a PCI address in the lab ({', '.join(wanted)})"
        return None

    def vf_pcis(self, pf: PFSettings) -> list[str]:
        """The lab's VF PCI addresses, else read from the PF's virtfnN links (needs the VFs to exist)."""
        if pf.vf_pcis:
            return list(pf.vf_pcis)
        out = []
        for n in range(pf.num_vfs):
            result = self.read(["readlink", "-f", f"/sys/class/net/{pf.name}/device/virtfn{n}"])
            if result.ok and result.stdout.strip():
                out.append(posixpath.basename(result.stdout.strip()))
        return out

    def probe(self) -> dict[str, PfSwitchState]:
        state = {}
        for pf in self.pfs():
            dev = f"pci/{pf.pci}"
            esw = parse_devlink_eswitch(self.read_json_ok(
                ["devlink", "-j", "dev", "eswitch", "show", dev], ["devlink", "dev", "eswitch", "show", dev],
                what=f"devlink eswitch show {dev}",
            ))
            if esw.dev != dev or esw.mode is None:
                raise LayerError(self.name, f"`devlink dev eswitch show {dev}` answered for {esw.dev}, mode {esw.mode}")
            mode = esw.mode
            drivers: dict[str, str | None] = {}
            for vf in self.vf_pcis(pf):
                # readlink -f: bound -> .../drivers/NAME; unbound -> .../VF/driver (rc 0); no such VF -> rc 1
                result = self.read(["readlink", "-f", f"/sys/bus/pci/devices/{vf}/driver"])
                target = result.stdout.strip()
                if not result.ok or not target:
                    drivers[vf] = ABSENT
                elif "/drivers/" in target:
                    drivers[vf] = posixpath.basename(target)
                else:
                    drivers[vf] = None
            features = parse_ethtool_k(self.read_json_ok(
                ["ethtool", "--json", "-k", pf.name], ["ethtool", "-k", pf.name], what=f"ethtool -k {pf.name}"
            ))
            state[pf.name] = PfSwitchState(mode, drivers, features.is_on("hw-tc-offload"))
        return state

    def fresh_state(self) -> dict[str, PfSwitchState]:
        return {pf.name: PfSwitchState("legacy", dict.fromkeys(pf.vf_pcis, ABSENT), True) for pf in self.pfs()}

    def plan(self, state: Any | None = None) -> list[PlannedCommand]:
        st: dict[str, PfSwitchState] = self.probe() if state is None else state
        unbind, modes, bind, tc = [], [], [], []
        for pf in self.pfs():
            cur = st[pf.name]
            if cur.mode != "switchdev":
                for vf, driver in cur.vf_drivers.items():
                    if driver in (VF_DRIVER, ABSENT):
                        unbind.append(self.planned(f"echo {vf} > {driver_path('unbind')}", f"{pf.name} VF {vf}"))
                        bind.append(self.planned(f"echo {vf} > {driver_path('bind')}", f"{pf.name} VF {vf}"))
                    elif driver is not None:
                        raise LayerError(
                            self.name,
                            f"VF {vf} of {pf.name} is bound to {driver}, not {VF_DRIVER}: unbind it first "
                            "(vDPA on this NIC needs the VF on mlx5_core)",
                        )
                modes.append(
                    self.planned(
                        ["devlink", "dev", "eswitch", "set", f"pci/{pf.pci}", "mode", "switchdev"],
                        f"{pf.name}: {cur.mode} -> switchdev (creates the VF representors)",
                    )
                )
            if cur.hw_tc_offload is False:
                tc.append(self.planned(["ethtool", "-K", pf.name, "hw-tc-offload", "on"], "TC flower offload"))
        return unbind + modes + bind + tc

    def journal_before(self, state: Any, planned: list[PlannedCommand]) -> None:
        st: dict[str, PfSwitchState] = state
        for pf in self.pfs():
            cur = st[pf.name]
            if cur.mode != "switchdev":
                rebound = [vf for vf, driver in cur.vf_drivers.items() if driver in (VF_DRIVER, ABSENT)]
                self.journal.record(f"mode:{pf.name}", {"pci": pf.pci, "before": cur.mode, "vfs": rebound})
            if cur.hw_tc_offload is False:
                self.journal.record(f"hw-tc-offload:{pf.name}", "off")

    def verify(self) -> Evidence:
        st = self.probe()
        ports = parse_devlink_port(self.read_json_ok(
            ["devlink", "-j", "port", "show"], ["devlink", "port", "show"], what="devlink port show"
        )).ports
        problems, details = [], []
        for pf in self.pfs():
            cur = st[pf.name]
            details.append(f"{pf.name} (pci/{pf.pci}): mode {cur.mode}, hw-tc-offload {cur.hw_tc_offload}")
            if cur.mode != "switchdev":
                problems.append(f"{pf.name} eswitch mode is {cur.mode}, not switchdev")
            if cur.hw_tc_offload is not True:
                problems.append(f"{pf.name} hw-tc-offload is {'off' if cur.hw_tc_offload is False else 'unknown'}")
            for rep in pf.representors:
                port = next((p for p in ports if p.netdev == rep), None)
                if port is None:
                    problems.append(f"no devlink port has netdev {rep} (representor of {pf.name})")
                    continue
                details.append(f"representor {rep}: {port.port} flavour {port.flavour}")
                if port.flavour != "pcivf" or port.port.rsplit("/", 1)[0] != f"pci/{pf.pci}":
                    problems.append(
                        f"{rep} is {port.port} flavour {port.flavour}, expected a pcivf port of pci/{pf.pci}"
                    )
        if problems:
            return Evidence(False, "; ".join(problems), tuple(details))
        reps = [rep for pf in self.pfs() for rep in pf.representors]
        return Evidence(
            True,
            f"switchdev on {', '.join(pf.name for pf in self.pfs())}; representors {', '.join(reps)}",
            tuple(details),
        )

    def down_plan(self) -> list[PlannedCommand]:
        tc, unbind, modes, bind = [], [], [], []
        for pf in self.pfs():
            if self.journal.get(f"hw-tc-offload:{pf.name}") == "off":
                tc.append(self.planned(["ethtool", "-K", pf.name, "hw-tc-offload", "off"]))
            entry = self.journal.get(f"mode:{pf.name}")
            if entry is None:
                continue
            for vf in entry["vfs"]:
                unbind.append(self.planned(f"echo {vf} > {driver_path('unbind')}"))
                bind.append(self.planned(f"echo {vf} > {driver_path('bind')}"))
            modes.append(
                self.planned(["devlink", "dev", "eswitch", "set", f"pci/{entry['pci']}", "mode", entry["before"]])
            )
        return tc + unbind + modes + bind

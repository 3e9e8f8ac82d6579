"""vDPA: the bus driver loaded and one vDPA device per guest, bound to it, on the intended VF (seed 7-3).

The seed runs ``modprobe vhost_vdpa``; with kernel 5.11 and OFED 5.2, mlx5_vdpa had already
created vdpa0/vdpa1 on the VFs, and vhost_vdpa binds them and makes /dev/vhost-vdpa-0 and -1.
Later kernels create the devices explicitly (``lab.vdpa.create = "vdpa-dev-add"``):
``vdpa dev add name vdpa0 mgmtdev pci/0000:07:00.2 [mac ...]``.

Verified with the seed's own commands: ``lsmod`` lists vhost_vdpa, vhost, mlx5_vdpa and vdpa;
``ls -Fal /sys/bus/vdpa/drivers/vhost_vdpa`` shows ``vdpa0 -> ../../../../devices/pci0000:00/
0000:00:03.0/0000:07:00.2/vdpa0/`` (the link's parent directory is the VF the lab names);
``ls -Fal /dev`` shows the character devices. ``down`` deletes only the devices it added and
unloads only the module it loaded.

Devices the layer adds get the lab's ``bus_driver`` in their ``driver_override`` (whichever vdpa bus driver
was loaded first would otherwise take them) and are bound to it. Each device must sit on its management
device (``vdpa -j dev show``: ``pci/<VF>`` for mlx5_vdpa, ``vduse`` for a VDUSE device); with
``vdpa.backend = "vduse"`` the layer runs after ovs, whose ``dpdkvhostuserclient`` port made
``/dev/vduse/NAME`` (see ``vdpalab.layers.layer_order``).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from vdpalab.config import VdpaDevice
from vdpalab.errors import LayerError
from vdpalab.layers import _text
from vdpalab.layers.base import Evidence, Layer, PlannedCommand
from vdpalab.parsers.sysfs import parse_ls_l
from vdpalab.parsers.vdpa import parse_vdpa_dev


@dataclass(frozen=True)
class VdpaState:
    modules: frozenset[str]
    devices: dict[str, str] | None = None  # name -> mgmtdev, from `vdpa dev show` (create = vdpa-dev-add only)
    extra: dict[str, Any] = field(default_factory=dict)


def vdpa_devices(text: str) -> dict[str, str]:
    """``vdpa -j dev show`` (or its text) -> {name: mgmtdev}; no output, or ``{"dev":{}}``, means no devices."""
    if not text.strip():
        return {}
    return {name: dev.mgmtdev or "" for name, dev in parse_vdpa_dev(text).devs.items()}


SYS_VDPA = "/sys/bus/vdpa"


def bind_command(device: str, driver: str) -> str:
    """Bind ``device`` to ``driver`` unless it already is (unbinding it from another driver first)."""
    d = f"{SYS_VDPA}/devices/{device}"
    return (
        f'cur=$(basename "$(readlink {d}/driver)" 2>/dev/null); [ "$cur" = {driver} ] || '
        f'{{ [ -z "$cur" ] || echo {device} > {d}/driver/unbind; echo {device} > {SYS_VDPA}/drivers/{driver}/bind; }}'
    )


class Vdpa(Layer):
    name = "vdpa"
    requires: tuple[str, ...] = ("preflight", "sriov", "switchdev")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.lab.vdpa.backend == "vduse":
            self.requires = (*type(self).requires, "ovs")  # OVS creates the VDUSE devices

    @property
    def devices(self) -> list[VdpaDevice]:
        return list(self.lab.vdpa.devices)

    @property
    def driver(self) -> str:
        return self.lab.vdpa.bus_driver

    def not_applicable(self) -> str | None:
        if not self.lab.vdpa.enabled:
            return "vdpa.enabled = false in the lab"
        if not self.devices:
            return "no [[vdpa.devices]] in the lab"
        return None

    def required_modules(self) -> list[str]:
        mods = [self.driver, "vdpa"]
        if self.driver == "vhost_vdpa":
            mods.insert(1, "vhost")
        if self.ctx.versions.get("nic_driver") == "mlx5_core":
            mods.insert(-1, "mlx5_vdpa")
        mods += [m for m in self.lab.vdpa.modules if m not in mods]
        return mods

    def probe(self) -> VdpaState:
        self.prefetch([["lsmod"], ["vdpa", "-j", "dev", "show"]])
        modules = frozenset(_text.lsmod_modules(self.read_ok(["lsmod"], what="lsmod")))
        devices: dict[str, str] | None = None
        if self.lab.vdpa.create == "vdpa-dev-add":
            devices = vdpa_devices(
                self.read_json_ok(["vdpa", "-j", "dev", "show"], ["vdpa", "dev", "show"], what="vdpa dev show")
            )
        return VdpaState(modules, devices)

    def fresh_state(self) -> VdpaState:
        """The seed's host before ``modprobe vhost_vdpa`` (its ``lsmod | grep vd``): mlx5_vdpa, vdpa loaded."""
        devices: dict[str, str] | None = {} if self.lab.vdpa.create == "vdpa-dev-add" else None
        return VdpaState(frozenset({"mlx5_vdpa", "vhost_iotlb", "vdpa", "mlx5_core"}), devices)

    def plan(self, state: Any | None = None) -> list[PlannedCommand]:
        st: VdpaState = self.probe() if state is None else state
        out = []
        for module in self.lab.vdpa.modules:
            if module not in st.modules:
                out.append(self.planned(["modprobe", module], "the management device's module"))
        added = []
        if st.devices is not None:
            for dev in self.devices:
                have = st.devices.get(dev.name)
                want = dev.management_device
                if have is None:
                    cmd = ["vdpa", "dev", "add", "name", dev.name, "mgmtdev", want]
                    if dev.mac:
                        cmd += ["mac", dev.mac]
                    out.append(self.planned(cmd, f"vDPA device {dev.name} on {want}"))
                    added.append(dev.name)
                elif have != want:
                    raise LayerError(self.name, f"vDPA device {dev.name} exists on {have}, the lab wants {want}")
        for name in added:
            out.append(
                self.planned(
                    ["sh", "-c", f"echo {self.driver} > {SYS_VDPA}/devices/{name}/driver_override"],
                    f"{name} binds to {self.driver} only",
                )
            )
        if self.driver not in st.modules:
            out.append(self.planned(["modprobe", self.driver], f"the {self.driver} bus driver"))
        for name in added:
            out.append(self.planned(["sh", "-c", bind_command(name, self.driver)], f"bind {name} to {self.driver}"))
        return out

    def journal_before(self, state: Any, planned: list[PlannedCommand]) -> None:
        for cmd in planned:
            if cmd.command.startswith("modprobe "):
                self.journal.record(f"loaded:{cmd.command.split()[1]}", len(self.journal.entries))
            elif cmd.command.startswith("vdpa dev add name "):
                self.journal.record(f"added:{cmd.command.split()[4]}", True)

    def chardevs(self) -> dict[str, str]:
        """Device name -> /dev/vhost-vdpa-N (the lab's, else read from the device's sysfs directory)."""
        out = {}
        for dev in self.devices:
            if dev.chardev:
                out[dev.name] = dev.chardev
                continue
            listing = self.read(["ls", f"/sys/bus/vdpa/devices/{dev.name}"]).stdout.split()
            found = next((x for x in listing if re.fullmatch(r"vhost-vdpa-\d+", x)), None)
            if found:
                out[dev.name] = f"/dev/{found}"
        return out

    def verify(self) -> Evidence:
        drv_dir = f"{SYS_VDPA}/drivers/{self.driver}"
        self.prefetch([["lsmod"], ["vdpa", "-j", "dev", "show"], ["ls", "-Fal", drv_dir]])
        st = self.probe()
        problems, details = [], []
        required = self.required_modules()
        missing = [m for m in required if m not in st.modules]
        details.append(f"lsmod: {', '.join(m for m in required if m in st.modules)} loaded")
        if missing:
            problems.append(f"module(s) not loaded: {', '.join(missing)}")
        if self.lab.vdpa.create == "vdpa-dev-add":  # the devices are the lab's: check their management device
            self._mgmtdev_check(problems, details, st.devices)
        listing = self.read(["ls", "-Fal", drv_dir])
        entries = {e.name: e for e in parse_ls_l(listing.stdout).entries} if listing.ok else {}
        if not listing.ok:
            problems.append(f"{drv_dir} does not exist ({listing.stderr.strip()[:120]})")
        for dev in self.devices:
            entry = entries.get(dev.name)
            if entry is None or entry.target is None:
                if listing.ok:
                    problems.append(f"{dev.name} is not bound to {self.driver} (not in {drv_dir})")
                continue
            parent = posixpath.basename(posixpath.dirname(entry.target.rstrip("/")))
            details.append(f"{drv_dir}/{dev.name} -> {entry.target}")
            if dev.vf_pci and parent != dev.vf_pci:
                problems.append(f"{dev.name} sits on {parent}, the lab wants VF {dev.vf_pci}")
        if self.driver == "vhost_vdpa":
            problems += self._chardev_problems(details)
        if problems:
            return Evidence(False, "; ".join(problems), tuple(details))
        return Evidence(
            True,
            ", ".join(f"{d.name} on {d.management_device}" for d in self.devices) + f" bound to {self.driver}",
            tuple(details),
        )

    def _mgmtdev_check(self, problems: list[str], details: list[str], on_bus: dict[str, str] | None) -> None:
        """Each device on its management device, from the probe's `vdpa dev show` (read here when it had none)."""
        if on_bus is None:
            shown = self.read(["vdpa", "-j", "dev", "show"])
            if not shown.ok:
                problems.append(f"`vdpa -j dev show` failed: {shown.stderr.strip()[:120]}")
                return
            on_bus = vdpa_devices(shown.stdout)
        for dev in self.devices:
            want, have = dev.management_device, on_bus.get(dev.name)
            if have is None:
                problems.append(f"{dev.name} is not on the vDPA bus (`vdpa dev show` lists {sorted(on_bus) or 'none'})")
            elif have != want:
                problems.append(f"{dev.name} is on mgmtdev {have}, the lab wants {want}")
            else:
                details.append(f"vdpa dev show: {dev.name} mgmtdev {have}")

    def _chardev_problems(self, details: list[str]) -> list[str]:
        problems = []
        chardevs = self.chardevs()
        by_dir: dict[str, list[tuple[str, str]]] = {}
        for name, path in chardevs.items():
            by_dir.setdefault(posixpath.dirname(path), []).append((name, posixpath.basename(path)))
        for dev in self.devices:
            if dev.name not in chardevs:
                problems.append(f"no vhost-vdpa character device found for {dev.name}")
        for directory, wanted in by_dir.items():
            result = self.read(["ls", "-Fal", directory])
            present = {e.name: e for e in parse_ls_l(result.stdout).entries} if result.ok else {}
            for name, base in wanted:
                entry = present.get(base)
                if entry is None or entry.type != "char":
                    problems.append(f"{directory}/{base} (for {name}) is not a character device")
                else:
                    details.append(f"{directory}/{base}: {entry.mode}")
        return problems

    def down_plan(self) -> list[PlannedCommand]:
        out = []
        for dev in reversed(self.devices):
            if self.journal.get(f"added:{dev.name}"):
                out.append(self.planned(["vdpa", "dev", "del", dev.name], "delete the device up added"))
        entries = self.journal.entries
        loaded = sorted((k for k in entries if k.startswith("loaded:")), key=lambda k: entries[k])
        legacy = self.journal.get("loaded_module")  # journals written before several modules could be loaded
        for module in reversed([k.split(":", 1)[1] for k in loaded] + ([legacy] if legacy else [])):
            out.append(self.planned(["modprobe", "-r", module], "unload the module up loaded"))
        return out

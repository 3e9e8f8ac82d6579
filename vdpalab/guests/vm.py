"""What the two VM drivers (qemu, libvirt) share: runtime files on the lab host and the serial console log."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from vdpalab.errors import HostError
from vdpalab.guests.base import GuestContext, GuestDriverBase, GuestNeeds
from vdpalab.parsers.qemu import parse_qemu_cmdline
from vdpalab.qemu import CONSOLE_ERRORS

if TYPE_CHECKING:
    from vdpalab.config import Lab, VmGuest

CONSOLE_TAIL_LINES = 40
DEFAULT_RUNTIME_ROOT = "/run/vdpalab"


def guest_runtime_dir(lab: Lab, guest: VmGuest) -> str:
    """Where a guest's console log, pidfile and QMP socket live on the lab host (``/run/vdpalab/LAB`` by default)."""
    if guest.runtime_dir:
        return os.path.abspath(str(lab.resolve(guest.runtime_dir)))
    return f"{DEFAULT_RUNTIME_ROOT}/{lab.lab.name}"


def guest_path(lab: Lab, guest: VmGuest, suffix: str) -> str:
    return f"{guest_runtime_dir(lab, guest)}/{guest.name}.{suffix}"


def memory_backend(guest: VmGuest) -> Literal["memfd", "file", "none"]:
    """The guest RAM QEMU gets: the lab's choice, else the seed's own RAM (vhost-vdpa) or hugepages (vhost-user)."""
    if guest.memory_backend is not None:
        return guest.memory_backend
    return "file" if guest.vhost_user_socket and not guest.vdpa_device else "none"


def vhost_vdpa_nics(cmdline: str) -> list[str]:
    """``-netdev`` (type vhost-vdpa) and the ``-device`` on it, from a running QEMU's ``/proc/PID/cmdline``.

    The command line comes with its NULs turned into spaces (``tr '\\0' ' '``), so only the ``-netdev``/``-device``
    words are taken (neither ever holds a space, in key=value or libvirt's JSON syntax) and parsed by the one QEMU
    command-line parser; each result reads ``-netdev ARGS -> -device DRIVER,OPTIONS``.
    """
    words = cmdline.split()
    pairs = [(w, words[i + 1]) for i, w in enumerate(words[:-1]) if w in ("-netdev", "-device")]
    parsed = parse_qemu_cmdline(shlex.join(["qemu", *(x for pair in pairs for x in pair)]))
    devices = {d.netdev: d for d in parsed.devices if d.netdev}
    out = []
    for netdev in parsed.netdevs:
        if netdev.type != "vhost-vdpa":
            continue
        line = f"-netdev type=vhost-vdpa,vhostdev={netdev.vhostdev},id={netdev.id}"
        device = devices.get(netdev.id) if netdev.id else None
        if device is not None:
            options = ",".join(f"{k}={v}" for k, v in device.options.items() if k not in ("driver", "netdev"))
            line += f" -> -device {device.driver}" + (f",{options}" if options else "")
        out.append(line)
    return out


def console_markers(ctx: GuestContext, log: str) -> str | None:
    """A fatal boot error in the console log's tail (the image's /init failure marker, a kernel panic), else None."""
    result = ctx.read(["tail", "-n", str(CONSOLE_TAIL_LINES), log])
    for marker in CONSOLE_ERRORS:
        if result.ok and marker in result.stdout:
            return f"the console shows {marker!r}"
    return None


class VmDriver(GuestDriverBase):
    """A VM on the lab host: its files live in its runtime dir, its serial console goes to ``NAME.console.log``."""

    @property
    def sets_mac(self) -> bool:
        """A VM's NIC has its MAC from the device, unless the lab says the device offers none (``set_mac``)."""
        return bool(self.guest.set_mac)

    def runtime_dir(self) -> str | None:
        return guest_runtime_dir(self.lab, self.guest)

    def path(self, suffix: str) -> str:
        return guest_path(self.lab, self.guest, suffix)

    def lab_path(self, value: str | None) -> Path | None:
        """A path from the lab file, absolute (relative ones are relative to the lab file)."""
        resolved = self.lab.resolve(value)
        return Path(os.path.abspath(resolved)) if resolved is not None else None

    def console_log(self) -> str:
        """The file on the lab host the guest's serial console is written to."""
        return self.path("console.log")

    def backends(self) -> frozenset[str]:
        """The QEMU ``-netdev`` backends the guest's data NIC needs."""
        return frozenset({"vhost-vdpa"} if self.guest.vdpa_device else set())

    def needs(self) -> GuestNeeds:
        # vhost-user needs guest memory shared with the backend: from hugetlbfs (memory_backend "file", the default
        # for vhost-user) or a memfd (the emulated-qemu lab); a vhost-vdpa guest (the seed's) runs on QEMU's own RAM
        hugepages = self.guest.memory_mib if memory_backend(self.guest) == "file" else 0
        return GuestNeeds(self.guest.qemu_binary, self.backends(), hugepages_mib=hugepages)

    def console(self) -> str:
        log = self.console_log()
        try:
            result = self.ctx.read(["tail", "-n", str(CONSOLE_TAIL_LINES), log])
        except HostError as exc:
            return f"\n(console log unreadable: {exc})"
        text = result.stdout.rstrip() if result.ok else f"(no console log: {result.stderr.strip()})"
        return f"\n--- console {log} (last {CONSOLE_TAIL_LINES} lines) ---\n{text}"

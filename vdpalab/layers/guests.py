"""Guests: start the two guests, wait for SSH, give them their addresses (seed 7-7, 7-8).

What a guest is and how it is started, reached and stopped is its driver's business (``vdpalab.guests``, one
driver per ``kind``: ``qemu``, ``libvirt``, ``netns``, ...); this layer never asks for the kind. It makes the
drivers' runtime directories, starts every guest that is not running (all at once, so they boot in parallel),
waits for each to answer over SSH (``boot_timeout_s``; on failure the console tail is in the error, and a driver
that can tell a dead guest fails at once), and then sets the data interface over SSH: the lab's MAC where the
driver says the layer sets it, MTU, ``ip addr replace`` and link up. ``down`` restores the interface of guests it
did not start and lets each driver stop what it started.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from vdpalab.config import GuestBase
from vdpalab.errors import HostError, LayerError
from vdpalab.guests import GuestDriver, GuestRun, driver_for
from vdpalab.layers.base import Evidence, Layer, PlannedCommand
from vdpalab.parsers.iplink import parse_ip_addr, parse_ip_link


@dataclass(frozen=True)
class GuestNet:
    """The guest side: its data interface as ``ip -j link show`` / ``ip -j -4 addr show`` report it."""

    mac: str | None
    mtu: int | None
    up: bool
    addresses: tuple[str, ...] = field(default_factory=tuple)


class Guests(Layer):
    name = "guests"
    requires = ("preflight", "hugepages", "vdpa", "ovs")

    def not_applicable(self) -> str | None:
        if not self.lab.guest:
            return "the lab has no [[guest]]"
        return None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drivers: dict[str, GuestDriver] = {g.name: driver_for(g, self) for g in self.lab.guest}
        self.boot_s: dict[str, float] = {}  # guest -> seconds from its start to SSH answering

    def driver(self, guest: GuestBase) -> GuestDriver:
        return self.drivers[guest.name]

    def put_text(self, text: str, remote: str, mode: int = 0o644) -> None:
        """Write ``text`` to ``remote`` on the lab host (``mode`` 0o600 for XML that may carry secrets)."""
        fd, local = tempfile.mkstemp(prefix="vdpalab-", suffix=".xml")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            self.host.put(local, remote, mode=mode)
        finally:
            os.unlink(local)

    def reset_host(self, role: str) -> None:
        """Forget a connection that failed, so the next command dials again (a guest still booting)."""
        reset = getattr(self.ctx.hosts, "reset", None)
        if callable(reset):
            reset(role)

    # --- probe ---
    def probe(self) -> dict[str, GuestRun]:
        return {name: d.probe() for name, d in self.drivers.items()}

    def fresh_state(self) -> dict[str, GuestRun]:
        """Nothing started; a guest counts as not running here so an offline plan never dials it."""
        return {name: d.fresh() for name, d in self.drivers.items()}

    def probe_net(self, guest: GuestBase) -> GuestNet:
        """``ip -j`` link and IPv4 addresses of the data interface; the text where the guest's ip has no JSON
        (iproute2 before 4.14, BusyBox ip)."""
        iface = guest.interface
        self.prefetch([["ip", "-j", "link", "show", "dev", iface], ["ip", "-j", "-4", "addr", "show", "dev", iface]],
                      role=guest.name)  # fmt: skip
        link = parse_ip_link(
            self.read_json_ok(
                ["ip", "-j", "link", "show", "dev", iface], ["ip", "link", "show", "dev", iface],
                role=guest.name, what=f"ip link show {iface} in {guest.name}",
            )
        ).by_name(iface)
        if link is None:
            raise LayerError(self.name, f"guest {guest.name} has no interface {iface}")
        addrs = self.read_json_ok(
            ["ip", "-j", "-4", "addr", "show", "dev", iface], ["ip", "-4", "-o", "addr", "show", "dev", iface],
            role=guest.name, what=f"ip addr show {iface} in {guest.name}",
        )
        found = parse_ip_addr(addrs).cidrs(iface) if addrs.strip() else ()  # no IPv4 address: empty text
        return GuestNet(link.mac.lower() if link.mac else None, link.mtu, "UP" in link.flags, found)

    @staticmethod
    def fresh_net() -> GuestNet:
        return GuestNet(None, 1500, False)

    # --- plan ---
    def plan_dirs(self, state: dict[str, GuestRun]) -> list[PlannedCommand]:
        """``mkdir -p`` of the runtime directories of the guests about to start (each directory once)."""
        out: list[PlannedCommand] = []
        made: set[str] = set()
        for name, driver in self.drivers.items():
            directory = driver.runtime_dir()
            if state[name].running or directory is None or directory in made:
                continue
            made.add(directory)
            out.append(self.planned(["mkdir", "-p", directory], driver.runtime_files))
        return out

    def plan_host(self, state: dict[str, GuestRun]) -> list[PlannedCommand]:
        out = self.plan_dirs(state)
        for name, driver in self.drivers.items():
            out += driver.start_plan(state[name])
        return out

    def plan_net(self, guest: GuestBase, net: GuestNet) -> list[PlannedCommand]:
        iface, out = guest.interface, []
        if self.driver(guest).sets_mac and net.mac != guest.mac:
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
        dirs = self.plan_dirs(state)
        self.execute(dirs)
        changed = False
        for name, driver in self.drivers.items():
            changed = driver.start(state[name]) or changed
        for guest in self.lab.guest:
            driver = self.driver(guest)
            driver.wait_ready()
            started_at = getattr(driver, "started_at", None)
            if started_at is not None:
                self.boot_s[guest.name] = time.monotonic() - started_at
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

    def wait_ssh(self, guest: GuestBase) -> float:
        """Until the guest answers over SSH (its driver's ``wait_ready``)."""
        return self.driver(guest).wait_ready()

    # --- verify ---
    def verify(self) -> Evidence:
        problems, details = [], []
        for guest in self.lab.guest:
            run = self.driver(guest).probe()
            if not run.running:
                problems.append(f"guest {guest.name} is not running")
                continue
            details.append(
                f"{guest.name}: {self.driver(guest).kind}"
                + (f" pid {run.pid}" if run.pid else "")
                + (f", boot to SSH {self.boot_s[guest.name]:.1f} s" if guest.name in self.boot_s else "")
            )
            lines, bad = self.driver(guest).datapath_evidence(run)  # e.g. the vhost-vdpa netdev QEMU really has
            details += lines
            problems += bad
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
    def down_net(self, guest: GuestBase) -> list[PlannedCommand]:
        before = self.journal.get(f"net:{guest.name}")
        if not before or self.driver(guest).started_here():
            return []  # nothing changed, or the guest goes away with its settings
        iface, out = guest.interface, []
        if guest.ip not in before["addresses"]:
            out.append(self.planned(["ip", "addr", "del", guest.ip, "dev", iface], "", role=guest.name))
        if before["mtu"] is not None and before["mtu"] != guest.mtu:
            out.append(
                self.planned(["ip", "link", "set", "dev", iface, "mtu", str(before["mtu"])], "", role=guest.name)
            )
        if self.driver(guest).sets_mac and before["mac"] and before["mac"] != guest.mac:
            out.append(self.planned(["ip", "link", "set", "dev", iface, "address", before["mac"]], "", role=guest.name))
        return out

    def down_plan(self) -> list[PlannedCommand]:
        out: list[PlannedCommand] = []
        for guest in self.lab.guest:
            out += self.down_net(guest)
        for guest in reversed(self.lab.guest):
            out += self.driver(guest).stop_plan()
        return out

    def down(self) -> None:
        for guest in self.lab.guest:
            self.execute(self.down_net(guest))
        for guest in reversed(self.lab.guest):
            self.driver(guest).stop()
        self.journal.clear()

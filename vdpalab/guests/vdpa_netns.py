"""``kind = "vdpa-netns"``: a vDPA device's virtio_vdpa netdev in a namespace of the lab host, with its own sshd.

With ``vdpa.bus_driver = "virtio_vdpa"`` every vDPA device becomes a kernel netdev on the lab host. This driver
makes that netdev a guest, the way a VM would own it through vhost_vdpa: ``start`` creates the namespace
``netns`` (default: the guest's name), moves the device's netdev into it (found through
``/sys/bus/vdpa/devices/DEV/virtio*/net/``) and names it ``interface``, then starts the guest's own sshd on the
lab host: port ``sshd_port``, every session forced into the namespace (``ForceCommand ip netns exec NS ...``),
so the suite's SSH lands in the guest exactly as in a VM. The guests layer then sets the lab's MAC, MTU and
address over that SSH (``sets_mac``: a VDUSE device's netdev gets a random MAC).

``stop`` (only for what ``start`` did, from the journal) stops that sshd and whatever still runs in the
namespace, then deletes the namespace: the netdev falls back to the host's namespace and the vdpa layer's
``vdpa dev del`` removes it.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, ClassVar

from vdpalab.guests.base import GuestContext, GuestDriverBase, GuestNeeds, GuestRun

if TYPE_CHECKING:  # (importing vdpalab.layers at run time runs its __init__, which imports this package: a circle)
    from vdpalab.config import GuestBase
    from vdpalab.layers.base import PlannedCommand

SYS_VDPA_DEVICES = "/sys/bus/vdpa/devices"


class VdpaNetnsDriver(GuestDriverBase):
    kind: ClassVar[str] = "vdpa-netns"

    @property
    def sets_mac(self) -> bool:
        """A VDUSE device's netdev has a random MAC."""
        return True

    def __init__(self, guest: GuestBase, ctx: GuestContext | None = None) -> None:
        super().__init__(guest, ctx)
        self.facts: dict[str, str] = {}

    @property
    def namespace(self) -> str:
        return str(self.guest.namespace)

    @property
    def pidfile(self) -> str:
        return f"/run/vdpalab-sshd-{self.guest.name}.pid"

    def needs(self) -> GuestNeeds:
        return GuestNeeds(host_tools=("ip", "ping", "iperf3", "python3", "/usr/sbin/sshd"))

    def netdev_glob(self) -> str:
        return f"{SYS_VDPA_DEVICES}/{self.guest.vdpa_device}/virtio*/net/"

    # --- probe ---
    def probe(self) -> GuestRun:
        ns, iface = shlex.quote(self.namespace), shlex.quote(self.guest.interface)
        script = (
            f"[ -e /run/netns/{ns} ] && echo netns=yes; "
            f"ip -n {ns} -o link show dev {iface} >/dev/null 2>&1 && echo netdev=in; "
            f"p=$(cat {self.pidfile} 2>/dev/null) && kill -0 \"$p\" 2>/dev/null && echo sshd=$p; true"
        )
        out = self.ctx.read(["sh", "-c", script]).stdout
        self.facts = dict(line.split("=", 1) for line in out.split() if "=" in line)
        running = all(k in self.facts for k in ("netns", "netdev", "sshd"))
        return GuestRun(running, int(self.facts["sshd"]) if self.facts.get("sshd", "").isdigit() else None)

    def fresh(self) -> GuestRun:
        self.facts = {}
        return GuestRun(False)

    def poll_s(self) -> float:
        """sshd in a namespace answers within a second (nothing boots): ask again soon, not every 2 s."""
        return 0.25

    # --- start ---
    def sshd_command(self) -> list[str]:
        force = f'ip netns exec {self.namespace} /bin/sh -c "${{SSH_ORIGINAL_COMMAND:-exec /bin/sh -l}}"'
        return [
            "/usr/sbin/sshd", "-o", f"Port={self.guest.sshd_port}", "-o", f"PidFile={self.pidfile}",
            "-o", f"ForceCommand={force}",
        ]  # fmt: skip

    def start_plan(self, run: GuestRun) -> list[PlannedCommand]:
        if run.running:
            return []
        ns, iface, c = self.namespace, self.guest.interface, self.ctx
        out: list[PlannedCommand] = []
        if "netns" not in self.facts:
            out.append(c.planned(["ip", "netns", "add", ns], f"guest {self.guest.name}'s namespace"))
            out.append(c.planned(["ip", "-n", ns, "link", "set", "lo", "up"], ""))
        if "netdev" not in self.facts:
            move = (
                f"n=$(ls {self.netdev_glob()}) && [ -n \"$n\" ] && ip link set dev \"$n\" netns {shlex.quote(ns)} "
                f"&& ip -n {shlex.quote(ns)} link set dev \"$n\" name {shlex.quote(iface)}"
            )
            out.append(
                c.planned(["sh", "-c", move], f"the netdev of {self.guest.vdpa_device} becomes {ns}'s {iface}")
            )
        if "sshd" not in self.facts:
            out.append(c.planned(self.sshd_command(), f"{self.guest.name}'s sshd (sessions run in {ns})"))
        return out

    def start(self, run: GuestRun) -> bool:
        planned = self.start_plan(run)
        if not planned:
            return False
        self.ctx.journal.record(f"started:{self.guest.name}", {"netns": "netns" not in self.facts})
        return super().start(run)

    def started_here(self) -> bool:
        return self.ctx.journal.get(f"started:{self.guest.name}") is not None

    # --- stop ---
    def stop_plan(self) -> list[PlannedCommand]:
        started = self.ctx.journal.get(f"started:{self.guest.name}")
        if started is None:
            return []
        ns = shlex.quote(self.namespace)
        out = [
            self.ctx.planned(
                ["sh", "-c", f"p=$(cat {self.pidfile} 2>/dev/null) && kill \"$p\"; rm -f {self.pidfile}; true"],
                f"stop {self.guest.name}'s sshd",
            )
        ]
        if started.get("netns"):
            out.append(
                self.ctx.planned(
                    ["sh", "-c", f"p=$(ip netns pids {ns} 2>/dev/null); [ -z \"$p\" ] || kill -9 $p; "
                                 f"[ ! -e /run/netns/{ns} ] || ip netns del {ns}"],
                    f"what still runs in {ns}, then the namespace (its netdev returns to the host)",
                )
            )
        return out

    def stop(self) -> None:
        super().stop()
        self.ctx.journal.forget(f"started:{self.guest.name}")

"""A throwaway pair of network namespaces joined by a veth: the traffic library's own test bench.

The traffic runners only need two ``Host`` objects with an interface each; two
namespaces and a veth give exactly that without a lab (no OVS, no sshd). The
self-tests use it, and so can anyone debugging a runner. Everything created
carries the given prefix and is deleted by ``destroy()`` (namespaces take their
processes' sockets and the veth with them).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass

from vdpalab.command_result import CommandResult
from vdpalab.emulated.netns_lab import note_run_netns, restore_run_netns
from vdpalab.hosts.local import LocalHost


class NetnsHost(LocalHost):
    """A LocalHost whose commands run inside a network namespace (``ip netns exec NS sh -c ...``)."""

    def __init__(self, name: str, netns: str, command_timeout: float = 60.0) -> None:
        super().__init__(name, command_timeout=command_timeout)
        self.netns = netns

    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        wrapped = f"exec ip netns exec {shlex.quote(self.netns)} sh -c {shlex.quote(command)}"
        return super()._run(wrapped, timeout, stdin)


@dataclass(frozen=True)
class SandboxEnd:
    """One side of the pair, shaped like a lab guest: host, interface, MAC, address."""

    host: NetnsHost
    netns: str
    interface: str
    mac: str
    address: str
    prefix_len: int = 24
    mtu: int = 1500

    @property
    def name(self) -> str:
        return self.host.name


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=30)


class NetnsPair:
    """``{prefix}-a`` and ``{prefix}-b`` joined by a veth, 192.168.99.1/.2 by default, IPv6 left on.

    IPv6 stays enabled on purpose: its router/neighbour solicitations and MLD
    reports are the background noise the runners must tolerate.
    """

    def __init__(
        self,
        prefix: str = "vdpalab-dp",
        subnet: str = "192.168.99",
        macs: tuple[str, str] = ("02:00:00:99:00:01", "02:00:00:99:00:02"),
        mtu: int = 1500,
    ) -> None:
        self.prefix = prefix
        self.subnet = subnet
        self.macs = macs
        self.mtu = mtu
        self.a: SandboxEnd | None = None
        self.b: SandboxEnd | None = None
        self._run_netns: dict[str, bool] | None = None  # /run/netns before our first `ip netns add`

    @property
    def namespaces(self) -> tuple[str, str]:
        return f"{self.prefix}-a", f"{self.prefix}-b"

    def leftover_pids(self, settle_s: float = 2.0) -> list[str]:
        """Processes still inside the pair's namespaces once a short grace period has passed."""
        deadline = time.monotonic() + settle_s
        while True:
            left = [
                pid
                for ns in self.namespaces
                for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            ]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def create(self) -> NetnsPair:
        self.destroy()  # a pair left behind by a killed run: start clean
        ns_a, ns_b = self.namespaces
        self._run_netns = note_run_netns()  # `ip netns add` makes /run/netns a mount point; `del` leaves it
        try:
            _sh("ip", "netns", "add", ns_a)
            _sh("ip", "netns", "add", ns_b)
            _sh("ip", "link", "add", "eth0", "netns", ns_a, "type", "veth", "peer", "name", "eth0", "netns", ns_b)
            ends = []
            for i, (ns, mac) in enumerate(zip((ns_a, ns_b), self.macs, strict=True), start=1):
                _sh("ip", "-n", ns, "link", "set", "lo", "up")
                _sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "mtu", str(self.mtu))
                _sh("ip", "-n", ns, "addr", "add", f"{self.subnet}.{i}/24", "dev", "eth0")
                _sh("ip", "-n", ns, "link", "set", "eth0", "up")
                host = NetnsHost(f"{self.prefix}-{'ab'[i - 1]}", ns)
                ends.append(SandboxEnd(host, ns, "eth0", mac, f"{self.subnet}.{i}", mtu=self.mtu))
            self.a, self.b = ends
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        """Delete both namespaces (idempotent). Processes the runners started were stopped by pid already."""
        for ns in self.namespaces:
            _sh("ip", "netns", "del", ns, check=False)
        if self._run_netns is not None:
            restore_run_netns(self._run_netns)  # the mount goes once no namespace (ours or a lab's) is left

    def __enter__(self) -> NetnsPair:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

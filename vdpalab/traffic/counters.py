"""OVS port-counter symmetry, the seed's proof that every frame crossed each bridge intact.

The seed reads ``ovs-ofctl -O OpenFlow14 dump-ports`` on both bridges after a flood
ping: on br30-ovs the uplink (ens2f0) received exactly what the representor
(ens2f0_0) transmitted and the other way round, with no drops and no errors.

How background noise is kept from making this flaky (ARP, IPv6 ND/RS/MLD, LLDP,
IGMP, whatever else crosses the bridge while we measure):

* Both sides of every equality come from the SAME two snapshots. A noise frame
  that crosses a bridge is counted on its way in (rx on one port) and on its way
  out (tx on the other), so it adds the same amount to both sides of the equality.
* The "enough traffic" bound uses the known number of frames we sent: each
  counter on the path must have risen by at least that much. Noise can only add.
* Two kinds of frame leave a port without having entered the bridge, and both are
  counted rather than guessed: frames the bridge originates on its LOCAL port (flooded
  out of uplink and representor: LOCAL's rx delta), and frames the host's kernel
  sends from a port that is a kernel netdev (router solicitations, neighbour
  discovery and MLD from the port's IPv6 link-local address: ``Icmp6OutMsgs`` of
  ``/proc/net/dev_snmp6/PORT``; the kernel counts them in the port's tx, which is what
  OVS reports for such ports). A tx surplus up to those measured counts is explained
  in a note; anything beyond is a mismatch. DPDK ports are not kernel netdevs and
  have no such file: there the equality is exact.
* Snapshots are taken only once the counters have *settled* (two consecutive reads
  of every compared counter agree), so no frame is in flight between the ports
  when we read them. If the counters never settle (constant background traffic)
  the mismatch is still reported, and the caller may retry the measurement once,
  saying so.

A counter OVS prints as ``?`` is "not reported" (None): it is named in the result,
never taken as zero.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vdpalab.config import BridgeSettings, GuestSettings, Lab
from vdpalab.errors import HostError, ParseError
from vdpalab.hosts.base import Host
from vdpalab.parsers._common import describe_unparsed
from vdpalab.parsers.ovs import DumpPorts, PortStats, parse_dump_ports

COMPARED = ("rx_packets", "tx_packets")
MUST_BE_ZERO = ("rx_dropped", "rx_errors", "tx_dropped", "tx_errors")


class CounterError(HostError):
    """dump-ports could not be read or parsed."""


def dump_ports_argv(bridge: str) -> list[str]:
    """Names (not port numbers) in the output: ovs-ofctl prints names only to a terminal unless asked.

    Text, not JSON: ``ovs-ofctl dump-ports`` has no JSON output in any OVS version (3.5 included)."""
    return ["ovs-ofctl", "--names", "-O", "OpenFlow14", "dump-ports", bridge]


def read_ports(host: Host, bridge: str, timeout: float = 15.0) -> DumpPorts:
    result = host.run(dump_ports_argv(bridge), timeout=timeout)
    if not result.ok:
        raise CounterError(host.name, result.command, f"dump-ports {bridge} failed (rc={result.rc}): "
                                                      f"{result.stderr.strip()[-300:]}")
    try:
        return parse_dump_ports(result.stdout)
    except ParseError as exc:
        raise CounterError(host.name, result.command, f"dump-ports {bridge}: {exc}") from None


@dataclass(frozen=True)
class Snapshot:
    """dump-ports of every bridge at one moment, and whether the counters had settled.

    ``kernel_tx`` holds, per port that is a kernel netdev on the host, how many ICMPv6
    messages the host's own kernel has sent from it (``Icmp6OutMsgs`` of
    ``/proc/net/dev_snmp6/PORT``: router solicitations, neighbour discovery, MLD).
    Those frames leave through the port (its tx counter) without ever entering the
    bridge. A port with no such file (a DPDK port, no IPv6) is absent: nothing to account.
    """

    ports: dict[str, DumpPorts]
    taken: float
    settled: bool
    reads: int
    kernel_tx: dict[str, int] = field(default_factory=dict)

    def stats(self, bridge: str, port: str) -> PortStats | None:
        dump = self.ports.get(bridge)
        return None if dump is None else dump.ports.get(port)


def _key(snap: Mapping[str, DumpPorts], watched: Mapping[str, Sequence[str]]) -> tuple:
    out = []
    for bridge, ports in sorted(watched.items()):
        dump = snap.get(bridge)
        for port in ports:
            stats = None if dump is None else dump.ports.get(port)
            out.append(tuple(getattr(stats, c, None) for c in COMPARED))
    return tuple(out)


KERNEL_TX_COUNTER = "Icmp6OutMsgs"


def kernel_tx_command(ports: Iterable[str]) -> str:
    """One line per port that has a /proc/net/dev_snmp6 file: 'PORT COUNT'."""
    names = " ".join(shlex.quote(p) for p in sorted(set(ports)) if p != "LOCAL")
    return (f"for p in {names}; do f=/proc/net/dev_snmp6/$p; [ -r \"$f\" ] && "
            f"awk -v p=\"$p\" '$1==\"{KERNEL_TX_COUNTER}\" {{print p, $2}}' \"$f\"; done; true")


def parse_kernel_tx(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            out[fields[0]] = int(fields[1])
    return out


def read_kernel_tx(host: Host, ports: Iterable[str], timeout: float = 15.0) -> dict[str, int]:
    """ICMPv6 messages the host's kernel sent from each port (empty for ports that are not kernel netdevs)."""
    result = host.run(kernel_tx_command(ports), timeout=timeout)
    return parse_kernel_tx(result.stdout) if result.ok else {}


def snapshot(
    host: Host,
    watched: Mapping[str, Sequence[str]],
    *,
    settle_s: float = 0.2,
    max_reads: int = 10,
    timeout: float = 15.0,
    kernel_tx: bool = True,
) -> Snapshot:
    """Read every bridge until two consecutive reads agree on the compared counters of ``watched`` ports.

    ``watched`` maps bridge -> the ports compared there (uplink, representor, LOCAL).
    With ``kernel_tx`` the host kernel's own ICMPv6 output per port is read too (and
    must also be stable), see ``Snapshot``.
    """
    ports = [p for names in watched.values() for p in names]

    def read_all() -> tuple[dict[str, DumpPorts], dict[str, int]]:
        reads: list[str | list[str]] = [dump_ports_argv(bridge) for bridge in watched]
        host.prefetch([*reads, kernel_tx_command(ports)] if kernel_tx else reads, timeout=timeout)
        dumps = {bridge: read_ports(host, bridge, timeout) for bridge in watched}
        return dumps, (read_kernel_tx(host, ports, timeout) if kernel_tx else {})

    prev = read_all()
    reads = 1
    while reads < max_reads:
        time.sleep(settle_s)
        cur = read_all()
        reads += 1
        if _key(cur[0], watched) == _key(prev[0], watched) and cur[1] == prev[1]:
            return Snapshot(cur[0], time.time(), True, reads, cur[1])
        prev = cur
    return Snapshot(prev[0], time.time(), False, reads, prev[1])


# ------------------------------------------------------------------------------------------- judging
@dataclass(frozen=True)
class BridgePair:
    """What one bridge's symmetry compares: its uplink and the representor of a guest."""

    bridge: str
    uplink: str
    representor: str
    local: str = "LOCAL"

    @property
    def ports(self) -> tuple[str, str, str]:
        return (self.uplink, self.representor, self.local)


@dataclass(frozen=True)
class Expectation:
    """At least ``frames`` must have been counted as ``counter`` on ``port`` of ``bridge`` (known traffic)."""

    bridge: str
    port: str
    counter: str  # "rx_packets" or "tx_packets"
    frames: int
    why: str


def _delta(before: PortStats | None, after: PortStats | None, counter: str) -> int | None:
    if before is None or after is None:
        return None
    b, a = getattr(before, counter), getattr(after, counter)
    if a is None or b is None:
        return None
    return a - b


@dataclass
class SymmetryReport:
    """Per-bridge deltas, problems (each a full sentence), and notes on what was accounted for."""

    deltas: dict[str, dict[str, dict[str, int | None]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    not_reported: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def delta(self, bridge: str, port: str, counter: str) -> int | None:
        return self.deltas.get(bridge, {}).get(port, {}).get(counter)


def _pair_check(
    report: SymmetryReport, bridge: str, rx_port: str, tx_port: str, rx: int | None, tx: int | None,
    local_rx: int | None, kernel_tx: int | None,
) -> None:
    """rx on one port must come out as tx on the other.

    A tx surplus is explained, up to its measured size, by frames the bridge sent
    from its LOCAL port and frames the host's kernel sent from ``tx_port`` itself.
    """
    if rx is None or tx is None:
        missing = [f"{p} {c}" for p, c, v in ((rx_port, "rx", rx), (tx_port, "tx", tx)) if v is None]
        report.problems.append(
            f"{bridge}: {' and '.join(missing)} packets not reported ('?'): "
            f"cannot compare {rx_port} rx with {tx_port} tx"
        )
        return
    if rx == tx:
        return
    local, kernel = local_rx or 0, kernel_tx or 0
    sources = []
    if local:
        sources.append(f"LOCAL rx Δ {local} (frames the bridge sent itself)")
    if kernel:
        sources.append(f"{kernel} ICMPv6 message(s) the host's kernel sent from {tx_port} "
                       f"({KERNEL_TX_COUNTER}, e.g. router solicitations)")
    if tx > rx and tx - rx <= local + kernel:
        report.notes.append(f"{bridge}: {tx_port} tx Δ {tx} = {rx_port} rx Δ {rx} + {tx - rx}, explained by "
                            + " and ".join(sources))
        return
    if tx < rx:
        report.problems.append(f"{bridge}: {rx_port} rx Δ {rx} != {tx_port} tx Δ {tx} ({rx - tx} lost)")
    else:
        extra = f"; {' and '.join(sources)} explain at most {local + kernel}" if sources else ""
        report.problems.append(
            f"{bridge}: {rx_port} rx Δ {rx} != {tx_port} tx Δ {tx} ({tx - rx} more sent than received{extra})"
        )


def judge_symmetry(
    pairs: Iterable[BridgePair],
    before: Snapshot,
    after: Snapshot,
    expectations: Iterable[Expectation] = (),
) -> SymmetryReport:
    """The seed's equalities on every bridge, zero drops/errors, and the known-traffic lower bounds."""
    report = SymmetryReport()
    for pair in pairs:
        per_port: dict[str, dict[str, int | None]] = {}
        for port in pair.ports:
            b, a = before.stats(pair.bridge, port), after.stats(pair.bridge, port)
            if port != pair.local and (b is None or a is None):
                dump = (before if b is None else after).ports.get(pair.bridge)
                kept = "; ".join(describe_unparsed(dump)[1:]).strip() if dump is not None else ""
                report.problems.append(f"{pair.bridge}: port {port} missing from dump-ports "
                                       f"({'before' if b is None else 'after'} the traffic)"
                                       + (f"; lines not understood: {kept}" if kept else ""))
            per_port[port] = {c: _delta(b, a, c) for c in (*COMPARED, *MUST_BE_ZERO)}
        report.deltas[pair.bridge] = per_port
        up, rep = per_port[pair.uplink], per_port[pair.representor]
        local_rx = per_port[pair.local]["rx_packets"]

        def kernel(port: str) -> int | None:
            b, a = before.kernel_tx.get(port), after.kernel_tx.get(port)
            return None if a is None or b is None else a - b

        _pair_check(report, pair.bridge, pair.uplink, pair.representor, up["rx_packets"], rep["tx_packets"],
                    local_rx, kernel(pair.representor))
        _pair_check(report, pair.bridge, pair.representor, pair.uplink, rep["rx_packets"], up["tx_packets"],
                    local_rx, kernel(pair.uplink))
        for port in (pair.uplink, pair.representor):
            for counter in MUST_BE_ZERO:
                value = per_port[port][counter]
                label = counter.replace("_dropped", " drop").replace("_errors", " errs")
                if value is None:
                    report.not_reported.append(f"{pair.bridge}: {port} {label}")
                elif value != 0:
                    report.problems.append(f"{pair.bridge}: {port} {label} Δ {value} (expected 0)")
    for exp in expectations:
        got = report.delta(exp.bridge, exp.port, exp.counter)
        label = exp.counter.replace("_packets", "")
        if got is None:
            report.problems.append(f"{exp.bridge}: {exp.port} {label} packets not reported: "
                                   f"cannot check the {exp.frames} {exp.why}")
        elif got < exp.frames:
            report.problems.append(
                f"{exp.bridge}: {exp.port} {label} Δ {got} < {exp.frames} {exp.why} ({exp.frames - got} missing)"
            )
    if report.not_reported:
        report.notes.append(
            "not reported by this datapath (shown as '?', not judged): " + ", ".join(report.not_reported)
        )
    if not after.settled or not before.settled:
        which = [name for name, snap in (("before", before), ("after", after)) if not snap.settled]
        report.notes.append(
            f"counters were still moving when read (background traffic): {' and '.join(which)} snapshot(s) "
            "did not settle; the equalities may be off by frames in flight"
        )
    return report


# ------------------------------------------------------------------------------------ lab topology
def bridge_of(lab: Lab, port: str) -> BridgeSettings | None:
    return next((br for br in lab.bridge if port in [p.name for p in br.ports]), None)


def bridge_pairs(lab: Lab, guests: Sequence[GuestSettings]) -> list[BridgePair]:
    """One pair per bridge that carries a guest's representor: (bridge, uplink, that representor).

    Raises ValueError naming what the lab file lacks (a guest without representor,
    a representor on no bridge).
    """
    pairs: list[BridgePair] = []
    for guest in guests:
        if not guest.representor:
            raise ValueError(f"guest {guest.name} has no representor in the lab file: its bridge port is unknown")
        bridge = bridge_of(lab, guest.representor)
        if bridge is None:
            raise ValueError(f"representor {guest.representor} of guest {guest.name} is on no declared bridge")
        pair = BridgePair(bridge.name, bridge.uplink.name, guest.representor)
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def path_expectations(
    pairs: Sequence[BridgePair], src: GuestSettings, dst: GuestSettings, frames: int, why: str
) -> list[Expectation]:
    """Where ``frames`` frames from ``src`` to ``dst`` must be counted.

    On src's bridge: in at src's representor (rx), out at the uplink (tx); on dst's
    bridge: in at the uplink (rx), out at dst's representor (tx). Both guests on one
    bridge: in at src's representor, out at dst's.
    """
    by_rep = {p.representor: p for p in pairs}
    s, d = by_rep[src.representor or ""], by_rep[dst.representor or ""]
    if s.bridge == d.bridge:
        return [Expectation(s.bridge, s.representor, "rx_packets", frames, why),
                Expectation(s.bridge, d.representor, "tx_packets", frames, why)]
    return [
        Expectation(s.bridge, s.representor, "rx_packets", frames, why),
        Expectation(s.bridge, s.uplink, "tx_packets", frames, why),
        Expectation(d.bridge, d.uplink, "rx_packets", frames, why),
        Expectation(d.bridge, d.representor, "tx_packets", frames, why),
    ]


def watched_ports(pairs: Iterable[BridgePair]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pair in pairs:
        ports = out.setdefault(pair.bridge, [])
        for port in pair.ports:
            if port not in ports:
                ports.append(port)
    return out


def format_deltas(report: SymmetryReport) -> str:
    """A table for the report attachment: bridge, port, rx/tx packet, drop and error deltas."""
    heads = ("rx drop", "tx drop", "rx errs", "tx errs")
    lines = [f"{'bridge':<12} {'port':<12} {'rx Δ':>9} {'tx Δ':>9} " + " ".join(f"{h:>8}" for h in heads)]

    def cell(v: int | None) -> str:
        return "?" if v is None else str(v)

    for bridge, ports in report.deltas.items():
        for port, d in ports.items():
            lines.append(
                f"{bridge:<12} {port:<12} {cell(d['rx_packets']):>9} {cell(d['tx_packets']):>9} "
                f"{cell(d['rx_dropped']):>8} {cell(d['tx_dropped']):>8} {cell(d['rx_errors']):>8} "
                f"{cell(d['tx_errors']):>8}"
            )
    return "\n".join(lines)

"""Background frames on a lab's data network, named so they can be counted and set aside.

A quiet link is never silent: guests send ARP and IPv6 neighbour discovery, router
solicitations and MLD reports; switches send LLDP and STP; hosts join multicast
groups with IGMP. The traffic checks either measure in a way such frames cannot
disturb (see ``counters``) or identify their own frames by a unique marker and
tally everything else here, so a report can say "ignored 3 frames (ARP 2, MLD 1)"
instead of silently dropping them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_LLDP = 0x88CC

_ICMPV6_ND = {133: "ipv6-rs", 134: "ipv6-ra", 135: "ipv6-ns", 136: "ipv6-na", 137: "ipv6-redirect"}
_ICMPV6_MLD = {130, 131, 132, 143}


def _ipv6_next_header(packet: bytes) -> tuple[int | None, bytes]:
    """Walk IPv6 extension headers (hop-by-hop carries MLD's router alert) to the upper protocol."""
    if len(packet) < 40:
        return None, b""
    nxt, offset = packet[6], 40
    while nxt in (0, 43, 60) and len(packet) >= offset + 8:  # hop-by-hop, routing, destination options
        nxt, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
    return nxt, packet[offset:]


def classify(frame: bytes) -> str:
    """A short name for what a frame is: 'arp', 'ipv6-ns', 'mld', 'lldp', 'igmp', 'stp', 'ipv4-udp', ..."""
    if len(frame) < 14:
        return "runt"
    if frame[:6] in (b"\x01\x80\xc2\x00\x00\x00",) and frame[12:14] < b"\x06\x00":
        return "stp"
    ethertype = int.from_bytes(frame[12:14], "big")
    offset = 14
    vlan = ""
    while ethertype in (ETH_P_8021Q, ETH_P_8021AD) and len(frame) >= offset + 4:
        vlan = "vlan-"
        ethertype = int.from_bytes(frame[offset + 2 : offset + 4], "big")
        offset += 4
    payload = frame[offset:]
    if ethertype == ETH_P_ARP:
        return vlan + "arp"
    if ethertype == ETH_P_LLDP:
        return vlan + "lldp"
    if ethertype == ETH_P_IP and len(payload) >= 20:
        proto = payload[9]
        return vlan + {1: "ipv4-icmp", 2: "igmp", 6: "ipv4-tcp", 17: "ipv4-udp"}.get(proto, f"ipv4-proto{proto}")
    if ethertype == ETH_P_IPV6:
        nxt, upper = _ipv6_next_header(payload)
        if nxt == 58 and upper:
            icmp_type = upper[0]
            if icmp_type in _ICMPV6_MLD:
                return vlan + "mld"
            return vlan + _ICMPV6_ND.get(icmp_type, "ipv6-icmp")
        return vlan + "ipv6"
    if ethertype < 0x0600:
        return vlan + "llc"
    return vlan + f"ethertype-0x{ethertype:04x}"


def tally(frames: Iterable[bytes]) -> Counter[str]:
    return Counter(classify(f) for f in frames)


def describe(counts: Counter[str]) -> str:
    """'5 frames (arp 3, mld 2)', or 'none'."""
    total = sum(counts.values())
    if not total:
        return "none"
    parts = ", ".join(f"{name} {n}" for name, n in counts.most_common())
    return f"{total} frame{'s' if total != 1 else ''} ({parts})"

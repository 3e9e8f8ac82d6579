"""vdpalab.traffic.frames and .noise: crafted frames built, sent raw, sniffed raw; noise named.

The live tests (``emulated``) send each case over a veth between two throwaway
namespaces: broadcast, the seed's IGMPv3 report and a VLAN-tagged frame arrive (the
tag restored from packet metadata), the oversize frame is refused by the sender's
kernel and never seen; the namespaces' own IPv6 noise is tallied, not mistaken.
"""

from __future__ import annotations

from collections import Counter

import pytest
from scapy.layers.igmp import IGMPv3, IGMPv3_MR, IGMPv3_MR_Group
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6MLReport2, ICMPv6ND_NS, ICMPv6ND_RS, IPv6, IPv6ExtHdrHopByHop, RouterAlert
from scapy.layers.l2 import ARP, LLC, STP, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from vdpalab.testing.sandbox import NetnsPair
from vdpalab.traffic import noise
from vdpalab.traffic.frames import (
    FrameOutcome,
    FrameRound,
    build_cases,
    describe_outcome,
    dropped_at,
    frame_problems,
    has_python3,
)

pytestmark = pytest.mark.selftest

A_MAC, B_MAC = "00:11:22:33:44:00", "00:11:22:33:44:10"




def _cases(mtu: int = 1500):  # type: ignore[no-untyped-def]
    return build_cases(src_mac=A_MAC, dst_mac=B_MAC, src_ip="192.168.30.153", dst_ip="192.168.30.159",
                       receiver_mtu=mtu)


def test_cases_are_what_the_seed_describes() -> None:
    cases = _cases()
    igmp = Ether(cases["igmp"].frame)
    assert igmp.dst == "01:00:5e:00:00:16" and igmp[IP].dst == "224.0.0.22" and igmp[IP].proto == 2
    assert igmp[IP].ttl == 1 and igmp[IP].tos == 0xC0
    assert igmp.haslayer(IGMPv3) and igmp[IGMPv3_MR].records[0].maddr == "239.255.42.99"
    vlan = Ether(cases["vlan"].frame)
    assert vlan[Dot1Q].vlan == 100 and cases["vlan"].vlan == 100
    assert Ether(cases["broadcast"].frame).dst == "ff:ff:ff:ff:ff:ff"
    over = Ether(cases["oversize"].frame)
    assert over[IP].len == 1501 and len(cases["oversize"].frame) == 1515 and not cases["oversize"].must_arrive
    markers = [c.marker for c in cases.values()]
    assert len(set(markers)) == 4 and all(c.marker.encode() in c.frame for c in cases.values())
    assert _cases()["broadcast"].marker != cases["broadcast"].marker  # unique per build


def test_oversize_follows_the_receivers_mtu() -> None:
    assert len(_cases(9000)["oversize"].frame) == 14 + 9001


@pytest.mark.parametrize("frame,name", [
    (Ether(src=A_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(), "arp"),
    (Ether(src=A_MAC) / Dot1Q(vlan=5) / ARP(), "vlan-arp"),
    (Ether(src=A_MAC) / IPv6(dst="ff02::2") / ICMPv6ND_RS(), "ipv6-rs"),
    (Ether(src=A_MAC) / IPv6() / ICMPv6ND_NS(tgt="fe80::1"), "ipv6-ns"),
    (Ether(src=A_MAC) / IPv6(dst="ff02::16") / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLReport2(), "mld"),
    (Ether(src=A_MAC, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04" + b"\x00" * 40), "lldp"),
    (Ether(src=A_MAC) / IP(dst="224.0.0.22", proto=2) / IGMPv3_MR(records=[IGMPv3_MR_Group()]), "igmp"),
    (Ether(src=A_MAC) / IP() / UDP(), "ipv4-udp"),
    (Dot3(src=A_MAC, dst="01:80:c2:00:00:00") / LLC() / STP(), "stp"),
    (Ether(src=A_MAC, type=0x88B5) / Raw(b"x" * 46), "ethertype-0x88b5"),
    (b"\x00" * 10, "runt"),
])
def test_noise_classification(frame, name: str) -> None:  # type: ignore[no-untyped-def]
    assert noise.classify(bytes(frame)) == name


def test_noise_description() -> None:
    assert noise.describe(Counter()) == "none"
    assert noise.describe(Counter({"arp": 2, "mld": 1})) == "3 frames (arp 2, mld 1)"


def test_problems_are_expected_versus_seen() -> None:
    cases = _cases()
    missing = FrameOutcome(cases["igmp"], None, [], {}, True)
    assert frame_problems(missing, "c77g159") == [
        "igmp: expected at c77g159 (IGMPv3 report to 224.0.0.22 (the seed's frame): NORMAL floods multicast when "
        "snooping is off), not seen"
    ]
    untagged = FrameOutcome(cases["vlan"], None, [bytes(Ether(src=A_MAC, dst=B_MAC) / IP() / Raw(b"x"))], {}, True)
    assert frame_problems(untagged, "c77g159") == ["vlan: expected VLAN 100 at c77g159, saw [None]"]
    leaked = FrameOutcome(cases["oversize"], None, [cases["oversize"].frame], {}, True)
    assert "must not reach c77g159" in frame_problems(leaked, "c77g159")[0]
    assert dropped_at(FrameOutcome(cases["oversize"], "EMSGSIZE (Message too long)", [], {}, True)).startswith(
        "the sender (kernel refused it")
    no_end = FrameOutcome(cases["oversize"], None, [], {}, False)
    assert "absences prove nothing" in frame_problems(no_end, "c77g159")[0]


@pytest.mark.emulated
@pytest.mark.parametrize("name", ["broadcast", "igmp", "vlan", "oversize"])
def test_live_case(pair: NetnsPair, name: str) -> None:
    a, b = pair.a, pair.b
    assert a and b and has_python3(a.host) and has_python3(b.host)
    case = build_cases(src_mac=a.mac, dst_mac=b.mac, src_ip=a.address, dst_ip=b.address, receiver_mtu=b.mtu)[name]
    (outcome,) = FrameRound(a.host, a.interface, a.mac, b.host, b.interface, sniff_timeout_s=5).run([case])
    assert frame_problems(outcome, b.name) == [], describe_outcome(outcome)
    if name == "vlan":
        assert outcome.vlan_ids() == [100]
        assert outcome.received[0][12:14] == b"\x81\x00"
    if name == "oversize":
        assert outcome.send_error and outcome.send_error.startswith("EMSGSIZE")
    else:
        assert outcome.received[0] == case.frame[: len(outcome.received[0])]


@pytest.mark.emulated
def test_live_round_with_all_cases_and_a_python_less_guest(pair: NetnsPair) -> None:
    a, b = pair.a, pair.b
    assert a and b
    cases = list(build_cases(src_mac=a.mac, dst_mac=b.mac, src_ip=a.address, dst_ip=b.address,
                             receiver_mtu=b.mtu).values())
    outcomes = FrameRound(a.host, a.interface, a.mac, b.host, b.interface, sniff_timeout_s=5).run(cases)
    assert [o.arrived for o in outcomes] == [True, True, True, False]
    assert not b.host.run("PATH=/nonexistent command -v python3", timeout=5).ok

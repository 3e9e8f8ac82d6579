"""Crafted frames prove the bridges forward what they must (broadcast, IGMP, VLAN tags) and drop what they must.

Frames are built with scapy in the test process and written raw (AF_PACKET) to guest
a's data interface by a tiny python3 program on the guest; guest b sniffs its data
interface with a raw socket started *before* anything is sent. Each frame carries a
unique marker, so background noise (ARP, IPv6 ND/MLD, ...) is ignored, and tallied in
the attachment. A final end-of-round frame tells the sniffer everything has had its
chance, so "did not arrive" is a finding, not a timeout.

* broadcast (ff:ff:ff:ff:ff:ff) must arrive: bridges flood it;
* the seed's IGMPv3 report (dst 01:00:5e:00:00:16, 224.0.0.22) must arrive: NORMAL floods
  multicast when snooping is off. OVS may log "internal error parsing flow key" for it;
  the seed calls that harmless and nothing here fails on it;
* a VLAN 100 tagged frame must arrive with its tag: ports with neither ``tag`` nor
  ``trunks`` are trunks for every VLAN in OVS NORMAL;
* an IP packet one byte over guest b's MTU must NOT arrive. Where it stopped is recorded:
  usually guest a's own kernel refuses it (EMSGSIZE) when both MTUs are equal.

Skips (with the reason) when a guest has no python3 (e.g. a busybox image).
"""

from __future__ import annotations

import pytest

from fixtures.lab_session import GuestPair
from vdpalab.config import Lab
from vdpalab.traffic.frames import FrameRound, build_cases, describe_outcome, dropped_at, frame_problems, has_python3

pytestmark = [pytest.mark.datapath, pytest.mark.measures]


def _mtu(guest) -> int:  # type: ignore[no-untyped-def]
    result = guest.host.run(["cat", f"/sys/class/net/{guest.settings.interface}/mtu"], timeout=10)
    value = result.stdout.strip()
    return int(value) if result.ok and value.isdigit() else guest.settings.mtu


@pytest.mark.timeout(90)
def test_crafted_frame(lab: Lab, guests: GuestPair, frame_case: str, record) -> None:
    for guest in (guests.a, guests.b):
        if not has_python3(guest.host):
            pytest.skip(f"guest {guest.name} has no python3 (needed for raw-socket send/sniff)")
    a, b = guests.a, guests.b
    cases = build_cases(
        src_mac=a.settings.mac, dst_mac=b.settings.mac, src_ip=a.address, dst_ip=b.address,
        receiver_mtu=_mtu(b),
    )
    case = cases[frame_case]
    rnd = FrameRound(a.host, a.settings.interface, a.settings.mac, b.host, b.settings.interface)
    (outcome,) = rnd.run([case])
    description = describe_outcome(outcome)
    if not case.must_arrive:
        description += f"\n  dropped at: {dropped_at(outcome)}"
    record.attach(f"frame {frame_case}", description)
    params = {"case": frame_case, "direction": f"{a.name}->{b.name}", "frame_bytes": len(case.frame)}
    record("frames_received", len(outcome.received), "frames", params=params,
           better="higher" if case.must_arrive else "lower")
    record("noise_frames_ignored", sum(outcome.noise.values()), "frames", params=params, better="lower")
    problems = frame_problems(outcome, b.name)
    assert not problems, "\n".join(problems) + "\n" + description

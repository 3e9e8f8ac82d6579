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
* the three frames that must arrive share one round per lab (sent by the first of their tests, each
  with its own marker; each test judges its own frame);
* an IP packet one byte over guest b's MTU must NOT arrive. For that case guest a's MTU is
  raised above b's (and restored), so the frame leaves the sender and must be dropped on the
  way (by the representor's or the bridge's MTU); where it stopped is recorded. If it still
  never left the sender, the datapath was not exercised: the test skips saying so, never passes.

A guest without python3 is an ERROR of the lab unless the lab file says
``[checks] crafted_frames = false`` (e.g. a busybox image).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fixtures.lab_session import GuestPair
from vdpalab.config import Lab
from vdpalab.traffic.frames import (
    FrameCase,
    FrameOutcome,
    FrameRound,
    build_cases,
    describe_outcome,
    dropped_at,
    frame_problems,
)

pytestmark = [pytest.mark.datapath, pytest.mark.measures]

OVERSIZE_HEADROOM = 100  # bytes the sender's MTU is raised above the receiver's for the oversize case


def _mtu(guest) -> int:  # type: ignore[no-untyped-def]
    result = guest.host.run(["cat", f"/sys/class/net/{guest.settings.interface}/mtu"], timeout=10)
    value = result.stdout.strip()
    return int(value) if result.ok and value.isdigit() else guest.settings.mtu


@contextmanager
def _sender_mtu_above(guest, receiver_mtu: int) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Raise the sender's MTU above the receiver's for the oversize case (restored afterwards).

    With equal MTUs the sender's own kernel refuses the frame (EMSGSIZE) and the datapath is
    never exercised; above it the frame leaves the sender and must be dropped on the way.
    """
    before = _mtu(guest)
    wanted = receiver_mtu + OVERSIZE_HEADROOM
    if before >= wanted:
        yield f"sender MTU {before} already above the receiver's {receiver_mtu}"
        return
    iface = guest.settings.interface
    result = guest.host.run(["ip", "link", "set", "dev", iface, "mtu", str(wanted)], timeout=10)
    if not result.ok:
        pytest.skip(f"the oversize frame cannot leave {guest.name}: its MTU cannot go above the receiver's "
                    f"{receiver_mtu} ({result.stderr.strip() or f'rc={result.rc}'}): the datapath would not be "
                    "exercised")
    try:
        yield f"sender MTU raised {before} -> {wanted} for this case (receiver MTU {receiver_mtu})"
    finally:
        guest.host.run(["ip", "link", "set", "dev", iface, "mtu", str(before)], timeout=10)


SHARED_ROUNDS = pytest.StashKey[dict[tuple[str, str, str, int], dict[str, FrameOutcome]]]()


def _shared_arrival(config: pytest.Config, key: tuple[str, str, str, int], rnd: FrameRound,
                    cases: dict[str, FrameCase]) -> dict[str, FrameOutcome]:
    """The must-arrive cases of one lab and guest pair go in one round (one sniffer, one sender, every frame with
    its own marker), run by the first of their tests; each test judges its own case. A round that raised is not
    kept: the next test runs its own."""
    rounds = config.stash.setdefault(SHARED_ROUNDS, {})
    if key not in rounds:
        outcomes = rnd.run([c for c in cases.values() if c.must_arrive])
        rounds[key] = {o.case.name: o for o in outcomes}
    return rounds[key]


@pytest.mark.timeout(90)
def test_crafted_frame(lab: Lab, python3_guests: GuestPair, frame_case: str, record, request) -> None:  # type: ignore[no-untyped-def]
    a, b = python3_guests.a, python3_guests.b
    receiver_mtu = _mtu(b)
    cases = build_cases(
        src_mac=a.settings.mac, dst_mac=b.settings.mac, src_ip=a.address, dst_ip=b.address,
        receiver_mtu=receiver_mtu,
    )
    case = cases[frame_case]
    rnd = FrameRound(a.host, a.settings.interface, a.settings.mac, b.host, b.settings.interface)
    if case.must_arrive:
        mtu_note = ""
        outcome = _shared_arrival(request.config, (lab.lab.name, a.name, b.name, receiver_mtu), rnd, cases)[frame_case]
        case = outcome.case
    else:
        with _sender_mtu_above(a, receiver_mtu) as mtu_note:
            (outcome,) = rnd.run([case])
    description = describe_outcome(outcome)
    if not case.must_arrive:
        description += f"\n  {mtu_note}\n  dropped at: {dropped_at(outcome)}"
    record.attach(f"frame {frame_case}", description)
    params = {"case": frame_case, "direction": f"{a.name}->{b.name}", "frame_bytes": len(case.frame)}
    record("frames_received", len(outcome.received), "frames", params=params,
           better="higher" if case.must_arrive else "lower")
    record("noise_frames_ignored", sum(outcome.noise.values()), "frames", params=params, better="lower")
    problems = frame_problems(outcome, b.name)
    assert not problems, "\n".join(problems) + "\n" + description
    if not case.must_arrive and outcome.send_error:
        pytest.skip(f"{frame_case}: the frame never left {a.name} ({outcome.send_error}): the datapath was not "
                    "exercised, so its drop proves nothing")

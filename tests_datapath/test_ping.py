"""Flood ping between the two guests proves the datapath carries every packet, both ways, at every size.

The seed's check: ``ping -f`` from c77g153 to c77g159 sent 85742 packets in 20 s with
0% loss and rtt avg 0.111 ms. Here each direction and each payload size of the lab's
ping profile (``[traffic.ping]``: count, deadline, flood or interval) is one test;
the judge fails it when loss exceeds ``thresholds.ping_loss_pct_max`` (0 by default) or
the average or maximum rtt its threshold. A jumbo payload (8972 bytes) runs
when the lab file gives both guests an MTU that carries it, else it skips naming the lab's MTU; a guest
whose real MTU is below the lab's fails.
Every figure is recorded (loss_pct, rtt_avg/max/mdev_ms, transmitted) with its
direction and size.
"""

from __future__ import annotations

import pytest

from fixtures.lab_session import GuestPair
from vdpalab.config import Lab
from vdpalab.hosts.base import Host
from vdpalab.traffic.ping import PingSpec, ping_problems, run_ping

pytestmark = [pytest.mark.datapath, pytest.mark.measures]

IPV4_ICMP_HEADERS = 28
STANDARD_MTU = 1500
JUMBO_PAYLOAD = 8972  # added to every lab's sizes; runs only where both guests' MTU carries it unfragmented


def interface_mtu(host: Host, interface: str) -> int | None:
    """The MTU the guest really has (sysfs); None when it cannot be read."""
    result = host.run(["cat", f"/sys/class/net/{interface}/mtu"], timeout=10)
    value = result.stdout.strip()
    return int(value) if result.ok and value.isdigit() else None


@pytest.mark.timeout(180)
def test_flood_ping(lab: Lab, guests: GuestPair, ping_size: int, direction: str, record) -> None:
    profile = lab.traffic.ping
    pair = guests if direction == "a_to_b" else guests.reversed()
    if ping_size not in profile.payload_sizes and ping_size != JUMBO_PAYLOAD:
        pytest.skip(f"payload {ping_size} is not in lab {lab.lab.name}'s [traffic.ping] payload_sizes")
    need = ping_size + IPV4_ICMP_HEADERS
    if need > STANDARD_MTU:
        # the lab file decides: a guest it gives a small MTU skips; a guest it gives a jumbo MTU must have it
        declared = [f"{g.name} mtu = {g.settings.mtu}" for g in (pair.a, pair.b) if g.settings.mtu < need]
        if declared:
            pytest.skip(f"a ping of {ping_size} bytes (unfragmented) needs MTU >= {need} on both guests: "
                        f"lab {lab.lab.name}'s [[guest]] " + ", ".join(declared))
        for guest in (pair.a, pair.b):
            mtu = interface_mtu(guest.host, guest.settings.interface)
            assert mtu is None or mtu >= need, (
                f"{guest.name} {guest.settings.interface} has MTU {mtu}, but lab {lab.lab.name} sets mtu = "
                f"{guest.settings.mtu}: a {ping_size}-byte ping would not pass unfragmented"
            )
    spec = PingSpec(
        destination=pair.b.address,
        count=profile.count,
        deadline_s=profile.deadline_s,
        size=ping_size,
        flood=profile.flood,
        interval_s=profile.interval_s,
        quiet=True,
    )
    run = run_ping(pair.a.host, spec)
    params = {"direction": f"{pair.a.name}->{pair.b.name}", "size": ping_size, "mode": run.mode}
    record.attach(f"ping {pair.a.name} -> {pair.b.name} {ping_size}B", f"$ {run.result.command}\n{run.result.stdout}"
                  + (f"\n[stderr]\n{run.result.stderr}" if run.result.stderr.strip() else ""))
    if run.stats is not None:
        s = run.stats
        record("loss_pct", s.loss_pct, "%", params=params, better="lower")
        record("transmitted", s.transmitted, "packets", params=params, better="higher")
        for name, value in (("rtt_avg_ms", s.rtt_avg_ms), ("rtt_max_ms", s.rtt_max_ms), ("rtt_mdev_ms", s.rtt_mdev_ms)):
            if value is not None:
                record(name, value, "ms", params=params, better="lower")
    problems = ping_problems(run)  # loss and rtt limits: the judge applies the lab's [thresholds] to the records
    assert not problems, "\n".join(problems)

"""iperf3 between the guests proves the datapath sustains real TCP and UDP load in both directions.

TCP runs with each stream count of ``[traffic.iperf3] streams`` (1 and N), forward
(guest a sends) and reverse (``-R``, guest b sends); throughput must reach
``thresholds.tcp_throughput_gbps_min``. UDP runs at ``udp_rate`` with ``udp_length``
datagrams; the judge fails a loss over ``thresholds.udp_loss_pct_max``. The server is a
one-off ``iperf3 -s -1`` on a port checked free with ``ss -ltn`` on guest b, stopped by
its pid afterwards whatever happened; the client has ``--connect-timeout`` and a hard
timeout, so a dead peer or a hung iperf3 fails this test only, in bounded time. A run
that errors fails with iperf3's own message (the JSON ``error``). A guest without iperf3 is
an ERROR of the lab unless the lab file says ``[checks] iperf3 = false``. Recorded:
throughput_gbps (samples: every interval's rate), retransmits, and for UDP loss_pct
and jitter_ms.
"""

from __future__ import annotations

import pytest

from fixtures.lab_session import GuestPair
from vdpalab.config import Lab
from vdpalab.traffic.iperf import Iperf3Run, Iperf3Spec, iperf3_between, iperf_problems

pytestmark = [pytest.mark.datapath, pytest.mark.measures]

DIRECTIONS = ["forward", "reverse"]


def _record_run(record, run: Iperf3Run, params: dict) -> None:  # type: ignore[no-untyped-def]
    if run.result is not None:
        text = f"$ {run.result.command}\n{run.result.stdout[-20000:]}"
        if run.result.stderr.strip():
            text += f"\n[stderr]\n{run.result.stderr}"
        if run.notes:
            text += "\n[notes]\n" + "\n".join(run.notes)
        record.attach(run.label, text)
    if run.parsed is None or run.error:
        return
    gbps = run.throughput_gbps
    if gbps is not None:
        record("throughput_gbps", gbps, "Gbit/s", samples=run.interval_gbps, params=params, better="higher")
    if run.parsed.retransmits is not None:
        record("retransmits", run.parsed.retransmits, "segments", params=params, better="lower")
    if run.spec.udp:
        if run.parsed.lost_percent is not None:
            record("loss_pct", run.parsed.lost_percent, "%", params=params, better="lower")
        if run.parsed.jitter_ms is not None:
            record("jitter_ms", run.parsed.jitter_ms, "ms", params=params, better="lower")


@pytest.fixture
def iperf_direction(request: pytest.FixtureRequest, lab: Lab) -> str:
    """The direction; reverse skips before any guest is asked when the lab turns it off (a dead guest
    must not turn a test the lab never selected into an ERROR)."""
    direction: str = request.param
    if direction == "reverse" and not lab.traffic.iperf3.reverse:
        pytest.skip(f"lab {lab.lab.name} has [traffic.iperf3] reverse = false")
    return direction


def _direction(guests: GuestPair, run_reverse: bool) -> str:
    sender, receiver = (guests.b, guests.a) if run_reverse else (guests.a, guests.b)
    return f"{sender.name}->{receiver.name}"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("iperf_direction", DIRECTIONS, indirect=True)
def test_tcp_throughput(lab: Lab, iperf_direction: str, tcp_streams: int, iperf3_guests: GuestPair, record) -> None:
    guests = iperf3_guests
    profile = lab.traffic.iperf3
    if tcp_streams not in profile.streams:
        pytest.skip(f"{tcp_streams} streams is not in lab {lab.lab.name}'s [traffic.iperf3] streams")
    reverse = iperf_direction == "reverse"
    spec = Iperf3Spec(
        server=guests.b.address, duration_s=profile.duration_s, omit_s=profile.omit_s,
        streams=tcp_streams, reverse=reverse, binary=profile.binary,
    )
    run = iperf3_between(guests.a.host, guests.b.host, spec, timeout=profile.timeout_s + spec.expected_s)
    params = {"protocol": "tcp", "streams": tcp_streams, "direction": _direction(guests, reverse)}
    _record_run(record, run, params)
    problems = iperf_problems(run)  # the judge applies thresholds.tcp_throughput_gbps_min
    assert not problems, "\n".join(problems + run.notes)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("iperf_direction", DIRECTIONS, indirect=True)
def test_udp_loss(lab: Lab, iperf_direction: str, iperf3_guests: GuestPair, record) -> None:
    guests = iperf3_guests
    profile = lab.traffic.iperf3
    reverse = iperf_direction == "reverse"
    spec = Iperf3Spec(
        server=guests.b.address, duration_s=profile.duration_s, omit_s=profile.omit_s, reverse=reverse,
        udp=True, rate=profile.udp_rate, length=profile.udp_length, binary=profile.binary,
    )
    run = iperf3_between(guests.a.host, guests.b.host, spec, timeout=profile.timeout_s + spec.expected_s)
    params = {"protocol": "udp", "rate": profile.udp_rate, "length": profile.udp_length,
              "direction": _direction(guests, reverse)}
    _record_run(record, run, params)
    problems = iperf_problems(run)  # the judge applies thresholds.udp_loss_pct_max
    assert not problems, "\n".join(problems + run.notes)

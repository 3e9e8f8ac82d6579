"""Throughput matrix: TCP × streams and UDP at a set rate, × direction, repeated trials after a warm-up.

Each cell runs ``[traffic.benchmark] trials`` iperf3 trials of ``duration_s`` after one warm-up
trial whose numbers are thrown away (CSIT and LNST do the same: the first trial pays for ARP,
flow setup and cold caches). Every trial is recorded with its own ``trial`` number and its
per-interval samples, so ``vdpalab trend`` sees the spread and not only a mean. This is a
measurement for the history, not a gate: it fails only when a trial could not be measured.
"""

from __future__ import annotations

import pytest

from fixtures.lab_session import GuestPair
from vdpalab.config import Lab
from vdpalab.traffic.iperf import Iperf3Spec, iperf3_between

pytestmark = [pytest.mark.benchmark, pytest.mark.measures]


@pytest.mark.timeout(600)
def test_throughput_matrix(
    lab: Lab, guests: GuestPair, bench_case: tuple[str, int], bench_direction: str, record
) -> None:  # type: ignore[no-untyped-def]
    bench_protocol, bench_streams = bench_case
    bench = lab.traffic.benchmark
    profile = lab.traffic.iperf3
    if bench_protocol not in bench.protocols:
        pytest.skip(f"lab {lab.lab.name}: {bench_protocol} is not in [traffic.benchmark] protocols")
    if bench_protocol == "tcp" and bench_streams not in profile.streams:
        pytest.skip(f"lab {lab.lab.name}: {bench_streams} streams is not in [traffic.iperf3] streams")
    reverse = bench_direction == "reverse"
    if reverse and not profile.reverse:
        pytest.skip(f"lab {lab.lab.name} has [traffic.iperf3] reverse = false")
    for guest in (guests.a, guests.b):
        if not guest.host.run(f"command -v {profile.binary}", timeout=10).ok:
            pytest.skip(f"{profile.binary} is not installed on guest {guest.name}")
    udp = bench_protocol == "udp"
    spec = Iperf3Spec(
        server=guests.b.address,
        duration_s=bench.duration_s,
        streams=bench_streams,
        reverse=reverse,
        udp=udp,
        rate=profile.udp_rate if udp else None,
        length=profile.udp_length if udp else None,
        binary=profile.binary,
    )
    sender, receiver = (guests.b, guests.a) if reverse else (guests.a, guests.b)
    params = {"protocol": bench_protocol, "streams": bench_streams, "direction": f"{sender.name}->{receiver.name}"}
    if udp:
        params["rate"] = profile.udp_rate
    first = 0 if bench.warmup else 1
    measured: list[float] = []
    for trial in range(first, bench.trials + 1):
        run = iperf3_between(guests.a.host, guests.b.host, spec, timeout=profile.timeout_s + spec.expected_s)
        started, ended = run.result.started if run.result else None, None
        if run.result is not None:
            ended = run.result.started + run.result.duration
        assert run.error is None and run.throughput_gbps is not None, (
            f"trial {trial} ({'warm-up' if trial == 0 else 'measured'}) of {run.label} failed: {run.error}"
        )
        if trial == 0:
            continue  # the warm-up trial: not measured
        measured.append(run.throughput_gbps)
        record(
            "throughput_gbps",
            run.throughput_gbps,
            "Gbit/s",
            samples=run.interval_gbps,
            params=params,
            better="higher",
            trial=trial,
            started=started,
            ended=ended,
        )
        if udp and run.parsed is not None and run.parsed.lost_percent is not None:
            record(
                "loss_pct",
                run.parsed.lost_percent,
                "%",
                params=params,
                better="lower",
                trial=trial,
                started=started,
                ended=ended,
            )
    print(f"{params}: {', '.join(f'{g:.3f}' for g in measured)} Gbit/s over {len(measured)} trial(s)")
    assert len(measured) == bench.trials

"""Latency distribution: per-packet rtt from ping, with p50, p99 and max, in both directions.

ping runs at ``[traffic.benchmark] latency_interval_s`` (not flood: flood prints dots, not
per-reply times) for ``latency_count`` packets after a short unmeasured warm-up, and every
reply's rtt is kept as a sample, so the history holds the distribution, not only the mean.
"""

from __future__ import annotations

import pytest

from fixtures.lab_session import GuestPair
from vdpalab.config import Lab
from vdpalab.results import Measurement
from vdpalab.traffic.ping import PingSpec, run_ping

pytestmark = [pytest.mark.benchmark, pytest.mark.measures]


@pytest.mark.timeout(300)
def test_latency_distribution(lab: Lab, guests: GuestPair, bench_direction: str, record) -> None:  # type: ignore[no-untyped-def]
    bench = lab.traffic.benchmark
    sender, receiver = (guests.b, guests.a) if bench_direction == "reverse" else (guests.a, guests.b)
    warmup = PingSpec(receiver.address, count=10, deadline_s=10, flood=False, interval_s=0.01, quiet=True)
    run_ping(sender.host, warmup)
    deadline = bench.latency_count * bench.latency_interval_s * 3 + 10
    spec = PingSpec(
        receiver.address,
        count=bench.latency_count,
        deadline_s=deadline,
        flood=False,
        interval_s=bench.latency_interval_s,
        quiet=False,
    )
    run = run_ping(sender.host, spec)
    assert run.stats is not None, f"{run.label}: no statistics: {run.error}"
    assert run.rtts_ms, f"{run.label}: no per-reply rtt lines in the output"
    assert len(run.rtts_ms) >= run.stats.received - run.stats.duplicates, (
        f"{run.label}: {len(run.rtts_ms)} rtt samples for {run.stats.received} replies"
    )
    started = run.result.started
    measurement = Measurement("rtt_ms", "ms", tuple(run.rtts_ms), started=started, ended=started + run.result.duration)
    params = {"direction": f"{sender.name}->{receiver.name}", "interval_s": bench.latency_interval_s}
    for name, how in (("latency_p50_ms", "median"), ("latency_p99_ms", "p99"), ("latency_max_ms", "max")):
        record(
            name,
            measurement.stat(how),
            "ms",
            samples=run.rtts_ms if how == "median" else (),
            params=params,
            better="lower",
            started=measurement.started,
            ended=measurement.ended,
        )
    print(
        f"{run.label}: p50 {measurement.stat('median'):.3f} ms, p99 {measurement.stat('p99'):.3f} ms, "
        f"max {measurement.stat('max'):.3f} ms over {len(run.rtts_ms)} replies"
    )
    assert measurement.stat("median") <= measurement.stat("p99") <= measurement.stat("max")

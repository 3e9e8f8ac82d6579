"""Synthetic run histories with known changes: for the trend self-tests, the benchmark and demos.

Series ``i`` alternates between a throughput metric (higher is better, ~9.4 Gbit/s) and
an rtt metric (lower is better, ~0.111 ms, the seed's flood-ping average), with small
Gaussian noise. ``Step`` injects a lasting level shift from a given run on; failed runs
and failed tests can be injected too. The kernel changes at one third of the history
and the NIC firmware at two thirds, so charts have something to group by.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from vdpalab.results import Better, Result, RunFingerprint, RunRecord, TestOutcome

DAY = 86400.0
T0 = 1767225600.0  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class Step:
    """Multiply series ``series`` by ``factor`` from run ``at`` on."""

    series: int
    at: int
    factor: float

    def kind(self, better: Better) -> str:
        worse = self.factor < 1 if better == "higher" else self.factor > 1
        return "regression" if worse else "progression"


@dataclass(frozen=True)
class SeriesSpec:
    lab: str
    test_id: str
    metric: str
    unit: str
    better: Better
    base: float
    noise: float  # relative stdev
    params: dict[str, int]


def series_specs(n_series: int, labs: Sequence[str] = ("cx6dx", "emu")) -> list[SeriesSpec]:
    specs = []
    for i in range(n_series):
        lab = labs[i % len(labs)]
        size = (64, 512, 1400, 9000)[(i // 2) % 4]
        streams = 1 + (i // 8) % 4
        case = i // 32
        params = {"size": size, "streams": streams, "case": case}
        if i % 2 == 0:
            specs.append(SeriesSpec(lab, f"tests_datapath/test_iperf3.py::test_tcp_throughput[{lab}-{i}]",
                                    "tcp_throughput_gbps", "Gbit/s", "higher", 9.4 - 0.1 * (i % 7), 0.004, params))
        else:
            specs.append(SeriesSpec(lab, f"tests_datapath/test_ping.py::test_flood_rtt[{lab}-{i}]",
                                    "ping_rtt_avg_ms", "ms", "lower", 0.111 + 0.002 * (i % 5), 0.006, params))
    return specs


def synthetic_runs(
    n_runs: int,
    n_series: int,
    *,
    steps: Iterable[Step] = (),
    failed_runs: Iterable[int] = (),
    failed_tests: Iterable[tuple[int, int]] = (),
    labs: Sequence[str] = ("cx6dx", "emu"),
    seed: int = 7,
) -> Iterator[RunRecord]:
    """One RunRecord per night. ``failed_runs``: run indexes whose whole run failed (no results);
    ``failed_tests``: (series, run) pairs whose test failed without a value."""
    rng = random.Random(seed)
    specs = series_specs(n_series, labs)
    step_list = list(steps)
    dead = set(failed_runs)
    broken = set(failed_tests)
    for k in range(n_runs):
        started = T0 + k * DAY + 2 * 3600
        run_id = f"{started_id(started)}-nightly-{k:04d}"
        kernel = "5.11.11-1.el8.elrepo" if k < n_runs // 3 else "6.1.0-18-amd64"
        firmware = "22.29.2002" if k < 2 * n_runs // 3 else "22.31.1014"
        fps = {lab: RunFingerprint(lab, {
            "kernel": kernel, "nic_driver": "mlx5_core", "nic_firmware": firmware if lab != "emu" else None,
            "ofed": "5.2-2.2.0.0" if lab != "emu" else None, "ovs": "2.14.1", "dpdk": "21.02", "qemu": "6.0.0",
            "libvirt": "7.4.0",
        }, host=f"{lab}-host") for lab in labs}
        run = RunRecord(run_id=run_id, started=started, ended=started + 1800,
                        status="failed" if k in dead else "complete", fingerprints=fps,
                        pytest_args=("-m", "datapath"), suite_revision=f"{k:07x}")
        if k not in dead:
            for i, spec in enumerate(specs):
                if (i, k) in broken:
                    run.outcomes.append(TestOutcome(spec.test_id, "failed", 1.0, "iperf3: connection refused",
                                                    lab=spec.lab))
                    continue
                level = spec.base
                for s in step_list:
                    if s.series == i and k >= s.at:
                        level *= s.factor
                value = level * (1 + rng.gauss(0, spec.noise))
                run.results.append(Result(spec.metric, value, spec.unit, (), spec.params, spec.test_id, spec.lab,
                                          spec.better, started + 60 + i, started + 61 + i))
                run.outcomes.append(TestOutcome(spec.test_id, "passed", 1.0, lab=spec.lab))
        yield run


def started_id(started: float) -> str:
    from datetime import UTC, datetime

    return f"{datetime.fromtimestamp(started, UTC):%Y%m%d-%H%M%S}"

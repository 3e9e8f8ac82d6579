"""Parametrization of the benchmarks from the labs' ``[traffic.benchmark]`` and ``[traffic.iperf3]`` profiles."""

from __future__ import annotations

import pytest

from fixtures.lab_options import labs_of


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    labs = labs_of(metafunc.config)
    if "bench_case" in metafunc.fixturenames:
        cases: list[tuple[str, int]] = []
        for lab in labs:
            for protocol in lab.traffic.benchmark.protocols:
                streams = lab.traffic.iperf3.streams if protocol == "tcp" else [1]  # UDP: one stream at a rate
                cases += [(protocol, n) for n in streams if (protocol, n) not in cases]
        cases = cases or [("tcp", 1), ("udp", 1)]
        ids = [f"{p}-P{n}" if p == "tcp" else p for p, n in cases]
        metafunc.parametrize("bench_case", cases, ids=ids)
    if "bench_direction" in metafunc.fixturenames:
        metafunc.parametrize("bench_direction", ["forward", "reverse"])

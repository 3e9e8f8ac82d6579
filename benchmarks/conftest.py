"""Parametrization of the benchmarks from the labs' ``[traffic.benchmark]`` and ``[traffic.iperf3]`` profiles."""

from __future__ import annotations

import pytest

from fixtures.lab_options import labs_of


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    labs = labs_of(metafunc.config)
    if "bench_protocol" in metafunc.fixturenames:
        protocols: list[str] = []
        for lab in labs:
            protocols += [p for p in lab.traffic.benchmark.protocols if p not in protocols]
        metafunc.parametrize("bench_protocol", protocols or ["tcp", "udp"])
    if "bench_streams" in metafunc.fixturenames:
        streams: list[int] = []
        for lab in labs:
            streams += [n for n in lab.traffic.iperf3.streams if n not in streams]
        metafunc.parametrize("bench_streams", streams or [1], ids=[f"P{n}" for n in streams or [1]])
    if "bench_direction" in metafunc.fixturenames:
        metafunc.parametrize("bench_direction", ["forward", "reverse"])

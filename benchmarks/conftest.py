"""Parametrization of the benchmarks from the labs' ``[traffic.benchmark]``, ``[traffic.iperf3]``, ``[traffic.ndr]``."""

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
    if "ndr_case" in metafunc.fixturenames:
        # one case per frame size x direction any lab asks for; a lab skips the ones it did not; the timeout
        # covers calibration plus the lab's time budget (a hardware search may take its 20 minutes)
        ndr_cases: list[tuple[int | str, str]] = []
        budget = 0.0
        for lab in labs:
            ndr = lab.traffic.ndr
            budget = max(budget, ndr.time_budget_s + 4 * ndr.calibration_s + 120)
            ndr_cases += [(size, d) for size in ndr.frame_sizes for d in ndr.directions if (size, d) not in ndr_cases]
        metafunc.parametrize(
            "ndr_case",
            [pytest.param(case, marks=pytest.mark.timeout(budget or 300)) for case in ndr_cases or [(64, "forward")]],
            ids=[f"{size}B-{d}" if size != "imix" else f"imix-{d}" for size, d in ndr_cases or [(64, "forward")]],
        )

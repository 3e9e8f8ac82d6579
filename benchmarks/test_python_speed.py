"""Speed of the suite's own Python code, timed by pytest-benchmark: parsers on large inputs, trend
classification over a synthetic history, and one command's round trip through SSHHost.

A benchmark, not a timed test: pytest-benchmark prints its table of figures (min/median/mean per
case, ``--benchmark-json`` to keep them) and nothing fails on a slow machine. What each case asserts
is that the timed code did its work (records parsed, series classified, the command's output), so a
broken parser cannot look fast. The figures' targets (under 1 s for the parsers, a few ms per SSH
command) are printed by ``make bench-suite`` next to the same measurements.
Not marked ``benchmark`` (those are the lab's measurements, recorded in its history): ``make test`` and
``make bench-suite`` run this file on its own, ``.venv/bin/pytest benchmarks/test_python_speed.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_parsers import make_dump_ports, make_kernel_log
from vdpalab.parsers.kernel_log import parse_kernel_log
from vdpalab.parsers.ovs import parse_dump_ports


def test_kernel_log_100k_lines(benchmark: Any) -> None:
    log = make_kernel_log()
    parsed = benchmark.pedantic(parse_kernel_log, args=(log,), rounds=3, iterations=1)
    assert len(parsed.records) == 100_000 and len(parsed.vdpa_events) == 20_000


def test_dump_ports_500_ports(benchmark: Any) -> None:
    text = make_dump_ports()
    parsed = benchmark.pedantic(parse_dump_ports, args=(text,), rounds=5, iterations=1)
    assert len(parsed.ports) == 500


def test_trend_classification(benchmark: Any, tmp_path: Path) -> None:
    """jumpavg over 90 nightly runs x 40 series (the pure-Python part of ``vdpalab trend``, no charts)."""
    from vdpalab.history.store import HistoryStore
    from vdpalab.history.trend import classify_series, load_series
    from vdpalab.testing.synthetic import Step, synthetic_runs

    with HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}") as store:
        for run in synthetic_runs(90, 40, steps=[Step(0, 60, 0.8)]):
            store.import_run(run)
        series = load_series(store)
    trends = benchmark.pedantic(lambda: [classify_series(s) for s in series], rounds=3, iterations=1)
    assert len(trends) == 40
    assert any(a.kind == "regression" for t in trends for a in t.anomalies), "the planted 20 % drop must be found"


@pytest.fixture(scope="module")
def ssh_host() -> Iterator[Any]:
    """SSHHost on a private sshd on 127.0.0.1 (as benchmarks/bench_ssh.py)."""
    if os.geteuid() != 0:
        pytest.skip("the private sshd needs root")
    from vdpalab.emulated.sshd import start_sshd

    with start_sshd() as server, server.host("bench", command_timeout=30) as host:
        for _ in range(10):  # connect and warm up
            host.check("true")
        yield host


def test_ssh_command_round_trip(benchmark: Any, ssh_host: Any) -> None:
    result = benchmark.pedantic(ssh_host.check, args=("echo ok",), rounds=200, iterations=1)
    assert result.stdout == "ok\n"

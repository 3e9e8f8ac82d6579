"""vdpalab.traffic.ping: command lines, judging, and real runs between two throwaway namespaces.

The live tests (marked ``emulated``: root, network namespaces) create
``vdpalab-dp<pid>-a``/``-b`` joined by a veth (192.168.99.1/.2) and remove them after
the module, checking that no process the runners started is left inside.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vdpalab.hosts.base import CommandResult
from vdpalab.parsers.ping import parse_ping
from vdpalab.results import Result, Threshold
from vdpalab.testing.sandbox import NetnsPair
from vdpalab.traffic.ping import PingRun, PingSpec, ping_problems, run_ping

pytestmark = pytest.mark.selftest

DATA = Path(__file__).parent / "data"




def _run(text: str, spec: PingSpec | None = None) -> PingRun:
    spec = spec or PingSpec("192.168.30.159", count=85742, deadline_s=20)
    result = CommandResult("c77g153", "ping ...", 0, text, "", 0.0, 20.0)
    return PingRun(spec, "c77g153", result, "flood", parse_ping(text))


def test_argv_flood_as_root_and_as_user() -> None:
    spec = PingSpec("192.168.30.159", count=20000, deadline_s=30, size=1400)
    assert spec.argv(root=True) == ["ping", "-f", "-c", "20000", "-w", "30", "-s", "1400", "-q", "192.168.30.159"]
    assert spec.argv(root=False)[:3] == ["ping", "-i", "0.002"]
    assert spec.mode(root=False) == "interval 0.002 s (flood needs root)"
    paced = PingSpec("10.0.0.1", count=5, deadline_s=2.5, flood=False, interval_s=0.2, quiet=False)
    assert paced.argv() == ["ping", "-i", "0.2", "-c", "5", "-w", "3", "-s", "56", "10.0.0.1"]


def test_seed_flood_ping_passes_the_seed_thresholds() -> None:
    run = _run((DATA / "seed" / "ping-f-c77g153-to-c77g159.txt").read_text())
    assert run.stats is not None and run.stats.transmitted == 85742
    assert ping_problems(run) == []
    # the seed's max rtt (7.1 ms) breaks a 5 ms limit in the judge, and the message says both numbers
    verdict = Threshold("rtt_max_ms", "<=", 5.0).judge(Result("rtt_max_ms", run.stats.rtt_max_ms, "ms", better="lower"))
    assert verdict.failed and "expected <= 5 ms" in verdict.message and "seen 7.1 ms" in verdict.message


def test_unreachable_ping_reports_loss_with_counts() -> None:
    run = _run((DATA / "emulated" / "ping-iputils-unreachable-ns.txt").read_text())
    assert ping_problems(run) == []  # a usable measurement: the judge fails its loss
    assert run.stats is not None and run.stats.loss_pct == 100 and run.stats.errors == 3
    assert Threshold("loss_pct", "<=", 0).judge(Result("loss_pct", run.stats.loss_pct, "%", better="lower")).failed


def test_unparsable_output_is_a_problem_not_a_pass() -> None:
    spec = PingSpec("192.168.30.159", count=10, deadline_s=5)
    result = CommandResult("c77g153", "ping", 2, "", "ping: connect: Network is unreachable\n", 0.0, 0.01)
    run = PingRun(spec, "c77g153", result, "flood", None, error="ping exited 2: ping: connect: Network is unreachable")
    assert ping_problems(run) == [
        "c77g153 -> 192.168.30.159 (56 B, flood): no statistics: ping exited 2: ping: connect: Network is unreachable"
    ]


@pytest.mark.emulated
@pytest.mark.parametrize("size", [56, 1400])
def test_live_flood_ping_both_ways(pair: NetnsPair, size: int) -> None:
    assert pair.a and pair.b
    for src, dst in ((pair.a, pair.b), (pair.b, pair.a)):
        run = run_ping(src.host, PingSpec(dst.address, count=500, deadline_s=10, size=size))
        assert run.mode == "flood"
        assert run.stats is not None and run.stats.transmitted == 500 and run.stats.received == 500, run.error
        assert ping_problems(run) == [] and run.stats.loss_pct == 0


@pytest.mark.emulated
def test_live_paced_ping_keeps_per_packet_rtts(pair: NetnsPair) -> None:
    assert pair.a and pair.b
    run = run_ping(pair.a.host, PingSpec(pair.b.address, count=5, deadline_s=5, flood=False, interval_s=0.01,
                                         quiet=False))
    assert run.stats is not None and len(run.rtts_ms) == 5 and all(r >= 0 for r in run.rtts_ms)


@pytest.mark.emulated
def test_live_ping_to_nobody_fails_with_loss(pair: NetnsPair) -> None:
    assert pair.a
    run = run_ping(pair.a.host, PingSpec("192.168.99.77", count=3, deadline_s=2, flood=False, interval_s=0.2))
    assert ping_problems(run) == [] and run.stats is not None and run.stats.loss_pct == 100, run.error

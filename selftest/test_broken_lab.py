"""A deliberately broken lab fails the right datapath tests with the right messages, and only those.

Two breakages, each injected into a private copy of the emulated lab right after bring-up
(by the fault plugin of ``test_faults.py``, in a subprocess pytest session):

* **a missing OVS flow**: ``ovs-ofctl del-flows br30-ovs`` removes the NORMAL flow, so the
  bridge drops everything. Every check that needs frames across br30-ovs must fail, and say
  where: ping with 100% loss, the counters with "br30-ovs: ens2f0_0 rx Δ N != ens2f0 tx Δ 0
  (N lost)", the crafted broadcast "not seen" (and the end-of-round frame missing, so no absence
  is trusted), iperf3 with its own connect error.
* **a guest with a wrong IP**: guest b answers on 192.168.30.160 while the lab (and guest a)
  expect .159. Layer 3 towards b fails (ping a -> b, iperf3), layer 2 still works (the crafted
  broadcast, IGMP and VLAN frames arrive), and ping b -> a still passes: only the right tests fail.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_faults import cleanup, make_lab, run_session

from vdpalab.testing.machine import Machine

pytestmark = [pytest.mark.selftest, pytest.mark.emulated, pytest.mark.slow]

TESTS = [
    "tests_datapath/test_ping.py",
    "tests_datapath/test_counters.py",
    "tests_datapath/test_frames.py",
    "tests_datapath/test_iperf3.py",
]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (builds an emulated lab)")


@pytest.mark.timeout(300)
def test_missing_flow_fails_everything_across_the_bridge_and_says_where(tmp_path: Path) -> None:
    _need_root()
    lab, name = make_lab(tmp_path, "d")
    machine = Machine.of_names(name)
    tests = [TESTS[0], TESTS[1], f"{TESTS[2]}::test_crafted_frame[{name}-broadcast]", TESTS[3]]
    try:
        session = run_session(lab, tests, tmp_path, {"kind": "del-flows", "bridge": "br30-ovs", "before": ""})
        leftovers = machine.leftovers(session.fault.get("inodes", []))
    finally:
        removed = cleanup(lab, name)
    info = session.explain()
    assert session.fault.get("injected"), info
    cases = session.cases

    def case(pattern: str):  # type: ignore[no-untyped-def]
        found = [c for n, c in cases.items() if pattern in n]
        assert len(found) == 1, f"{pattern}: {[n for n in cases]}\n{info}"
        return found[0]

    for direction in ("a_to_b", "b_to_a"):
        ping = case(f"test_flood_ping[{name}-56B-{direction}]")
        assert ping.outcome == "failed" and "threshold verdicts failed" in ping.message, info
        assert "loss_pct: expected <= 0 %" in ping.message and "seen 100 %" in ping.message, info
    sym = case(f"test_counter_symmetry[{name}-ping]")
    assert sym.outcome == "failed", info
    assert "br30-ovs: ens2f0_0 rx Δ" in sym.message and "!= ens2f0 tx Δ 0" in sym.message and "lost)" in sym.message
    # how many requests ping got out depends on ARP (cached or not): the bound names the count it sent
    assert re.search(r"br30-ovs: ens2f0 tx Δ 0 < (\d+) echo requests c77g153 sent \(\1 missing\)", sym.message), info
    udp_sym = case(f"test_counter_symmetry[{name}-udp]")
    assert udp_sym.outcome == "failed" and "the UDP stream that drives the counters failed" in udp_sym.message, info
    broadcast = case(f"test_crafted_frame[{name}-broadcast]")
    assert broadcast.outcome == "failed", info
    assert "broadcast: expected at c77g159" in broadcast.message and "not seen" in broadcast.message, info
    assert "the end-of-round frame never reached c77g159" in broadcast.message, info
    tcp = case(f"test_tcp_throughput[{name}-forward-P1]")
    assert tcp.outcome == "failed" and "failed: unable to connect to server" in tcp.message, info
    assert session.rc == 1, info
    assert leftovers == [], f"teardown left: {leftovers}; the test removed {removed}\n{info}"


@pytest.mark.timeout(300)
def test_wrong_guest_ip_fails_layer3_towards_it_only(tmp_path: Path) -> None:
    _need_root()
    lab, name = make_lab(tmp_path, "w")
    machine = Machine.of_names(name)
    fault = {"kind": "wrong-ip", "guest": "c77g159", "ip": "192.168.30.160/24", "before": ""}
    try:
        session = run_session(lab, TESTS, tmp_path, fault)
        leftovers = machine.leftovers(session.fault.get("inodes", []))
    finally:
        removed = cleanup(lab, name)
    info = session.explain()
    assert session.fault.get("injected"), info
    outcome = {n.split("::", 1)[1]: c for n, c in session.cases.items()}
    a_to_b = outcome[f"test_flood_ping[{name}-56B-a_to_b]"]
    assert a_to_b.outcome == "failed", info
    assert "direction=c77g153->c77g159" in a_to_b.message and "seen 100 %" in a_to_b.message, info
    assert outcome[f"test_flood_ping[{name}-56B-b_to_a]"].outcome == "passed", info
    for frame in ("broadcast", "igmp", "vlan", "oversize"):
        assert outcome[f"test_crafted_frame[{name}-{frame}]"].outcome == "passed", info
    tcp = outcome[f"test_tcp_throughput[{name}-forward-P1]"]
    assert tcp.outcome == "failed" and "unable to connect to server" in tcp.message, info
    sym = outcome[f"test_counter_symmetry[{name}-ping]"]
    assert sym.outcome == "failed", info
    # only ARP requests left guest a: every counter on the path is short of the echo requests ping counted
    assert re.search(r"br30-ovs: ens2f0_0 rx Δ \d+ < \d+ echo requests c77g153 sent", sym.message), info
    assert re.search(r"br31-ovs: ens2f1_0 tx Δ \d+ < \d+ echo requests c77g153 sent", sym.message), info
    assert session.rc == 1, info
    assert leftovers == [], f"teardown left: {leftovers}; the test removed {removed}\n{info}"

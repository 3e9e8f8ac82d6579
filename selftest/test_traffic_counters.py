"""vdpalab.traffic.counters: the seed's counter-symmetry judgement and the settled snapshot.

The seed's own dump-ports (br30-ovs and br31-ovs after the flood ping) are the
"after" snapshots; "before" snapshots are made from them by rewriting counters, so
every verdict and every message is checked against real OVS output.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from vdpalab.config import load_lab
from vdpalab.parsers.ovs import parse_dump_ports
from vdpalab.testing.scripted import ScriptedHost, ScriptStep
from vdpalab.traffic.counters import (
    BridgePair,
    CounterError,
    Expectation,
    Snapshot,
    bridge_pairs,
    format_deltas,
    judge_symmetry,
    path_expectations,
    snapshot,
    watched_ports,
)

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).parent.parent
SEED = Path(__file__).parent / "data" / "seed"
BR30 = (SEED / "ovs-ofctl-of14-dump-ports-br30-ovs.txt").read_text()
BR31 = (SEED / "ovs-ofctl-of14-dump-ports-br31-ovs.txt").read_text()
PAIRS = [BridgePair("br30-ovs", "ens2f0", "ens2f0_0"), BridgePair("br31-ovs", "ens2f1", "ens2f1_0")]


def _set(text: str, port: str, side: str, **values: int | str) -> str:
    """Rewrite counters on one port's rx or tx line: _set(t, 'ens2f0', 'rx', pkts=0, drop=1)."""
    out = []
    current = None
    for line in text.splitlines():
        m = re.match(r'^\s*port\s+"?([^":]+?)"?:', line)
        if m:
            current = m.group(1).strip()
        is_side = (side == "rx" and m is not None) or (side == "tx" and line.strip().startswith("tx pkts"))
        if current == port and is_side:
            for key, value in values.items():
                line = re.sub(rf"\b{key}=[^,\s]+", f"{key}={value}", line)
        out.append(line)
    return "\n".join(out) + "\n"


def _zero(text: str) -> str:
    for port in ("ens2f0", "ens2f0_0", "ens2f1", "ens2f1_0", "LOCAL"):
        text = _set(text, port, "rx", pkts=0)
        text = _set(text, port, "tx", pkts=0)
    return text


def snap(br30: str, br31: str, settled: bool = True, kernel_tx: dict[str, int] | None = None) -> Snapshot:
    return Snapshot({"br30-ovs": parse_dump_ports(br30), "br31-ovs": parse_dump_ports(br31)}, time.time(), settled, 2,
                    kernel_tx or {})


def seed_expectations() -> list[Expectation]:
    lab = load_lab(ROOT / "labs" / "cx6dx-qemu.toml")
    a, b = lab.guest
    pairs = bridge_pairs(lab, [a, b])
    assert pairs == PAIRS
    return (path_expectations(pairs, a, b, 85742, "echo requests c77g153 sent")
            + path_expectations(pairs, b, a, 85742, "echo replies c77g153 received"))


def test_seed_after_the_flood_ping_is_symmetric() -> None:
    report = judge_symmetry(PAIRS, snap(_zero(BR30), _zero(BR31)), snap(BR30, BR31), seed_expectations())
    assert report.ok, report.problems
    assert report.delta("br30-ovs", "ens2f0", "rx_packets") == 85847
    # the seed's DPDK ports print drop/errs as numbers: all judged, nothing "not reported"
    assert report.not_reported == []
    table = format_deltas(report)
    assert "br30-ovs     ens2f0_0         85847     85847" in table


def test_a_lost_frame_is_named_with_both_numbers() -> None:
    after = _set(BR30, "ens2f0_0", "tx", pkts=85840)
    report = judge_symmetry(PAIRS, snap(_zero(BR30), _zero(BR31)), snap(after, BR31))
    assert report.problems == ["br30-ovs: ens2f0 rx Δ 85847 != ens2f0_0 tx Δ 85840 (7 lost)"]


def test_drops_errors_and_unreported_counters() -> None:
    after = _set(BR31, "ens2f1", "tx", drop=3)
    after = _set(after, "ens2f1_0", "rx", errs="?")
    before = _set(_zero(BR31), "ens2f1_0", "rx", errs="?")
    report = judge_symmetry(PAIRS, snap(_zero(BR30), before), snap(BR30, after))
    assert report.problems == ["br31-ovs: ens2f1 tx drop Δ 3 (expected 0)"]
    assert report.not_reported == ["br31-ovs: ens2f1_0 rx errs"]
    assert any("not reported by this datapath" in n and "ens2f1_0 rx errs" in n for n in report.notes)


def test_unreported_packet_counters_cannot_be_compared() -> None:
    after = _set(BR30, "ens2f0", "rx", pkts="?")
    report = judge_symmetry(PAIRS, snap(_zero(BR30), _zero(BR31)), snap(after, BR31))
    assert report.problems == [
        "br30-ovs: ens2f0 rx packets not reported ('?'): cannot compare ens2f0 rx with ens2f0_0 tx"
    ]


def test_frames_from_the_local_port_are_accounted_not_ignored() -> None:
    before = _zero(BR30)
    after = _set(BR30, "LOCAL", "rx", pkts=2)
    after = _set(after, "ens2f0_0", "tx", pkts=85849)  # 2 frames the bridge itself flooded
    report = judge_symmetry(PAIRS[:1], snap(before, _zero(BR31)), snap(after, BR31))
    assert report.ok, report.problems
    assert report.notes == ["br30-ovs: ens2f0_0 tx Δ 85849 = ens2f0 rx Δ 85847 + 2, explained by LOCAL rx Δ 2 "
                            "(frames the bridge sent itself)"]
    after = _set(after, "ens2f0_0", "tx", pkts=85850)  # one more than LOCAL explains
    report = judge_symmetry(PAIRS[:1], snap(before, _zero(BR31)), snap(after, BR31))
    assert report.problems == [
        "br30-ovs: ens2f0 rx Δ 85847 != ens2f0_0 tx Δ 85850 (3 more sent than received; "
        "LOCAL rx Δ 2 (frames the bridge sent itself) explain at most 2)"
    ]


def test_frames_the_host_kernel_sent_from_a_port_are_accounted() -> None:
    """Seen live on the emulated lab: each host-side veth sends its own IPv6 router solicitations."""
    after = _set(BR31, "ens2f1", "tx", pkts=85848)  # the kernel's RS from ens2f1 went out to the DAC cable
    before_k, after_k = {"ens2f1": 9, "ens2f1_0": 9}, {"ens2f1": 10, "ens2f1_0": 9}
    report = judge_symmetry(PAIRS, snap(_zero(BR30), _zero(BR31), kernel_tx=before_k),
                            snap(BR30, after, kernel_tx=after_k))
    assert report.ok, report.problems
    assert report.notes == [
        "br31-ovs: ens2f1 tx Δ 85848 = ens2f1_0 rx Δ 85847 + 1, explained by 1 ICMPv6 message(s) the host's "
        "kernel sent from ens2f1 (Icmp6OutMsgs, e.g. router solicitations)"
    ]
    report = judge_symmetry(PAIRS, snap(_zero(BR30), _zero(BR31)), snap(BR30, after))
    assert report.problems == ["br31-ovs: ens2f1_0 rx Δ 85847 != ens2f1 tx Δ 85848 (1 more sent than received)"]


def test_too_little_traffic_fails_the_lower_bound() -> None:
    before = _set(_zero(BR31), "ens2f1_0", "tx", pkts=100)
    report = judge_symmetry(PAIRS, snap(_zero(BR30), _zero(BR31)), snap(BR30, BR31), seed_expectations())
    assert report.ok
    report = judge_symmetry(PAIRS, snap(_zero(BR30), before), snap(BR30, BR31), seed_expectations())
    # 85847 - 100 = 85747 still >= 85742, but now tx Δ != rx Δ on br31
    assert report.problems == ["br31-ovs: ens2f1 rx Δ 85847 != ens2f1_0 tx Δ 85747 (100 lost)"]
    big = [Expectation("br31-ovs", "ens2f1_0", "tx_packets", 90000, "echo requests c77g153 sent")]
    report = judge_symmetry(PAIRS, snap(_zero(BR30), _zero(BR31)), snap(BR30, BR31), big)
    assert report.problems == ["br31-ovs: ens2f1_0 tx Δ 85847 < 90000 echo requests c77g153 sent (4153 missing)"]


def test_path_expectations_follow_the_topology() -> None:
    lab = load_lab(ROOT / "lab.toml")
    a, b = lab.guest
    pairs = bridge_pairs(lab, [a, b])
    exp = path_expectations(pairs, a, b, 10, "x")
    assert [(e.bridge, e.port, e.counter) for e in exp] == [
        ("br30-ovs", "ens2f0_0", "rx_packets"), ("br30-ovs", "ens2f0", "tx_packets"),
        ("br31-ovs", "ens2f1", "rx_packets"), ("br31-ovs", "ens2f1_0", "tx_packets"),
    ]
    assert watched_ports(pairs) == {"br30-ovs": ["ens2f0", "ens2f0_0", "LOCAL"],
                                    "br31-ovs": ["ens2f1", "ens2f1_0", "LOCAL"]}


def test_unsettled_snapshots_are_said_so() -> None:
    report = judge_symmetry(PAIRS, snap(_zero(BR30), _zero(BR31)), snap(BR30, BR31, settled=False))
    assert any("still moving" in n for n in report.notes)


def _dump(bridge: str) -> re.Pattern[str]:
    return re.compile(re.escape(f"ovs-ofctl --names -O OpenFlow14 dump-ports {bridge}"))


def test_snapshot_waits_until_the_counters_settle() -> None:
    moving = _set(BR30, "ens2f0", "rx", pkts=85000)
    host = ScriptedHost("c83g155", [
        ScriptStep(_dump("br30-ovs"), stdout=moving), ScriptStep(_dump("br31-ovs"), stdout=BR31),
        ScriptStep(_dump("br30-ovs"), stdout=BR30), ScriptStep(_dump("br31-ovs"), stdout=BR31),
        ScriptStep(_dump("br30-ovs"), stdout=BR30), ScriptStep(_dump("br31-ovs"), stdout=BR31),
    ])
    result = snapshot(host, watched_ports(PAIRS), settle_s=0.0, kernel_tx=False)
    host.assert_done()
    assert result.settled and result.reads == 3
    assert result.stats("br30-ovs", "ens2f0").rx_packets == 85847


def test_snapshot_gives_up_and_says_so() -> None:
    steps = []
    for i in range(3):
        steps += [ScriptStep(_dump("br30-ovs"), stdout=_set(BR30, "ens2f0", "rx", pkts=80000 + i)),
                  ScriptStep(_dump("br31-ovs"), stdout=BR31)]
    result = snapshot(ScriptedHost("c83g155", steps), watched_ports(PAIRS), settle_s=0.0, max_reads=3,
                      kernel_tx=False)
    assert not result.settled and result.reads == 3


def test_snapshot_reads_the_kernels_own_output_and_waits_for_it_too() -> None:
    kernel = re.compile(r"for p in ens2f0 ens2f0_0 ens2f1 ens2f1_0; do .*Icmp6OutMsgs.*")
    steps = []
    for count in (9, 10, 10):
        steps += [ScriptStep(_dump("br30-ovs"), stdout=BR30), ScriptStep(_dump("br31-ovs"), stdout=BR31),
                  ScriptStep(kernel, stdout=f"ens2f0 {count}\nens2f1 4\n")]
    host = ScriptedHost("c83g155", steps)
    result = snapshot(host, watched_ports(PAIRS), settle_s=0.0)
    host.assert_done()
    assert result.settled and result.kernel_tx == {"ens2f0": 10, "ens2f1": 4}


def test_dump_ports_failure_names_the_bridge() -> None:
    host = ScriptedHost("c83g155", [ScriptStep(_dump("br30-ovs"), rc=1,
                                               stderr="ovs-ofctl: br30-ovs is not a bridge or a socket")])
    with pytest.raises(CounterError, match=r"dump-ports br30-ovs failed .*is not a bridge"):
        snapshot(host, {"br30-ovs": ["ens2f0"]})

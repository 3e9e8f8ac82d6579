"""A realistic sample run (the seed's lab: ConnectX-6 Dx, vhost_vdpa, OVS-DPDK offload), for self-tests only.

Used by the report self-tests and the report benchmark; never for a README picture (those come
from real runs, scripts/screenshots.sh). Test ids, metric names, units, parameters and directions
are the ones the suite records today (tests_datapath/, benchmarks/test_ndr.py); the thresholds are
labs/cx6dx-qemu.toml's, judged by the one judge. Values follow the seed (flood ping
0.093/0.111/7.100/0.055 ms, 85742 packets, dump-ports 85847); one counter check fails on purpose
so that the failure section has something to show.
"""

from __future__ import annotations

import random

from vdpalab.config import Thresholds
from vdpalab.results import (
    CommandRecord,
    Measurement,
    Result,
    RunFingerprint,
    RunRecord,
    TestOutcome,
    Tolerance,
    judge_baseline,
    judge_thresholds,
    thresholds_from_config,
)

LAB = "cx6dx-qemu"
T0 = 1779844500.0  # 2026-05-27T01:15:00Z

SEED_FINGERPRINT = RunFingerprint(LAB, {
    "kernel": "5.11.11-1.el8.elrepo.x86_64",
    "nic_driver": "mlx5_core 5.2-2.2.0",
    "nic_firmware": "22.29.2002 (MT_0000000436)",
    "ofed": "MLNX_OFED_LINUX-5.2-2.2.0.0",
    "ovs": "2.14.1",
    "dpdk": "21.02.0",
    "qemu": "6.0.0-rc1",
    "libvirt": "7.4.0",
}, host="c83g155")

_BRINGUP = [
    ("test_hugepages", "grep -i huge /proc/meminfo"),
    ("test_iommu_cmdline", "cat /proc/cmdline"),
    ("test_sriov_vfs", "echo 1 > /sys/class/net/ens2f0/device/sriov_numvfs"),
    ("test_switchdev", "devlink dev eswitch set pci/0000:07:00.0 mode switchdev"),
    ("test_vhost_vdpa", "modprobe vhost_vdpa"),
    ("test_ovs_dpdk_offload", "ovs-vsctl --format=json --data=json --columns=other_config list Open_vSwitch"),
    ("test_guests_up", "virsh start c77g153"),
]

_DUMP_PORTS = """OFPST_PORT reply (OF1.4): 3 ports
  port  ens2f1: rx pkts=85847, bytes=8413006, drop=0, errs=0, frame=0, over=0, crc=0
           tx pkts=85840, bytes=8412320, drop=0, errs=0, coll=0
           duration=1532.412s
  port  ens2f1_0: rx pkts=85840, bytes=8412320, drop=0, errs=0, frame=0, over=0, crc=0
           tx pkts=85847, bytes=8413006, drop=7, errs=0, coll=0
           duration=1532.401s
  port LOCAL: rx pkts=0, bytes=0, drop=0, errs=0, frame=0, over=0, crc=0
           tx pkts=0, bytes=0, drop=0, errs=0, coll=0
           duration=1532.412s"""

_DMESG = """[ 1521.081342] mlx5_core 0000:07:01.2: mlx5_vdpa_set_status:1786:(pid 5369): performing device reset
[ 1521.173024] mlx5_core 0000:07:01.2: mlx5_vdpa_handle_set_map:473:(pid 5369): memory map update
[ 1530.552011] mlx5_core 0000:07:00.1 ens2f1: Link up
[ 1531.004518] mlx5_core 0000:07:00.1: E-Switch: cleanup of offloaded flow failed (-2)"""

_OVS_LOG = """2026-05-27T01:39:58.111Z|00241|dpif_netdev(pmd-c02/id:9)|WARN|internal error parsing flow key \
skb_priority(0),skb_mark(0),ct_state(0),ct_zone(0),ct_mark(0),ct_label(0),recirc_id(0),dp_hash(0),\
in_port(2),packet_type(ns=0,id=0),eth(src=00:11:22:33:44:10,dst=01:00:5e:00:00:16),eth_type(0x0800),\
ipv4(src=192.168.30.159,dst=224.0.0.22,proto=2,tos=0xc0,ttl=1,frag=no)
2026-05-27T01:40:00.873Z|00244|netdev_offload_dpdk|WARN|ens2f1_0: rte_flow creation failed: 22 (Invalid argument)"""


def _rtts(rng: random.Random, n: int, avg: float, lo: float, hi: float) -> list[float]:
    import math

    mu = math.log(avg - lo) - 0.5 * 0.55**2
    out = [min(lo + rng.lognormvariate(mu, 0.55), hi) for _ in range(n)]
    out[n // 3] = hi  # the seed's 7.1 ms outlier
    return out


def sample_run(run_id: str = "20260527-011500-cx6dx-qemu-5e1f0a", *, seed: int = 5) -> RunRecord:
    """The sample RunRecord: 7 bring-up checks, flood pings, iperf3, counter symmetry (one failure), vDPA
    evidence, NDR/PDR searches, one skip, one error."""
    rng = random.Random(seed)
    run = RunRecord(run_id=run_id, started=T0, ended=T0 + 1894.0, status="complete",
                    suite_revision="4c1d9e2a7b", pytest_args=("--lab", "labs/cx6dx-qemu.toml", "-m",
                                                              "bringup or datapath or benchmark", "-n", "2"),
                    fingerprints={LAB: SEED_FINGERPRINT})
    t = T0 + 5
    for name, cmd in _BRINGUP:
        tid = f"tests_bringup/test_layers.py::{name}[{LAB}]"
        dur = rng.uniform(0.4, 9.0)
        run.outcomes.append(TestOutcome(tid, "passed", dur, lab=LAB, started=t))
        run.commands.append(CommandRecord("c83g155", cmd, 0, t + 0.1, rng.uniform(0.01, 0.3), LAB))
        t += dur + 1
    # labs/cx6dx-qemu.toml [thresholds], through the same table the suite's judging stage uses
    thresholds = thresholds_from_config(
        Thresholds(ping_loss_pct_max=0, ping_rtt_avg_ms_max=0.5, ping_rtt_max_ms_max=10, tcp_throughput_gbps_min=5,
                   udp_loss_pct_max=0.1), source=f"{LAB} [thresholds]")
    names = {"a_to_b": "c77g153->c77g159", "b_to_a": "c77g159->c77g153"}
    for size, avg in ((56, 0.111), (1400, 0.137)):
        for way, direction in names.items():
            tid = f"tests_datapath/test_ping.py::test_flood_ping[{LAB}-{size}B-{way}]"
            started = t
            rtts = _rtts(rng, 2000, avg, 0.093, 7.1)
            params = {"direction": direction, "mode": "flood", "size": size}
            m = Measurement("rtt_ms", "ms", tuple(rtts), params, started, started + 20.0)
            results = [
                Measurement("loss_pct", "%", (0.0,), params, started, started + 20.0).to_result(
                    tid, LAB, better="lower"),
                Measurement("transmitted", "packets", (85742.0,), params, started, started + 20.0).to_result(
                    tid, LAB, better="higher"),
                m.to_result(tid, LAB, stat="mean", name="rtt_avg_ms", better="lower"),
                m.to_result(tid, LAB, stat="max", name="rtt_max_ms", better="lower"),
            ]
            run.results.extend(results)
            run.verdicts.extend(judge_thresholds(results, thresholds))
            run.outcomes.append(TestOutcome(tid, "passed", 21.3, lab=LAB, started=started))
            src = "c77g153" if way == "a_to_b" else "c77g159"
            dst = "192.168.30.159" if way == "a_to_b" else "192.168.30.153"
            run.commands.append(CommandRecord(src, f"ping -f -s {size} -c 85742 -w 20 {dst}", 0, started, 20.02, LAB))
            t += 22
    base_tp = {1: 21.7, 2: 23.4}
    for streams in (1, 2):
        for way in ("forward", "reverse"):
            tid = f"tests_datapath/test_iperf3.py::test_tcp_throughput[{LAB}-{way}-P{streams}]"
            level = base_tp[streams] * (0.97 if way == "reverse" else 1.0)
            samples = [level * (1 + rng.gauss(0, 0.02)) * 1e9 for _ in range(10)]
            params = {"direction": names["a_to_b" if way == "forward" else "b_to_a"], "protocol": "tcp",
                      "streams": streams}
            m = Measurement("throughput", "bit/s", tuple(samples), params, t, t + 10.0)
            r = m.to_result(tid, LAB, name="throughput_gbps", scale=1e-9, unit="Gbit/s", better="higher")
            retr = Result("retransmits", float(rng.randint(0, 40)), "segments", params=params, test_id=tid, lab=LAB,
                          better="lower", started=t, ended=t + 10.0)
            run.results.extend([r, retr])
            run.verdicts.extend(judge_thresholds([r, retr], thresholds))
            baseline = None if (streams, way) == (2, "reverse") else r.value * (1.01 if streams == 1 else 0.99)
            run.verdicts.append(judge_baseline(r, baseline, Tolerance("throughput_gbps", 0.05)))
            run.outcomes.append(TestOutcome(tid, "passed", 12.6, lab=LAB, started=t))
            run.commands.append(CommandRecord(
                "c77g153", f"iperf3 -J -c 192.168.30.159 -t 10 -P {streams}{' -R' if way == 'reverse' else ''}", 0, t,
                10.4, LAB))
            t += 13
    for way in ("forward", "reverse"):
        tid = f"tests_datapath/test_iperf3.py::test_udp_loss[{LAB}-{way}]"
        params = {"direction": names["a_to_b" if way == "forward" else "b_to_a"], "length": 1400, "protocol": "udp",
                  "rate": "200M"}
        results = [
            Result("loss_pct", rng.uniform(0, 0.05), "%", params=params, test_id=tid, lab=LAB, better="lower",
                   started=t, ended=t + 10),
            Result("throughput_gbps", 0.2 * (1 - rng.uniform(0, 0.0005)), "Gbit/s", params=params, test_id=tid,
                   lab=LAB, better="higher", started=t, ended=t + 10),
            Result("jitter_ms", rng.uniform(0.002, 0.01), "ms", params=params, test_id=tid, lab=LAB, better="lower",
                   started=t, ended=t + 10),
        ]
        run.results.extend(results)
        run.verdicts.extend(judge_thresholds(results, thresholds))
        run.outcomes.append(TestOutcome(tid, "passed", 11.2, lab=LAB, started=t))
        t += 12
    for traffic, ok in (("ping", True), ("udp", False)):
        tid = f"tests_datapath/test_counters.py::test_counter_symmetry[{LAB}-{traffic}]"
        for bridge in ("br30-ovs", "br31-ovs"):
            gap = 7.0 if (not ok and bridge == "br31-ovs") else 0.0
            params = {"attempts": 1, "bridge": bridge, "traffic": traffic}
            run.results.extend(
                Result(name, value, "packets", params=params, test_id=tid, lab=LAB, better="lower", started=t,
                       ended=t + 1)
                for name, value in (("uplink_rx_minus_rep_tx", gap), ("rep_rx_minus_uplink_tx", 0.0)))
            run.commands.append(CommandRecord("c83g155", f"ovs-ofctl -O OpenFlow14 dump-ports {bridge}", 0, t, 0.04,
                                              LAB))
        if ok:
            run.outcomes.append(TestOutcome(tid, "passed", 0.3, lab=LAB, started=t))
        else:
            run.outcomes.append(TestOutcome(
                tid, "failed", 0.4, lab=LAB, started=t,
                message="AssertionError: br31-ovs: uplink ens2f1 rx pkts=85847 but representor ens2f1_0 tx "
                        "pkts=85840 with drop=7\n"
                        "expected: uplink rx == representor tx and representor rx == uplink tx, drop=0, errs=0\n"
                        "seen: 7 packets dropped on ens2f1_0 (tx drop=7)",
                diagnostics={"host: dump-ports br31-ovs": _DUMP_PORTS,
                             "host: kernel log since the test's marker": _DMESG,
                             "host: ovs-vswitchd.log (tail)": _OVS_LOG}))
        t += 1
    tid = f"tests_datapath/test_vdpa_evidence.py::test_vdpa_evidence[{LAB}]"
    for guest, dev in (("c77g153", "vdpa0"), ("c77g159", "vdpa1")):
        params = {"guest": guest, "device": dev}
        run.results.append(Result("vq_completed_desc_delta", float(rng.randint(85000, 86000)), "descriptors",
                                  params={**params, "qidx": 0}, test_id=tid, lab=LAB, better="higher",
                                  started=t, ended=t + 3))
    run.results.append(Result("vdpa_evidence_ok", 1.0, "bool", params={"evidence": "vstats"}, test_id=tid,
                              lab=LAB, better="higher", started=t, ended=t + 3))
    run.outcomes.append(TestOutcome(tid, "passed", 3.1, lab=LAB, started=t))
    t += 4
    for size, ndr in ((64, 9.62e6), (1518, 1.61e6)):
        tid = f"benchmarks/test_ndr.py::test_ndr_pdr[{LAB}-{size}B-forward]"
        params = {"frame_size": size, "direction": names["a_to_b"]}
        for goal, value in (("ndr", ndr), ("pdr", ndr * 1.04)):
            run.results.append(Result(f"{goal}_pps", value, "pps", params=params, test_id=tid, lab=LAB,
                                      better="higher", started=t, ended=t + 110))
        run.outcomes.append(TestOutcome(tid, "passed", 112.0, lab=LAB, started=t))
        t += 113
    run.outcomes.append(TestOutcome(
        f"tests_datapath/test_ping.py::test_flood_ping[{LAB}-8972B-a_to_b]", "skipped", 0.0, lab=LAB,
        message="a ping of 8972 bytes (unfragmented) needs MTU >= 9000 on both guests: lab cx6dx-qemu's [[guest]] "
                "c77g153 mtu = 1500, c77g159 mtu = 1500", started=t))
    run.outcomes.append(TestOutcome(
        f"tests_datapath/test_frames.py::test_crafted_frame[{LAB}-vlan]", "error", 30.0, lab=LAB, started=t,
        message="HostUnreachable: c77g159: unreachable while running 'python3 - < craft.py': "
                "timed out after 30 s (ssh 192.168.122.159)",
        diagnostics={"c77g159: command history": "virsh domstate c77g159: running",
                     "host: links, addresses, neighbours": "192.168.122.159 dev virbr0 FAILED"}))
    run.commands.append(CommandRecord("c77g159", "python3 - < craft.py", None, t, 30.0, LAB))
    run.commands.sort(key=lambda c: c.started)
    return run

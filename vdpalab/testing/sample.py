"""A realistic sample run (the seed's lab: ConnectX-6 Dx, vhost_vdpa, OVS-DPDK offload).

Used by the self-tests, the report benchmark and ``docs/report-screenshot.png``. Values
follow the seed (flood ping 0.093/0.111/7.100/0.055 ms, 85742 packets, dump-ports 85847);
one counter check fails on purpose so that the failure section has something to show.
"""

from __future__ import annotations

import random

from vdpalab.results import (
    CommandRecord,
    Measurement,
    RunFingerprint,
    RunRecord,
    TestOutcome,
    Threshold,
    Tolerance,
    judge_baseline,
    judge_thresholds,
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
    ("test_ovs_dpdk_offload", "ovs-vsctl get Open_vSwitch . other_config"),
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
    """The sample RunRecord: 7 bring-up checks, flood pings, iperf3, counters (one failure), one skip, one error."""
    rng = random.Random(seed)
    run = RunRecord(run_id=run_id, started=T0, ended=T0 + 1894.0, status="complete",
                    suite_revision="4c1d9e2a7b", pytest_args=("--lab", "labs/cx6dx-qemu.toml", "-m",
                                                              "bringup or datapath", "-n", "2"),
                    fingerprints={LAB: SEED_FINGERPRINT})
    t = T0 + 5
    for name, cmd in _BRINGUP:
        tid = f"tests_bringup/test_layers.py::{name}[{LAB}]"
        dur = rng.uniform(0.4, 9.0)
        run.outcomes.append(TestOutcome(tid, "passed", dur, lab=LAB, started=t))
        run.commands.append(CommandRecord("c83g155", cmd, 0, t + 0.1, rng.uniform(0.01, 0.3), LAB))
        t += dur + 1
    thresholds = [
        Threshold("ping_loss_pct", "<=", 0.0, "%", "lab.toml thresholds.ping_loss_pct_max"),
        Threshold("ping_rtt_avg_ms", "<=", 2.0, "ms", "lab.toml thresholds.ping_rtt_avg_ms_max"),
        Threshold("ping_rtt_max_ms", "<=", 100.0, "ms", "lab.toml thresholds.ping_rtt_max_ms_max"),
        Threshold("tcp_throughput_gbps", ">=", 0.1, "Gbit/s", "lab.toml thresholds.tcp_throughput_gbps_min"),
        Threshold("udp_loss_pct", "<=", 2.0, "%", "lab.toml thresholds.udp_loss_pct_max"),
    ]
    for size, avg in ((56, 0.111), (1400, 0.137)):
        tid = f"tests_datapath/test_ping.py::test_flood[{LAB}-{size}]"
        started = t
        rtts = _rtts(rng, 2000, avg, 0.093, 7.1)
        m = Measurement("ping_rtt_ms", "ms", tuple(rtts), {"size": size, "flood": True, "direction": "153->159"},
                        started, started + 20.0)
        results = [
            m.to_result(tid, LAB, stat="mean", name="ping_rtt_avg_ms", better="lower"),
            m.to_result(tid, LAB, stat="max", name="ping_rtt_max_ms", better="lower"),
            m.to_result(tid, LAB, stat="p99", name="ping_rtt_p99_ms", better="lower"),
            Measurement("ping_loss_pct", "%", (0.0,), m.params, started, started + 20.0).to_result(
                tid, LAB, better="lower"),
        ]
        run.results.extend(results)
        run.verdicts.extend(judge_thresholds(results, thresholds))
        run.outcomes.append(TestOutcome(tid, "passed", 21.3, lab=LAB, started=started))
        run.commands.append(CommandRecord("c77g153", f"ping -f -s {size} -w 20 192.168.30.159", 0, started, 20.02,
                                          LAB))
        t += 22
    base_tp = {1: 21.7, 2: 23.4, 4: 23.6}
    for streams in (1, 2, 4):
        for reverse in (False, True):
            tid = f"tests_datapath/test_iperf3.py::test_tcp_throughput[{LAB}-{streams}-{'rev' if reverse else 'fwd'}]"
            level = base_tp[streams] * (0.97 if reverse else 1.0)
            samples = [level * (1 + rng.gauss(0, 0.02)) * 1e9 for _ in range(10)]
            m = Measurement("tcp_throughput", "bit/s", tuple(samples),
                            {"streams": streams, "reverse": reverse, "duration_s": 10}, t, t + 10.0)
            r = m.to_result(tid, LAB, name="tcp_throughput_gbps", scale=1e-9, unit="Gbit/s", better="higher")
            run.results.append(r)
            run.verdicts.extend(judge_thresholds([r], thresholds))
            baseline = None if streams == 4 else r.value * (1.01 if streams == 1 else 0.99)
            run.verdicts.append(judge_baseline(r, baseline, Tolerance("tcp_throughput_gbps", 0.05)))
            run.outcomes.append(TestOutcome(tid, "passed", 12.6, lab=LAB, started=t))
            run.commands.append(CommandRecord(
                "c77g153", f"iperf3 -J -c 192.168.30.159 -t 10 -P {streams}{' -R' if reverse else ''}", 0, t,
                10.4, LAB))
            t += 13
    tid = f"tests_datapath/test_iperf3.py::test_udp_loss[{LAB}]"
    loss = Measurement("udp_loss_pct", "%", tuple(rng.uniform(0, 0.05) for _ in range(10)),
                       {"rate": "200M", "size": 1400}, t, t + 10).to_result(tid, LAB, better="lower")
    run.results.append(loss)
    run.verdicts.extend(judge_thresholds([loss], thresholds))
    run.outcomes.append(TestOutcome(tid, "passed", 11.2, lab=LAB, started=t))
    t += 12
    for bridge, ok in (("br30-ovs", True), ("br31-ovs", False)):
        tid = f"tests_datapath/test_counters.py::test_dump_ports_symmetry[{LAB}-{bridge}]"
        cmd = f"ovs-ofctl -O OpenFlow14 dump-ports {bridge}"
        run.commands.append(CommandRecord("c83g155", cmd, 0, t, 0.04, LAB))
        if ok:
            run.outcomes.append(TestOutcome(tid, "passed", 0.3, lab=LAB, started=t))
        else:
            run.outcomes.append(TestOutcome(
                tid, "failed", 0.4, lab=LAB, started=t,
                message="AssertionError: br31-ovs: uplink ens2f1 rx pkts=85847 but representor ens2f1_0 tx "
                        "pkts=85847 with drop=7; representor rx pkts=85840 != uplink tx pkts=85840+7\n"
                        "expected: uplink rx == representor tx and representor rx == uplink tx, drop=0, errs=0\n"
                        "seen: 7 packets dropped on ens2f1_0 (tx drop=7)",
                diagnostics={"ovs-ofctl -O OpenFlow14 dump-ports br31-ovs": _DUMP_PORTS,
                             "dmesg (last 4 lines)": _DMESG, "ovs-vswitchd.log (warnings)": _OVS_LOG}))
        t += 1
    run.outcomes.append(TestOutcome(
        f"tests_datapath/test_offload.py::test_memory_map_update_logged[{LAB}]", "skipped", 0.0, lab=LAB,
        message="kernel 5.11.11 prints mlx5_vdpa_handle_set_map; checked via vdpa dev show instead "
                "(newer kernels no longer log it)", started=t))
    run.outcomes.append(TestOutcome(
        f"tests_datapath/test_frames.py::test_vlan_tagged_frames[{LAB}]", "error", 30.0, lab=LAB, started=t,
        message="HostUnreachable: c77g159: unreachable while running 'python3 -m scapy ...': "
                "timed out after 30 s (ssh 192.168.122.159)",
        diagnostics={"virsh domstate c77g159": "running", "ip neigh (host)": "192.168.122.159 dev virbr0 FAILED"}))
    run.commands.append(CommandRecord("c77g159", "python3 -m scapy -c sniff.py", None, t, 30.0, LAB))
    run.commands.sort(key=lambda c: c.started)
    return run

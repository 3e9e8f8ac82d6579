"""Parser speed on large inputs: a 100,000-line kernel log and a 500-port ``dump-ports``.

Both must parse in under 1 s on the CI machine (2 cores). This is a benchmark that prints figures
and their target, not a timed test: ``python benchmarks/bench_parsers.py``.
"""

from __future__ import annotations

import time

from vdpalab.parsers.kernel_log import parse_kernel_log
from vdpalab.parsers.ovs import parse_dump_ports

TARGET_S = 1.0


def make_kernel_log(lines: int = 100_000) -> str:
    """dmesg and syslog lines in the seed's shapes, with a vDPA event and an OVS flow-key error now and then."""
    out = []
    for i in range(lines):
        t = 1000 + i * 0.001
        r = i % 10
        if r == 0:
            out.append(f"[{t:12.6f}] mlx5_core 0000:07:00.2: mlx5_vdpa_set_status:1786:(pid {5000 + i % 97}): "
                       "performing device reset")
        elif r == 1:
            out.append(f"[{t:12.6f}] mlx5_core 0000:07:00.2: mlx5_vdpa_handle_set_map:473:(pid 5086): "
                       "memory map update")
        elif r == 2:
            out.append(f"Apr  8 10:{i // 60 % 60:02d}:{i % 60:02d} c83g155 ovs-vswitchd[4998]: ovs|{i % 100000:05d}|"
                       "dpif_netdev(revalidator17)|ERR|internal error parsing flow key skb_priority(0),in_port(6)")
        elif r == 3:
            out.append(f"Apr  8 10:{i // 60 % 60:02d}:{i % 60:02d} c83g155 kvm[5088]: 1 guest now active")
        else:
            out.append(f"[{t:12.6f}] vdl-h{i % 4}: entered promiscuous mode")
    return "\n".join(out) + "\n"


def make_dump_ports(ports: int = 500) -> str:
    """OF1.4 dump-ports with DPDK-style '?' counters and a CUSTOM Statistics block per port."""
    out = [f"OFPST_PORT reply (OF1.4) (xid=0x2): {ports} ports"]
    for i in range(ports):
        name = "LOCAL" if i == 0 else (f'"rep{i}_0"' if i % 2 else f"pf{i}")
        out.append(f"  port  {name}: rx pkts={i * 7}, bytes={i * 700}, drop=0, errs=0, frame=?, over=?, crc=?")
        out.append(f"           tx pkts={i * 7}, bytes={i * 690}, drop=0, errs=0, coll=?")
        out.append(f"           duration={i}.079s")
        out.append("           rx rfc2819 broadcast_packets=2,")
        out.append("           CUSTOM Statistics")
        out.append("                      ovs_tx_failure_drops=0, ovs_tx_mtu_exceeded_drops=0, ovs_tx_qos_drops=0,")
        out.append("                      rx_q0_errors=0, rx_wqe_errors=0, rx_phy_crc_errors=0,")
    return "\n".join(out) + "\n"


def _best_of(fn, arg: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_parsers() -> list[tuple[str, float, str]]:
    """(name, value, unit) figures: parse times (best of 3) and the sizes they were measured on."""
    log = make_kernel_log()
    ports = make_dump_ports()
    parsed = parse_kernel_log(log)
    assert len(parsed.records) == 100_000 and len(parsed.vdpa_events) == 20_000
    assert len(parse_dump_ports(ports).ports) == 500
    return [
        ("kernel_log_100k_lines_parse", _best_of(parse_kernel_log, log), "s"),
        ("dump_ports_500_ports_parse", _best_of(parse_dump_ports, ports), "s"),
        ("kernel_log_input_size", len(log) / 1e6, "MB"),
        ("dump_ports_input_size", len(ports) / 1e3, "kB"),
    ]


if __name__ == "__main__":
    for name, value, unit in bench_parsers():
        target = f"  (target < {TARGET_S:g} s: {'ok' if value < TARGET_S else 'TOO SLOW'})" if unit == "s" else ""
        print(f"{name:32} {value:10.3f} {unit}{target}")

"""Re-record this folder: ``ovs-vsctl --format=json --data=json list`` as the suite's live OVS reads run it, from the
real OVS of an emulated lab the suite builds (``lab.toml``: netns lab, OVS userspace datapath and veth ports;
``labs/emulated-qemu.toml``: OVS-DPDK with ``type=dpdk`` and ``dpdkvhostuserclient`` ports).

Not a test: run as root from the repository root, under the lab lock (it brings the lab up and down)::

    /work/wt/lab.sh .venv/bin/python selftest/data/recorded/13_ovsdb_json/record.py lab.toml netns
    /work/wt/lab.sh .venv/bin/python selftest/data/recorded/13_ovsdb_json/record.py labs/emulated-qemu.toml qemu

Commands run through the suite's own host (SSH into the lab's host namespace), exactly as the layers run them.
Traffic: three pings between the two guests through the lab's bridges, so that port statistics count something.
The netns run also adds a Manager (``ptcp:16640:127.0.0.1``, nothing connects) for the Manager table and ``show``'s
Manager block, and removes it again.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
sys.path.insert(0, str(ROOT))

from vdpalab.config import load_lab  # noqa: E402
from vdpalab.control import lab_down, lab_up  # noqa: E402
from vdpalab.evidence import port_facts_reads  # noqa: E402
from vdpalab.hosts.base import Host  # noqa: E402
from vdpalab.layers.preflight import DPDK_VERSION_ARGV  # noqa: E402
from vdpalab.parsers.ovs import VSCTL_STATE_ARGV, vsctl_list_argv  # noqa: E402

ALL = "ovs-vsctl --format=json --data=json list Open_vSwitch -- list Bridge -- list Port -- list Interface"
# (command, file); stderr is kept in a "-stderr" file when the command fails
READS: list[tuple[str | list[str], str]] = [
    (VSCTL_STATE_ARGV, "ovs-vsctl-list-state-json.txt"),
    (ALL, "ovs-vsctl-list-all-tables-json.txt"),
    (port_facts_reads("ens2f0_0")[0], "ovs-vsctl-list-interface-ens2f0_0-status-statistics-json.txt"),
    (DPDK_VERSION_ARGV, "ovs-vsctl-list-open_vswitch-dpdk_version-json.txt"),
    (vsctl_list_argv([("Open_vSwitch", ("other_config",))]), "ovs-vsctl-list-open_vswitch-other_config-json.txt"),
    (vsctl_list_argv([("Interface", ("name", "status", "statistics"))], record="nosuch0"),
     "ovs-vsctl-list-interface-nosuch0-stderr.txt"),
    ("ovs-vsctl --format=json --data=json --pretty --columns=name,type,options,ofport list Interface ens2f0",
     "ovs-vsctl-pretty-list-interface-ens2f0-json.txt"),
    ("ovs-vsctl show", "ovs-vsctl-show.txt"),
]
MANAGER = [
    ("ovs-vsctl --format=json --data=json list Manager", "ovs-vsctl-list-manager-json.txt"),
    ("ovs-vsctl show", "ovs-vsctl-show-manager.txt"),
]


def record(host: Host, command: str | list[str], name: str) -> None:
    result = host.run(command, timeout=30)
    out = result.stdout if result.ok else result.stderr
    (HERE / name).write_text(out, encoding="utf-8")
    print(f"{command} -> rc {result.rc}, {len(out)} chars -> {name}")


def main() -> None:
    lab_file, prefix = sys.argv[1], sys.argv[2]
    lab = load_lab(ROOT / lab_file)
    try:
        with lab_up(lab) as handle:
            ping = handle.hosts["c77g153"].run("ping -c 3 -i 0.2 192.168.30.159", timeout=30)
            print("ping rc", ping.rc)
            host = handle.hosts["host"]
            for command, name in READS:
                record(host, command, f"{prefix}-{name}")
            if prefix == "netns":
                host.check("ovs-vsctl set-manager ptcp:16640:127.0.0.1", timeout=20)
                try:
                    for command, name in MANAGER:
                        record(host, command, f"{prefix}-{name}")
                finally:
                    host.run("ovs-vsctl del-manager", timeout=20)
    finally:
        lab_down(lab)


if __name__ == "__main__":
    main()

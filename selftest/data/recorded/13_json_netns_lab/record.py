"""Re-record this folder: the JSON (and text) outputs the suite's live reads use, from the real tools inside the
netns lab the suite builds (``lab.toml``: namespaces vdpalab-emu-*, OVS userspace datapath).

Not a test: run as root from the repository root, under the lab lock (it brings the lab up and down)::

    /work/wt/lab.sh .venv/bin/python selftest/data/recorded/13_json_netns_lab/record.py

Commands run through the suite's own hosts (SSH into the lab's namespaces), exactly as the layers run them.
Traffic: one ping between the two guests, through the lab's OVS bridges, so that neighbours and counters exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
sys.path.insert(0, str(ROOT))

from vdpalab.config import load_lab  # noqa: E402
from vdpalab.control import lab_down, lab_up  # noqa: E402

# (role, command, file); stderr is kept in a "-stderr" file when the command fails (a rejected option)
READS = [
    ("c77g153", "ip -j link show dev eth0", "guest-ip-j-link-show-eth0-json.txt"),
    ("c77g153", "ip link show dev eth0", "guest-ip-link-show-eth0.txt"),
    ("c77g153", "ip -j -4 addr show dev eth0", "guest-ip-j-4-addr-show-eth0-json.txt"),
    ("c77g153", "ip -4 -o addr show dev eth0", "guest-ip-4-o-addr-show-eth0.txt"),
    ("c77g153", "ip -j addr show", "guest-ip-j-addr-show-json.txt"),
    ("c77g153", "ip addr show", "guest-ip-addr-show.txt"),
    ("c77g153", "busybox ip addr show dev eth0", "guest-busybox-ip-addr-show-eth0.txt"),
    ("c77g153", "busybox ip -j link show dev eth0", "guest-busybox-ip-j-rejected.txt"),
    ("c77g153", "ip -j -s link show dev eth0", "guest-ip-j-s-link-show-eth0-json.txt"),
    ("c77g153", "ip -s link show dev eth0", "guest-ip-s-link-show-eth0.txt"),
    ("c77g153", "ip -j -d link show dev eth0", "guest-ip-j-d-link-show-eth0-json.txt"),
    ("c77g153", "ip -j neigh show", "guest-ip-j-neigh-show-json.txt"),
    ("c77g153", "ip neigh show", "guest-ip-neigh-show.txt"),
    ("c77g153", "ethtool --json -k eth0", "guest-ethtool-json-k-eth0-json.txt"),
    ("c77g153", "ethtool -k eth0", "guest-ethtool-k-eth0.txt"),
    ("c77g153", "ethtool --json -i eth0", "guest-ethtool-json-i-rejected.txt"),
    ("host", "ip -j -s link show ens2f0_0", "host-ip-j-s-link-show-ens2f0_0-json.txt"),
    ("host", "ip -j link show", "host-ip-j-link-show-json.txt"),
    ("host", "ethtool --json -k ens2f0", "host-ethtool-json-k-ens2f0-json.txt"),
    ("host", "ovs-appctl --format json version", "host-ovs-appctl-format-json-rejected.txt"),
    ("host", "ovs-vsctl --version", "host-ovs-vsctl-version.txt"),
    ("host", "ip -V; ethtool --version; busybox | head -1", "host-tool-versions.txt"),
]
# and, by hand, this machine's own neighbours (read only): ip neigh show > machine-ip-neigh-show.txt,
# ip -j neigh show > machine-ip-neigh-show-json.txt (a router and an IPv6 neighbour that FAILED)


def main() -> None:
    lab = load_lab(ROOT / "lab.toml")
    try:
        with lab_up(lab) as handle:
            ping = handle.hosts["c77g153"].run("ping -c 3 -i 0.2 192.168.30.159", timeout=20)
            print("ping rc", ping.rc)
            for role, command, name in READS:
                result = handle.hosts[role].run(command, timeout=30)
                out = result.stdout if result.ok else result.stderr
                (HERE / name).write_text(out, encoding="utf-8")
                print(f"{role}: {command} -> rc {result.rc}, {len(out)} chars -> {name}")
    finally:
        lab_down(lab)


if __name__ == "__main__":
    main()

"""What an emulated lab could change on the machine, captured before ``up`` and after ``down``.

The lab promises to leave the machine exactly as it found it. ``machine_snapshot`` records
the things a lab (or a bring-up layer running inside one) can touch: named network
namespaces, the root namespace's links, addresses and routes, processes that could be the
lab's (anything in a non-root network namespace, and the daemons and traffic tools the suite
runs), mounts, hugepages per size, loaded modules and a broad sample of sysctls.
``diff_snapshots`` turns two snapshots into readable lines; equal snapshots give none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

# processes that matter even in the root namespace: what the lab and its tests start
WATCHED_COMMANDS = frozenset({
    "sshd", "ovsdb-server", "ovs-vswitchd", "ovs-vswitchd-dpdk", "iperf3", "ping", "qemu-system-x86",
    "qemu-system-x86_64", "dnsmasq", "dropbear", "tcpdump", "socat",
})

# sysctls a lab or a layer could plausibly touch, plus a broad sample of neighbours
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.conf.all.accept_local",
    "net.ipv4.conf.all.proxy_arp",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.all.disable_ipv6",
    "net.ipv6.conf.default.disable_ipv6",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.netdev_max_backlog",
    "net.core.somaxconn",
    "net.core.busy_poll",
    "net.core.busy_read",
    "net.bridge.bridge-nf-call-iptables",
    "vm.nr_hugepages",
    "vm.nr_overcommit_hugepages",
    "vm.nr_hugepages_mempolicy",
    "vm.hugetlb_shm_group",
    "vm.max_map_count",
    "vm.overcommit_memory",
    "vm.swappiness",
    "vm.min_free_kbytes",
    "kernel.core_pattern",
    "kernel.pid_max",
    "kernel.sched_rt_runtime_us",
    "kernel.numa_balancing",
    "fs.file-max",
    "fs.inotify.max_user_instances",
)


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _sysctls(names: Iterable[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in names:
        value = _read("/proc/sys/" + name.replace(".", "/"))
        if value is not None:
            values[name] = " ".join(value.split())
    return values


def _netns_names() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except OSError:
        return []


def _root_network() -> dict[str, list[str]]:
    """Links, addresses and routes of the namespace this process runs in (the root one)."""
    links: list[str] = []
    addrs: list[str] = []
    routes: list[str] = []
    with IPRoute() as ipr:
        names: dict[int, str] = {}
        for msg in ipr.get_links():
            info = msg.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            name = msg.get_attr("IFLA_IFNAME")
            names[msg["index"]] = name
            up = "UP" if msg["flags"] & 1 else "DOWN"
            links.append(f"{name} kind={kind} {up} mtu={msg.get_attr('IFLA_MTU')} master={msg.get_attr('IFLA_MASTER')}")
        for msg in ipr.get_addr():
            addrs.append(f"{names.get(msg['index'], msg['index'])} {msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        for msg in ipr.get_routes(table=254):
            dst = msg.get_attr("RTA_DST")
            dst = f"{dst}/{msg['dst_len']}" if dst else "default"
            routes.append(f"{dst} via={msg.get_attr('RTA_GATEWAY')} dev={names.get(msg.get_attr('RTA_OIF'))}")
    return {"links": sorted(links), "addresses": sorted(addrs), "routes": sorted(routes)}


def _stat(pid: str) -> tuple[str, str] | None:
    """(comm, state) of a process, None when it is gone."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    comm = raw[raw.find("(") + 1 : raw.rfind(")")]
    state = raw[raw.rfind(")") + 2 :].split(" ", 1)[0]
    return comm, state


def _root_netns() -> str:
    """The initial network namespace: PID 1's, or kthreadd's when PID 1 hides its /proc entries."""
    for pid in ("1", "2", "self"):
        try:
            return os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
    return ""


def _processes() -> list[str]:
    """Live processes that could be the lab's: outside the root netns, or one of the watched commands.

    Zombies are left out: they have exited, and PID 1 reaps them only every second or two.
    """
    root_ns = _root_netns()
    me = str(os.getpid())
    found: list[str] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        stat = _stat(pid)
        if stat is None or stat[1] in ("Z", "X"):
            continue
        comm = stat[0]
        try:
            netns = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue  # a process that just exited, or one whose /proc entries are hidden
        if netns != root_ns or comm in WATCHED_COMMANDS:
            cmd = (_read(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()[:200]
            where = "root" if netns == root_ns else netns  # "net:[4026532281]"
            found.append(f"{pid} {comm} {where}: {cmd}")
    return sorted(found, key=lambda line: int(line.split(" ", 1)[0]))


def _mounts() -> list[str]:
    """Mount point, type and source of every mount this process's mount namespace sees."""
    lines = _read("/proc/self/mountinfo") or ""
    mounts: list[str] = []
    for line in lines.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        tail = line.split(" - ", 1)[1].split()
        fstype = tail[0] if tail else "?"
        source = tail[1] if len(tail) > 1 else "?"
        options = tail[2] if len(tail) > 2 else ""
        page = next((opt for opt in options.split(",") if opt.startswith("pagesize=")), "")
        mounts.append(f"{fields[4]} {fstype} {source} {page}".rstrip())
    return sorted(mounts)


def _hugepages() -> dict[str, dict[str, int]]:
    """nr and overcommit per page size (free/resv/surplus depend on users, not on configuration)."""
    pages: dict[str, dict[str, int]] = {}
    base = Path("/sys/kernel/mm/hugepages")
    if not base.is_dir():
        return pages
    for entry in sorted(base.iterdir()):
        size = entry.name.removeprefix("hugepages-")
        values = {}
        for key in ("nr_hugepages", "nr_overcommit_hugepages"):
            raw = _read(entry / key)
            if raw is not None and raw.isdigit():
                values[key] = int(raw)
        pages[size] = values
    return pages


def _modules() -> list[str]:
    text = _read("/proc/modules") or ""
    return sorted(line.split()[0] for line in text.splitlines() if line.strip())


def machine_snapshot(sysctls: Iterable[str] = SYSCTLS) -> dict[str, Any]:
    """Everything an emulated lab could leave behind, as plain JSON-able data."""
    net = _root_network()
    return {
        "netns": _netns_names(),
        "links": net["links"],
        "addresses": net["addresses"],
        "routes": net["routes"],
        "processes": _processes(),
        "mounts": _mounts(),
        "hugepages": _hugepages(),
        "modules": _modules(),
        "sysctls": _sysctls(sysctls),
    }


def diff_snapshots(
    before: Mapping[str, Any], after: Mapping[str, Any], *, ignore: Callable[[str], bool] | None = None
) -> list[str]:
    """One line per difference ("+" appeared, "-" disappeared, "~" changed); [] when equal.

    ``ignore`` drops lines that are provably someone else's (see ``foreign_filter``).
    """
    lines = _diff(before, after)
    return [line for line in lines if ignore is None or not ignore(line)]


_PROCESS_NETNS = re.compile(r"^processes: [+-] \d+ .*? (root|net:\[(\d+)\]): ")


def foreign_filter(
    netns_prefix: str | tuple[str, ...], markers: Iterable[str] = (), netns_inodes: Iterable[int] = ()
) -> Callable[[str], bool]:
    """A predicate for ``diff_snapshots(ignore=...)`` on a machine shared with other users.

    Only namespaces, their bind mounts and processes can be told apart: a namespace or a
    ``/run/netns/NAME`` mount whose name lacks ``netns_prefix`` (one or a tuple), and a process that is in none
    of ``netns_inodes`` (the lab's namespaces, recorded while it was up) and whose command line
    contains none of ``markers`` (the lab's state dir), belong to someone else. Everything else
    (links, addresses, routes, hugepages, sysctls, modules, other mounts) stays strict.
    """
    marks = [m for m in markers if m]
    inodes = {int(i) for i in netns_inodes}

    def foreign(line: str) -> bool:
        if any(mark in line for mark in marks):
            return False
        if line.startswith("netns: "):
            return not line[len("netns: ") + 2 :].startswith(netns_prefix)
        if line.startswith("mounts: ") and " /run/netns/" in f" {line[len('mounts: ') + 2 :]}":
            name = line[len("mounts: ") + 2 :].split(" ", 1)[0].removeprefix("/run/netns/")
            return not name.startswith(netns_prefix)
        match = _PROCESS_NETNS.match(line)
        if match:
            return match.group(2) is None or int(match.group(2)) not in inodes
        return False

    return foreign


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            lines += [f"{key}: - {item}" for item in old if item not in new]
            lines += [f"{key}: + {item}" for item in new if item not in old]
        elif isinstance(old, dict) and isinstance(new, dict):
            for sub in sorted(set(old) | set(new)):
                if old.get(sub) != new.get(sub):
                    lines.append(f"{key}: ~ {sub}: {old.get(sub)!r} -> {new.get(sub)!r}")
        else:
            lines.append(f"{key}: ~ {old!r} -> {new!r}")
    return lines

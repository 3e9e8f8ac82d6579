"""Pure text -> dataclass parsers for the tools a vDPA lab is checked with, and their registry.

Each parser takes the whole output as a string, does no I/O, and raises
:class:`vdpalab.errors.ParseError` (kind, message, line number, line) on text it does not understand.
``PARSERS`` maps the KIND of ``vdpalab parse KIND`` to the parser and its JSON view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vdpalab.parsers import (
    devlink,
    ethtool,
    iperf,
    iplink,
    kernel_log,
    libvirt,
    lshw,
    ovs,
    ping,
    procfs,
    qemu,
    sysfs,
    vdpa,
)
from vdpalab.parsers._common import to_json


@dataclass(frozen=True)
class ParserSpec:
    """One KIND: the parser, the function giving its JSON (dicts/lists/scalars), and what it reads."""

    kind: str
    parse: Callable[[str], Any]
    to_json: Callable[[Any], Any]
    reads: str


def _spec(kind: str, parse: Callable[[str], Any], reads: str, to_json_fn: Callable[[Any], Any] = to_json) -> ParserSpec:
    return ParserSpec(kind=kind, parse=parse, to_json=to_json_fn, reads=reads)


PARSERS: dict[str, ParserSpec] = {
    s.kind: s
    for s in (
        _spec(ovs.DUMP_PORTS, ovs.parse_dump_ports, "ovs-ofctl [-O OpenFlow1x] dump-ports BR"),
        _spec(ovs.VSCTL_SHOW, ovs.parse_vsctl_show, "ovs-vsctl show"),
        _spec(ovs.OTHER_CONFIG, ovs.parse_other_config, "ovs-vsctl get Open_vSwitch . other_config"),
        _spec(ovs.OVSDB_LIST, ovs.parse_ovsdb_list,
              "ovs-vsctl --format=json --data=json [--columns=...] list TABLE [-- list TABLE...]"),
        _spec(ovs.DUMP_FLOWS, ovs.parse_dump_flows, "ovs-appctl dpctl/dump-flows [-m] [type=...]"),
        _spec(ping.PING, ping.parse_ping, "ping (iputils, incl. -f; busybox)"),
        _spec(iperf.IPERF3, iperf.parse_iperf3, "iperf3 -J (client), TCP or UDP, 3.1 to 3.17"),
        _spec(iperf.IPERF2_CSV, iperf.parse_iperf2_csv, "iperf -y C (iperf2 CSV, 9 or 15 fields)"),
        _spec(procfs.MEMINFO, procfs.parse_meminfo, "/proc/meminfo, whole or grepped"),
        _spec(procfs.CMDLINE, procfs.parse_cmdline, "/proc/cmdline"),
        _spec(procfs.MOUNTS, procfs.parse_mounts, "/proc/mounts (whole or grepped)"),
        _spec(procfs.LSMOD, procfs.parse_lsmod, "lsmod (whole or grepped)"),
        _spec(sysfs.LS_L, sysfs.parse_ls_l, "ls -l / ls -Fal of /dev or /sys"),
        _spec(ethtool.ETHTOOL_K, ethtool.parse_ethtool_k, "ethtool -k IF (whole or grepped), ethtool --json -k IF"),
        _spec(ethtool.ETHTOOL_I, ethtool.parse_ethtool_i, "ethtool -i IF"),
        _spec(iplink.IP_LINK, iplink.parse_ip_link, "ip [-d] [-s] link show, ip -j [-d] [-s] link show"),
        _spec(iplink.IP_ADDR, iplink.parse_ip_addr, "ip [-4|-6] [-o] addr show, ip -j addr show (also BusyBox ip)"),
        _spec(iplink.IP_NEIGH, iplink.parse_ip_neigh, "ip neigh show, ip -j neigh show"),
        _spec(lshw.LSHW, lshw.parse_lshw, "lshw -businfo [-c network]", lshw.to_json),
        _spec(devlink.ESWITCH, devlink.parse_devlink_eswitch, "devlink dev eswitch show DEV [-j]"),
        _spec(devlink.PORT, devlink.parse_devlink_port, "devlink port show [-j]"),
        _spec(devlink.INFO, devlink.parse_devlink_info, "devlink dev info [-j]"),
        _spec(vdpa.MGMTDEV, vdpa.parse_vdpa_mgmtdev, "vdpa mgmtdev show [-j]"),
        _spec(vdpa.DEV, vdpa.parse_vdpa_dev, "vdpa dev show / vdpa dev list [-j]"),
        _spec(vdpa.CONFIG, vdpa.parse_vdpa_config, "vdpa dev config show [-j]"),
        _spec(vdpa.VSTATS, vdpa.parse_vdpa_vstats, "vdpa dev vstats show DEV qidx Q [-j]"),
        _spec(kernel_log.KERNEL_LOG, kernel_log.parse_kernel_log,
              "dmesg, dmesg -T, syslog, journalctl (short, short-iso, short-precise, -o json)", kernel_log.to_json),
        _spec(libvirt.LIBVIRT_XML, libvirt.parse_libvirt_xml, "libvirt domain XML (or an <interface> fragment)"),
        _spec(qemu.QEMU_CMDLINE, qemu.parse_qemu_cmdline, "a qemu-system-* command line or libvirt args file"),
    )
}


def parse(kind: str, text: str) -> Any:
    """Parse ``text`` as ``kind`` (KeyError for an unknown kind)."""
    return PARSERS[kind].parse(text)


def parse_to_json(kind: str, text: str) -> Any:
    spec = PARSERS[kind]
    return spec.to_json(spec.parse(text))


__all__ = ["PARSERS", "ParserSpec", "parse", "parse_to_json"]

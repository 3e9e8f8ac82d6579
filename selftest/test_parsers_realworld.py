"""Parsers on real outputs nobody here wrote them against, and on the messy shapes of real pastes.

Proves: the facts listed in recorded/11_vdpa_vm/SOURCES.md (a Debian 6.12 kernel running the vDPA
framework in a VM) are extracted; the issue's cases hold (``ovs-vsctl show`` with Manager and
Controller blocks, dump-ports counter lines wrapped in OF1.0/1.4/1.5, vdpa counter names of two
words in text and JSON, trailing-space keys of old iproute2 JSON, "feature negotiation not complete"
reported as such, a qemu command line with its ``$`` prompt, a paste with ``...`` elisions); and
whatever a parser does not understand is kept in ``unparsed`` with its line number, shown by
``vdpalab parse`` and in failure diagnostics.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vdpalab.errors import ParseError
from vdpalab.parsers import PARSERS
from vdpalab.parsers._common import Unparsed, describe_unparsed

pytestmark = pytest.mark.selftest

DATA = Path(__file__).parent / "data"
VM = DATA / "recorded" / "11_vdpa_vm"


def parse(kind: str, text: str):  # type: ignore[no-untyped-def]
    return PARSERS[kind].parse(text)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# ------------------------------------------------------------------------ recorded/11_vdpa_vm
def test_vm_mgmtdev_json_vdpasim_net() -> None:
    r = parse("vdpa-mgmtdev", read(VM / "mgmtdev-show-jp-vdpasim_net-6.12-json.txt"))
    m = r.mgmtdevs["vdpasim_net"]
    assert (m.supported_classes, m.max_supported_vqs) == (["net"], 3)
    assert m.dev_features == ["MTU", "MAC", "STATUS", "CTRL_VQ", "CTRL_MAC_ADDR", "ANY_LAYOUT", "VERSION_1",
                              "ACCESS_PLATFORM"]


def test_vm_dev_show_vdpasim_and_two_vduse_devices() -> None:
    d = parse("vdpa-dev", read(VM / "dev-show-vdpasim_net-6.12.txt")).devs["vdpa0"]
    assert (d.type, d.mgmtdev, d.vendor_id, d.max_vqs, d.max_vq_size) == ("network", "vdpasim_net", 0, 3, 256)
    two = parse("vdpa-dev", read(VM / "dev-show-two-vduse-devices.txt"))
    assert sorted(two.devs) == ["vduse0", "vduse1"] and two.unparsed == []
    assert all((v.mgmtdev, v.max_vqs, v.max_vq_size) == ("vduse", 2, 1024) for v in two.devs.values())


def test_vm_config_negotiated_features_with_trailing_space() -> None:
    c = parse("vdpa-config", read(VM / "dev-config-show-negotiated-iproute2-6.1.txt")).devs["vdpa0"]
    assert (c.mac, c.link, c.link_announce, c.mtu) == ("00:11:22:33:44:00", "up", False, 1500)
    assert c.negotiated_features == ["MTU", "MAC", "STATUS", "CTRL_VQ", "CTRL_MAC_ADDR", "VERSION_1",
                                     "ACCESS_PLATFORM"]


def test_vm_vduse_config_has_no_mac_or_mtu() -> None:
    r = parse("vdpa-config", read(VM / "dev-config-show-vduse-ovs-dpdk-negotiated.txt"))
    assert sorted(r.devs) == ["vduse0", "vduse1"] and r.unparsed == []
    for c in r.devs.values():
        assert (c.mac, c.mtu, c.link) == (None, None, None)
        assert c.negotiated_features[0] == "CSUM" and c.negotiated_features[-2:] == ["VERSION_1", "ACCESS_PLATFORM"]
        assert len(c.negotiated_features) == 12


@pytest.mark.parametrize("kind", ["vdpa-vstats", "vdpa-config"])
def test_feature_negotiation_not_complete_is_reported_as_such(kind: str) -> None:
    with pytest.raises(ParseError) as ei:
        parse(kind, read(VM / "vstats-before-driver-feature-negotiation-not-complete.txt"))
    assert ei.value.line_no == 2 and ei.value.line == "Error: vdpa: feature negotiation not complete."
    assert "'feature negotiation not complete'" in str(ei.value)


def test_vm_vstats_json_multi_word_counters() -> None:
    vq = parse("vdpa-vstats", read(VM / "vstats-jp-tx-vdpasim-json.txt")).devs["vdpa0"]
    assert vq.queue_type == "tx"
    assert vq.counters == {"tx packets": 11, "tx bytes": 858, "tx errors": 3, "tx drops": 0}


def test_vdpa_sim_vstats_text_multi_word_counters() -> None:
    """The issue's text form of the same counters (vdpa_sim on 6.12 prints names of two words)."""
    vq = parse("vdpa-vstats", "vdpa0:\nqueue_type tx tx packets 11 tx bytes 858 tx errors 3\n").devs["vdpa0"]
    assert vq.counters == {"tx packets": 11, "tx bytes": 858, "tx errors": 3}
    one_line = parse("vdpa-vstats", "vdpa0: queue_type tx tx packets 11 tx bytes 858 tx errors 3\n")
    assert one_line.devs["vdpa0"] == vq


def test_vm_ovs_35_show_with_vduse_ports_keeps_the_list_interface_part() -> None:
    text = read(VM / "ovs-3.5-vsctl-show-and-list-interface-vduse-port.txt")
    r = parse("vsctl-show", text)
    br = r.bridges["br0"]
    assert br.datapath_type == "netdev" and list(br.ports) == ["vduse1", "vduse0", "br0"]
    assert br.ports["vduse0"].interfaces["vduse0"].type == "dpdkvhostuserclient"
    assert br.ports["vduse0"].interfaces["vduse0"].options == {"vhost-server-path": "/dev/vduse/vduse0"}
    # the appended `ovs-vsctl list interface` lines are not `show` output: kept, numbered, not guessed at
    assert [u.line for u in r.unparsed] == [15, 16, 17, 18, 19, 20]
    assert r.unparsed[3] == Unparsed(18, "link_state          : up")


# ---------------------------------------------------------------------------- the cases
SHOW_WITH_MANAGER = """\
3b6c1e2a-5f0e-4c41-9d8e-7a1f2b3c4d5e
    Manager "ptcp:6640:127.0.0.1"
        is_connected: true
    Bridge br-int
        Controller "tcp:127.0.0.1:6653"
            is_connected: true
        fail_mode: secure
        datapath_type: netdev
        Port br-int
            Interface br-int
                type: internal
    ovs_version: "3.1.0"
"""


def test_vsctl_show_manager_and_controller_blocks() -> None:
    r = parse("vsctl-show", SHOW_WITH_MANAGER)
    assert r.managers == {"ptcp:6640:127.0.0.1": {"is_connected": "true"}}
    br = r.bridges["br-int"]
    assert br.controllers == {"tcp:127.0.0.1:6653": {"is_connected": "true"}}
    assert br.other == {"fail_mode": "secure"} and br.datapath_type == "netdev"
    assert list(br.ports) == ["br-int"] and r.ovs_version == "3.1.0" and r.unparsed == []


OF10_WRAPPED = """\
OFPST_PORT reply (xid=0x2): 2 ports
  port LOCAL: rx pkts=0, bytes=0, drop=0, errs=0,
              frame=0, over=0, crc=0
           tx pkts=0, bytes=0, drop=15,
              errs=0, coll=0
  port  1: rx pkts=30, bytes=2644, drop=0, errs=0, frame=0, over=0, crc=0
           tx pkts=32, bytes=2944, drop=0, errs=0, coll=0
"""

OF15_RFC2819_WRAPPED = """\
OFPST_PORT reply (OF1.5) (xid=0x2): 1 ports
  port  "dpdk0": rx pkts=4208, bytes=522864, drop=0, errs=0, frame=?, over=?, crc=?
           tx pkts=4199, bytes=521004, drop=0, errs=0, coll=?
           duration=85.338s
           rx rfc2819 64_packets=3, 65_to_127_packets=4189, 128_to_255_packets=12,
                      256_to_511_packets=0, 512_to_1023_packets=4, 1024_to_1522_packets=0,
                      1523_to_max_packets=0,
           tx rfc2819 64_packets=0, 65_to_127_packets=4188, 128_to_255_packets=11,
                      multicast_packets=5, broadcast_packets=2,
"""


def test_dump_ports_of10_counter_lines_wrapped() -> None:
    r = parse("dump-ports", OF10_WRAPPED)
    assert r.unparsed == [] and list(r.ports) == ["LOCAL", "1"]
    local = r.ports["LOCAL"]
    assert (local.rx_frame, local.rx_crc, local.tx_dropped, local.tx_errors, local.tx_collisions) == (0, 0, 15, 0, 0)


def test_dump_ports_rfc2819_wrapped_over_lines() -> None:
    r = parse("dump-ports", OF15_RFC2819_WRAPPED)
    assert r.openflow_version == "OF1.5" and r.unparsed == []
    c = r.ports["dpdk0"].custom
    assert c["rx_rfc2819_65_to_127_packets"] == 4189 and c["rx_rfc2819_1523_to_max_packets"] == 0
    assert c["tx_rfc2819_broadcast_packets"] == 2 and len(c) == 12


def test_dump_ports_cut_inside_a_wrapped_line_raises() -> None:
    cut = OF15_RFC2819_WRAPPED[: OF15_RFC2819_WRAPPED.index("1523_to")] + "1523_to_max_pa"
    with pytest.raises(ParseError) as ei:
        parse("dump-ports", cut)
    assert ei.value.line_no == 7


def test_qemu_cmdline_with_its_prompt() -> None:
    text = ("$ qemu-system-x86_64 \\\n  -name guest=c77g153 \\\n  -m 8G \\\n"
            "  -netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0 \\\n"
            "  -device virtio-net-pci,netdev=vhost-vdpa0,page-per-vq=on,iommu_platform=on,disable-legacy=on\n")
    r = parse("qemu-cmdline", text)
    assert r.binary == "qemu-system-x86_64" and r.name == "c77g153" and r.memory_mib == 8192
    assert r.netdevs[0].vhostdev == "/dev/vhost-vdpa-0" and r.devices[0].netdev == "vhost-vdpa0"
    assert r.unparsed == []


def test_qemu_cmdline_paste_with_an_elision_and_prose() -> None:
    text = ("Here is how I start it:\n[root@c83g155 ~]# /usr/local/bin/qemu-system-x86_64 \\\n -enable-kvm \\\n"
            "...\n -netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-1,id=vhost-vdpa1 \\\n"
            " -device virtio-net-pci,netdev=vhost-vdpa1\nand the guest boots.\n")
    r = parse("qemu-cmdline", text)
    assert r.binary == "/usr/local/bin/qemu-system-x86_64" and ("-enable-kvm", None) in r.options
    assert r.netdevs[0].id == "vhost-vdpa1"
    assert r.unparsed == [Unparsed(1, "Here is how I start it:"), Unparsed(4, "..."),
                          Unparsed(7, "and the guest boots.")]


def test_pasted_outputs_with_elisions_keep_the_elision_lines() -> None:
    ports = (DATA / "emulated" / "ovs-ofctl-of10-dump-ports.txt").read_text().split("\n")
    elided = "\n".join([*ports[:3], "...", *ports[7:]])
    r = parse("dump-ports", elided)
    assert Unparsed(4, "...") in r.unparsed and set(r.ports) == {"LOCAL", "3"}
    log = read(DATA / "seed" / "var-log-messages-guest-start.txt").split("\n")
    k = parse("kernel-log", "\n".join([*log[:2], "[...]", *log[2:]]))
    assert Unparsed(3, "[...]") in k.unparsed and len(k.records) == len([ln for ln in log if ln.strip()])


def test_every_line_based_result_shows_its_unparsed_lines_in_json() -> None:
    r = parse("ping", "PING x\nsomething odd\n\n--- x ping statistics ---\n"
                      "1 packets transmitted, 1 received, 0% packet loss, time 0ms\n"
                      "rtt min/avg/max/mdev = 0.1/0.1/0.1/0.0 ms\n")
    assert PARSERS["ping"].to_json(r)["unparsed"] == [{"line": 2, "text": "something odd"}]
    assert describe_unparsed(r) == ["1 line(s) not understood by the parser:", "  line 2: something odd"]


def test_a_text_that_is_no_such_output_at_all_raises() -> None:
    for kind in ("dump-ports", "vsctl-show", "kernel-log", "lsmod", "meminfo", "ethtool-k", "vdpa-dev",
                 "devlink-port", "ip-link", "mounts", "qemu-cmdline", "ping"):
        with pytest.raises(ParseError):
            parse(kind, "Permission denied\nplease try again\n")


def test_failure_diagnostics_carry_the_lines_not_understood() -> None:
    from vdpalab.hosts.base import CommandResult
    from vdpalab.traffic.ping import PingRun, PingSpec, ping_problems

    out = ("PING x (x) 56(84) bytes of data.\nping: sendmsg: No buffer space available\n"
           "bridge loop detected on br30-ovs\n\n--- x ping statistics ---\n"
           "5 packets transmitted, 5 received, +3 duplicates, 0% packet loss, time 4ms\n"
           "rtt min/avg/max/mdev = 0.1/0.1/0.1/0.0 ms\n")
    stats = parse("ping", out)
    run = PingRun(PingSpec("x", 5, 5.0), "c77g153", CommandResult("c77g153", "ping", 0, out, "", 0.0, 0.1),
                  "interval", stats)
    problems = ping_problems(run)
    assert problems[0].endswith("3 duplicate replies (a loop or a flooding bridge?)")
    assert problems[1].endswith("1 line(s) not understood by the parser:   line 3: bridge loop detected on br30-ovs")

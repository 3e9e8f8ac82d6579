"""The parsers on outputs recorded from this machine's real tools (selftest/data/emulated/, made by
``record.sh``): iputils 20221126, BusyBox 1.35, iperf 3.12, iproute2 6.1, ethtool 6.1, OVS 3.1,
journalctl 252. Relations between outputs are checked, not only values, so a re-recording still passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdpalab.errors import ParseError
from vdpalab.parsers import PARSERS
from vdpalab.parsers.ping import parse_ping_replies, reply_rtts_ms

pytestmark = pytest.mark.selftest

EMU = Path(__file__).parent / "data" / "emulated"


def text(name: str) -> str:
    return (EMU / name).read_text(encoding="utf-8")


def parse(kind: str, name: str):
    return PARSERS[kind].parse(text(name))


def test_ping_count_and_replies_agree() -> None:
    r = parse("ping", "ping-iputils-c5-localhost.txt")
    assert (r.transmitted, r.received, r.loss_pct, r.duplicates, r.errors, r.target) == (5, 5, 0.0, 0, 0, "127.0.0.1")
    rtts = reply_rtts_ms(text("ping-iputils-c5-localhost.txt"))
    assert len(rtts) == 5 and min(rtts) == r.rtt_min_ms and max(rtts) == r.rtt_max_ms
    assert [p.seq for p in parse_ping_replies(text("ping-iputils-c5-localhost.txt"))] == [1, 2, 3, 4, 5]


def test_ping_flood_dots_and_ipg_ewma() -> None:
    raw = text("ping-iputils-flood-c2000-localhost.txt")
    assert "\b" in raw  # flood mode's dots and backspaces are in the recording
    r = PARSERS["ping"].parse(raw)
    assert (r.transmitted, r.received, r.loss_pct) == (2000, 2000, 0.0)
    assert r.ipg_ms is not None and r.ewma_ms is not None and r.rtt_mdev_ms is not None
    assert reply_rtts_ms(raw) == []  # flood mode prints no reply lines


def test_ping_through_ovs_bridge_between_namespaces() -> None:
    r = parse("ping", "ping-iputils-c20-veth-through-ovs.txt")
    assert (r.transmitted, r.received, r.loss_pct) == (20, 20, 0.0)
    rtts = reply_rtts_ms(text("ping-iputils-c20-veth-through-ovs.txt"))
    assert len(rtts) == 20 and r.rtt_min_ms == min(rtts) and r.rtt_max_ms == max(rtts)
    assert abs(sum(rtts) / len(rtts) - r.rtt_avg_ms) < 0.002


def test_ping_unreachable_and_busybox() -> None:
    u = parse("ping", "ping-iputils-unreachable-ns.txt")
    assert (u.transmitted, u.received, u.errors, u.loss_pct, u.rtt_avg_ms, u.pipe) == (3, 0, 3, 100.0, None, 3)
    b = parse("ping", "ping-busybox-c3-localhost.txt")
    assert (b.flavour, b.transmitted, b.received, b.rtt_mdev_ms, b.time_ms) == ("busybox", 3, 3, None, None)
    assert len(reply_rtts_ms(text("ping-busybox-c3-localhost.txt"))) == 3


def test_iperf3_tcp_localhost() -> None:
    r = parse("iperf3", "iperf3-J-tcp-t1-localhost-json.txt")
    assert (r.version, r.protocol, r.streams, r.error) == ("iperf 3.12", "TCP", 1, None)
    assert r.sent_bps > 0 and r.received_bps > 0 and r.retransmits is not None
    assert r.sent_bps == r.sum_sent.bits_per_second and len(r.interval_bps) >= 1
    assert r.jitter_ms is None and r.lost_packets is None


def test_iperf3_udp_localhost_receiver_view() -> None:
    r = parse("iperf3", "iperf3-J-udp-t1-localhost-json.txt")
    assert (r.protocol, r.error) == ("UDP", None)
    assert r.sent_bps == r.sum_sent.bits_per_second and r.received_bps == r.sum_received.bits_per_second
    assert r.packets == r.sum_received.packets and r.lost_packets == r.sum_received.lost_packets
    assert r.jitter_ms == r.sum_received.jitter_ms and r.lost_percent is not None and r.retransmits is None


def test_iperf3_refused_is_a_failure_with_null_rates() -> None:
    r = parse("iperf3", "iperf3-J-refused-localhost-json.txt")
    assert r.error == "unable to connect to server: Connection refused"
    assert (r.sent_bps, r.received_bps, r.protocol) == (None, None, None)


def test_ip_link_text_and_json_agree() -> None:
    t = parse("ip-link", "ip-link-show-ns.txt")
    d = parse("ip-link", "ip-d-link-show-ns.txt")
    j = parse("ip-link", "ip-j-link-show-ns-json.txt")
    assert [(x.ifindex, x.name, x.mtu, x.state, x.mac) for x in t.links] == \
        [(x.ifindex, x.name, x.mtu, x.state, x.mac) for x in j.links] == \
        [(x.ifindex, x.name, x.mtu, x.state, x.mac) for x in d.links]
    assert t.by_name("vdl-n1").peer == "if2" and t.by_name("lo").flags == ["LOOPBACK", "UP", "LOWER_UP"]
    (lo,) = parse("ip-link", "ip-j-d-link-show-lo-json.txt").links
    assert (lo.name, lo.mtu, lo.vfs) == ("lo", 65536, [])


def test_ethtool_on_veth_and_lo() -> None:
    k = parse("ethtool-k", "ethtool-k-veth.txt")
    assert k.interface == "vdl-n1" and len(k.features) > 40
    assert k.features["tx-checksum-ipv4"].fixed and k.features["tx-checksum-ipv4"].parent == "tx-checksumming"
    assert k.features["hw-tc-offload"].on is False
    assert parse("ethtool-k", "ethtool-k-lo.txt").interface == "lo"
    i = parse("ethtool-i", "ethtool-i-veth.txt")
    assert (i.driver, i.version, i.bus_info, i.firmware_version, i.supports_statistics) == ("veth", "1.0", None, None,
                                                                                           True)


def test_ovs_dump_ports_of14_and_of10_agree() -> None:
    a = parse("dump-ports", "ovs-ofctl-of14-dump-ports.txt")
    b = parse("dump-ports", "ovs-ofctl-of10-dump-ports.txt")
    assert a.openflow_version == "OF1.4" and b.openflow_version is None
    assert set(a.ports) == set(b.ports) == {"LOCAL", "1", "2", "3"}
    for name in a.ports:
        pa, pb = a.ports[name], b.ports[name]
        assert pa.duration_s is not None and pb.duration_s is None
        assert (pa.rx_packets, pa.tx_packets, pa.rx_frame) == (pb.rx_packets, pb.tx_packets, pb.rx_frame)
    assert a.ports["1"].rx_packets > 20 and a.ports["2"].rx_packets > 20  # the 20 pings crossed the bridge


def test_ovs_dump_ports_of15_has_durations_and_the_same_ports() -> None:
    """OF1.5 (a later run of record.sh on the same OVS 3.1): same ports and shape as OF1.4, nothing unparsed."""
    c = parse("dump-ports", "ovs-ofctl-of15-dump-ports.txt")
    assert c.openflow_version == "OF1.5" and c.unparsed == []
    assert set(c.ports) == {"LOCAL", "1", "2", "3"}
    assert all(p.duration_s is not None and p.duration_s > 0 and p.custom == {} for p in c.ports.values())
    assert c.ports["1"].rx_packets > 20 and c.ports["2"].tx_packets > 20  # the 20 pings crossed the bridge


def test_ovs_dump_flows_userspace_datapath() -> None:
    m = parse("dump-flows", "ovs-appctl-dpctl-dump-flows-m.txt").flows
    plain = parse("dump-flows", "ovs-appctl-dpctl-dump-flows.txt").flows
    assert len(m) == len(plain) > 0
    assert all(f.dp == "ovs" and f.offloaded is None and f.ufid and f.thread == "the main thread" for f in m)
    assert all(f.dp_extra_info and f.dp_extra_info.startswith("miniflow_bits(") for f in m)
    icmp = [f for f in m if "icmp(type=8" in f.match or "icmp(type=0" in f.match]
    assert len(icmp) == 2 and icmp[0].packets == icmp[1].packets >= 19
    assert all(f.used == "never" for f in m if f.used_s is None)
    assert parse("dump-flows", "ovs-appctl-dpctl-dump-flows-m-offloaded-empty.txt").flows == []


def test_ovs_vsctl_show_without_version_and_with_interface_error() -> None:
    r = parse("vsctl-show", "ovs-vsctl-show-netdev.txt")
    assert r.ovs_version is None  # the database was made by hand, not by ovs-ctl
    b = r.bridges["br-vdl"]
    assert b.datapath_type == "netdev" and set(b.ports) == {"br-vdl", "vdl-h1", "vdl-h2", "vdl-int", "vdl-bad"}
    bad = b.ports["vdl-bad"].interfaces["vdl-bad"]
    assert bad.type == "dpdk" and bad.options == {"dpdk-devargs": "0000:07:00.0,representor=[0]"}
    assert bad.error.startswith("could not open network device vdl-bad")
    assert b.ports["vdl-h1"].interfaces["vdl-h1"].type is None and b.ports["vdl-int"].interfaces["vdl-int"].type == \
        "internal"


def test_ovs_vsctl_show_with_a_manager_and_a_controller() -> None:
    """OVS prints the Manager and Controller targets; is_connected only while connected (nothing listens
    on the controller's port, and the manager is passive), so their detail maps are empty here."""
    r = parse("vsctl-show", "ovs-vsctl-show-manager-controller.txt")
    assert r.managers == {"ptcp:16640:127.0.0.1": {}} and r.unparsed == []
    b = r.bridges["br-vdl"]
    assert b.controllers == {"tcp:127.0.0.1:16653": {}} and b.other == {}
    assert set(b.ports) == set(parse("vsctl-show", "ovs-vsctl-show-netdev.txt").bridges["br-vdl"].ports)


def test_ovs_other_config_and_connection_error() -> None:
    c = parse("other-config", "ovs-vsctl-get-other-config.txt").other_config
    assert c == {"dpdk-socket-mem": "1024,1024", "max-idle": "30000", "tc-policy": "none",
                 "vhost-iommu-support": "true"}
    with pytest.raises(ParseError, match="database connection failed"):
        parse("other-config", "ovs-vsctl-get-other-config-no-db-stderr.txt")


def test_host_info() -> None:
    full = parse("meminfo", "meminfo-full.txt")
    huge = parse("meminfo", "meminfo-grep-huge.txt")
    assert full.fields["MemTotal"] > 0 and set(huge.fields) <= set(full.fields)
    assert huge.fields["Hugepagesize"] == full.fields["Hugepagesize"]
    (mt,) = parse("mounts", "proc-mounts-hugetlbfs.txt").mounts
    assert (mt.fstype, mt.option("pagesize")) == ("hugetlbfs", "2M")
    rows = parse("lshw", "lshw-businfo-network.txt").rows
    assert any(r.device == "" and r.bus_info.startswith("pci@") for r in rows)  # empty Device column
    assert any(r.device and r.bus_info.startswith("virtio@") for r in rows)


def test_vdpa_tool_without_netlink_is_an_error() -> None:
    with pytest.raises(ParseError) as ei:
        parse("vdpa-mgmtdev", "vdpa-mgmtdev-show-no-netlink-stderr.txt")
    assert ei.value.line_no == 1


def test_dmesg_plain_and_T_agree() -> None:
    a = parse("kernel-log", "dmesg-ovs-veth.txt").records
    b = parse("kernel-log", "dmesg-T-ovs-veth.txt").records
    assert [r.message for r in a] == [r.message for r in b] and len(a) >= 5
    assert all(r.mono_s is not None for r in a) and all(r.mono_s is None and r.time for r in b)
    assert any("entered promiscuous mode" in r.message for r in a)


@pytest.mark.parametrize("name", ["journalctl-short-seed-records.txt", "journalctl-short-iso-seed-records.txt",
                                  "journalctl-short-precise-seed-records.txt",
                                  "journalctl-json-seed-records-json.txt"])
def test_journalctl_formats(name: str) -> None:
    r = parse("kernel-log", name)
    assert len(r.records) == 6 and all(x.host == "c83g155" for x in r.records)
    assert [e.kind for e in r.vdpa_events] == ["device_reset", "memory_map_update"] * 2
    assert [e.pci for e in r.vdpa_events] == ["0000:07:00.2"] * 2 + ["0000:07:01.2"] * 2
    assert len(r.ovs_flow_key_errors) == 1
    assert [x.ident for x in r.records][:2] == ["kernel", "kvm"] and r.records[1].pid == 5088


def test_journal_json_times_are_utc_iso() -> None:
    r = parse("kernel-log", "journalctl-json-seed-records-json.txt")
    assert r.records[0].time == "2021-04-08T10:38:21.100000+00:00"

"""The parsers on the real outputs in selftest/data/recorded/: every fact listed in SOURCES.md
(01..10, copied from ../shared/recorded) and in 11_found_by_search/SOURCES.md is asserted here."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdpalab.errors import ParseError
from vdpalab.parsers import PARSERS
from vdpalab.parsers.kernel_log import unwrap_mail_wrapped

pytestmark = pytest.mark.selftest

DATA = Path(__file__).parent / "data" / "recorded"


def parse(kind: str, rel: str):
    return PARSERS[kind].parse((DATA / rel).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ 01 dump-ports
def test_of14_custom_stats_unknown_counters_are_none_not_zero() -> None:
    r = parse("dump-ports", "01_ovs_ofctl_dump_ports/ovs-tests-ofproto-of14-custom-stats.txt")
    assert r.openflow_version == "OF1.4"
    assert list(r.ports) == ["LOCAL"]
    p = r.ports["LOCAL"]
    assert (p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes) == (0, 0, 0, 0)
    assert (p.rx_dropped, p.rx_errors, p.rx_frame, p.rx_over, p.rx_crc) == (None,) * 5
    assert (p.tx_dropped, p.tx_errors, p.tx_collisions) == (None,) * 3
    assert p.duration_s is None  # the test harness printed duration=?s
    assert p.custom == {"rx_custom_packets_1": 0, "rx_custom_packets_2": 0, "rx_q0_bytes": 0,
                        "rx_q0_packets": 0, "tx_q0_bytes": 0, "tx_q0_packets": 0}
    j = PARSERS["dump-ports"].to_json(r)
    assert j["ports"]["LOCAL"]["rx_dropped"] is None and j["ports"]["LOCAL"]["rx_packets"] == 0


# ------------------------------------------------------------------------------ 02 ovs-vsctl
def test_vsctl_show_kernel_representors() -> None:
    r = parse("vsctl-show", "02_ovs_vsctl/wangjun-tips-show-kernel-representors-ovs2.14.txt")
    assert r.uuid == "c71ab696-566b-4e3a-bc73-5e2ffc7a8cf8"
    assert r.ovs_version == "2.14.1"
    assert list(r.bridges) == ["ovs-sriov"]
    ports = r.bridges["ovs-sriov"].ports
    assert list(ports) == ["enp216s0f0_2", "enp216s0f0", "enp216s0f0_1", "enp216s0f0_3", "enp216s0f0_0", "ovs-sriov"]
    for name in list(ports)[:5]:
        assert ports[name].interfaces[name].type is None
    assert ports["ovs-sriov"].interfaces["ovs-sriov"].type == "internal"
    assert r.bridges["ovs-sriov"].datapath_type is None
    j = PARSERS["vsctl-show"].to_json(r)
    assert j["bridges"]["ovs-sriov"]["ports"]["enp216s0f0"]["interfaces"]["enp216s0f0"]["type"] is None


def test_other_config_osp_dpdk_quoted_and_bare_values() -> None:
    r = parse("other-config", "02_ovs_vsctl/wangjun-tips-get-other-config-osp-dpdk.txt")
    assert r.other_config == {"dpdk-extra": " -n 4", "dpdk-init": "true", "dpdk-lcore-mask": "30003",
                              "dpdk-socket-mem": "1024,4096", "pmd-cpu-mask": "c000c"}


def test_other_config_hw_offload() -> None:
    r = parse("other-config", "02_ovs_vsctl/magnate3-get-other-config-hw-offload.txt")
    assert r.other_config == {"dpdk-init": "true", "hw-offload": "true", "n-handler-threads": "2",
                              "n-revalidator-threads": "2"}


def test_other_config_permission_denied_raises_not_empty() -> None:
    with pytest.raises(ParseError) as ei:
        parse("other-config", "02_ovs_vsctl/insights-get-other-config-permission-denied.txt")
    assert ei.value.line_no == 1 and "database connection failed" in (ei.value.line or "")


# ------------------------------------------------------------------------------ 04 devlink
def test_eswitch_old_encap_enable() -> None:
    r = parse("devlink-eswitch", "04_devlink/eswitch-show-text-old-encap-enable-tripleo.txt")
    assert (r.dev, r.mode, r.inline_mode, r.encap, r.encap_raw) == (
        "pci/0000:06:00.0", "switchdev", "none", True, "enable")


@pytest.mark.parametrize("rel", [
    "04_devlink/port-show-pcivf-controller-external-iproute2-748cbad3.txt",
    "04_devlink/port-show-pcivf-controller-external-jp-iproute2-748cbad3-json.txt",
])
def test_port_pcivf_controller_external(rel: str) -> None:
    (p,) = parse("devlink-port", rel).ports
    assert p.port == "pci/0000:06:00.0/2"
    assert (p.type, p.netdev, p.flavour) == ("eth", "ens2f0c1pf0vf1", "pcivf")
    assert (p.controller, p.pfnum, p.vfnum, p.external, p.splittable) == (1, 0, 1, True, False)
    assert p.function_hw_addr == "00:00:00:00:00:00"


def test_port_physical_and_pcipf_external() -> None:
    a, b = parse("devlink-port", "04_devlink/port-show-physical-pcipf-external-iproute2-fbd4b581.txt").ports
    assert (a.port, a.netdev, a.flavour, a.number, a.splittable) == (
        "pci/0033:01:00.0/196607", "enP51p1s0f0np0", "physical", 0, False)
    assert a.controller is None and a.function_hw_addr is None
    assert (b.port, b.netdev, b.flavour, b.controller, b.pfnum, b.external, b.splittable) == (
        "pci/0033:01:00.0/131072", "eth0", "pcipf", 1, 0, True, False)
    assert b.function_hw_addr == "00:00:00:00:00:00"


def test_port_pcisf_function_state() -> None:
    (p,) = parse("devlink-port", "04_devlink/port-show-pcisf-function-state-jp-iproute2-249465d3-json.txt").ports
    assert (p.netdev, p.flavour, p.controller, p.pfnum, p.sfnum, p.splittable) == (
        "ens2f0npf0sf88", "pcisf", 0, 0, 88, False)
    assert (p.function_hw_addr, p.function_state, p.function_opstate) == ("00:00:00:00:88:88", "inactive", "detached")
    assert p.vfnum is None


@pytest.mark.parametrize("rel", [
    "04_devlink/dev-info-nfp-text-iproute2-05bc89e9.txt",
    "04_devlink/dev-info-nfp-jp-iproute2-05bc89e9-json.txt",
])
def test_dev_info_nfp(rel: str) -> None:
    r = parse("devlink-info", rel)
    d = r.devices["pci/0000:82:00.0"]
    assert (d.driver, d.serial_number) == ("nfp", "16240145")
    assert d.fixed == {"board.id": "AMDA0081-0001", "board.rev": "15", "board.vendor": "SMA",
                       "board.model": "hydrogen"}
    assert d.running == {"fw.mgmt": "010181.010181.0101d4", "fw.cpld": "0x1030000", "fw.app": "abm-d372b6",
                         "fw.undi": "0.0.2", "chip.init": "AMDA-0081-0001  20160318164536"}
    assert d.stored == {k: v for k, v in d.running.items() if k != "fw.cpld"}
    assert "  " in d.running["chip.init"]  # the two spaces survive


# ------------------------------------------------------------------------------ 05 vdpa
@pytest.mark.parametrize("rel,name", [
    ("05_vdpa/mgmtdev-show-vdpasim-iproute2-c2ecc82b.txt", "vdpasim"),
    ("05_vdpa/mgmtdev-show-vdpasim-jp-iproute2-c2ecc82b-json.txt", "vdpasim"),  # top-level key "show"
    ("05_vdpa/mgmtdev-show-mlx5-vf-sriovdp-docs.txt", "pci/0000:65:00.2"),
])
def test_vdpa_mgmtdev(rel: str, name: str) -> None:
    r = parse("vdpa-mgmtdev", rel)
    assert list(r.mgmtdevs) == [name]
    assert r.mgmtdevs[name].supported_classes == ["net"]
    assert r.mgmtdevs[name].max_supported_vqs is None  # the first vdpa tool did not print it


@pytest.mark.parametrize("rel", ["05_vdpa/dev-show-foo2-iproute2-c2ecc82b.txt",
                                 "05_vdpa/dev-show-foo2-jp-iproute2-c2ecc82b-json.txt"])
def test_vdpa_dev_foo2(rel: str) -> None:
    d = parse("vdpa-dev", rel).devs["foo2"]
    assert (d.type, d.mgmtdev, d.vendor_id, d.max_vqs, d.max_vq_size) == ("network", "vdpasim_net", 0, 2, 256)


def test_vdpa_dev_list_mlx5() -> None:
    d = parse("vdpa-dev", "05_vdpa/dev-list-mlx5-vendor5555-sriovdp-docs.txt").devs["vdpa2"]
    assert (d.type, d.mgmtdev, d.vendor_id, d.max_vqs, d.max_vq_size) == ("network", "pci/0000:65:00.2", 5555, 16, 256)


def test_vdpa_config_mtu9000() -> None:
    c = parse("vdpa-config", "05_vdpa/dev-config-show-mtu9000-iproute2-167e33f3.txt").devs["bar"]
    assert (c.mac, c.link, c.link_announce, c.mtu, c.max_vq_pairs) == ("00:11:22:33:44:55", "up", False, 9000, None)


def test_vdpa_config_json_trailing_space_keys() -> None:
    r = parse("vdpa-config", "05_vdpa/dev-config-show-jp-link-key-trailing-space-iproute2-9fe68807-json.txt")
    c = r.devs["vdpa0"]
    assert (c.mac, c.mtu, c.link, c.link_announce) == ("82:4d:e9:5d:d7:e6", 1500, "up", False)
    assert set(PARSERS["vdpa-config"].to_json(r)["devs"]["vdpa0"]) >= {"link", "link_announce"}


# ------------------------------------------------------------------------------ 06 ping
def test_ping_broadcast_duplicates() -> None:
    r = parse("ping", "06_ping/iputils-centos7-broadcast-duplicates.txt")
    assert (r.transmitted, r.received, r.duplicates, r.loss_pct, r.time_ms) == (2, 2, 19, 0.0, 1013)
    assert (r.rtt_min_ms, r.rtt_avg_ms, r.rtt_max_ms, r.rtt_mdev_ms, r.pipe) == (0.586, 504.260, 1276.448, 417.208, 2)
    from vdpalab.parsers.ping import parse_ping_replies
    replies = parse_ping_replies((DATA / "06_ping/iputils-centos7-broadcast-duplicates.txt").read_text())
    assert sum(r.duplicate for r in replies) == 19 and len(replies) == 21


def test_ping_unreachable_errors_no_rtt() -> None:
    r = parse("ping", "06_ping/iputils-ubuntu2204-unreachable-errors.txt")
    assert (r.transmitted, r.received, r.errors, r.loss_pct, r.time_ms, r.pipe) == (3, 0, 3, 100.0, 2049, 3)
    assert r.rtt_avg_ms is None and r.rtt_min_ms is None
    text = (DATA / "06_ping/iputils-ubuntu2204-unreachable-errors.txt").read_text()
    assert text.count("Destination Host Unreachable") == 3 and "From 10.0.0.1" in text


def test_ping_busybox() -> None:
    r = parse("ping", "06_ping/busybox-alpine313-ping-ip.txt")
    assert (r.transmitted, r.received, r.loss_pct, r.time_ms, r.flavour) == (1, 1, 0.0, None, "busybox")
    assert (r.rtt_min_ms, r.rtt_avg_ms, r.rtt_max_ms, r.rtt_mdev_ms) == (1.637, 1.637, 1.637, None)
    from vdpalab.parsers.ping import reply_rtts_ms
    assert reply_rtts_ms((DATA / "06_ping/busybox-alpine313-ping-ip.txt").read_text()) == [1.637]


# ------------------------------------------------------------------------------ 07 iperf
def test_iperf3_39_tcp_omit3() -> None:
    r = parse("iperf3", "07_iperf/iperf3-3.9-J-tcp-10s-omit3-retransmits-json.txt")
    assert (r.version, r.protocol, r.streams, r.error) == ("iperf 3.9", "TCP", 1, None)
    assert r.sent_bps == 131073769.4958882 and r.retransmits == 219 and r.duration_s == 9.999865
    assert r.received_bps == 143806518.57092988 and r.received_bps > r.sent_bps
    assert r.sum_sent.bytes == 163840000 and r.sum_received.bytes == 183733248
    assert r.sum_received.seconds == 10.221136
    assert r.omitted_intervals == 3 and len(r.interval_bps) == 10  # 13 intervals, 3 omitted
    import json
    raw = json.loads((DATA / "07_iperf/iperf3-3.9-J-tcp-10s-omit3-retransmits-json.txt").read_text())
    snd = raw["end"]["streams"][0]["sender"]
    assert (snd["max_rtt"], snd["min_rtt"], snd["mean_rtt"], snd["max_snd_cwnd"]) == (95290, 86395, 87808, 4440832)
    assert raw["start"]["connected"][0]["local_port"] == 38288
    assert (raw["end"]["sender_tcp_congestion"], raw["end"]["receiver_tcp_congestion"]) == ("cubic", "cubic")


def test_iperf3_interrupted_caret_c_crlf_rates_null() -> None:
    path = DATA / "07_iperf/iperf3-3.6-J-tcp-interrupted-error-bytes-mode-json.txt"
    assert path.read_bytes().startswith(b"^C{") and b"\r\n" in path.read_bytes()
    r = PARSERS["iperf3"].parse(path.read_bytes().decode())
    assert r.error == "interrupt - the client has terminated"
    assert r.sent_bps is None and r.received_bps is None  # a failed run reports no rate, not 0
    assert (r.protocol, r.streams, r.version) == ("TCP", 1, "iperf 3.6")
    assert r.sum_sent.bytes == 210922112 and r.sum_sent.bits_per_second == 160287232.32821622
    assert r.sum_sent.retransmits == 0 and r.sum_sent.seconds == 10.527207136154175
    assert r.sum_received.bytes == 0 and r.sum_received.bits_per_second == 0
    assert len(r.interval_bps) + r.omitted_intervals == 11


def test_iperf3_control_socket_closed_is_failure() -> None:
    r = parse("iperf3", "07_iperf/iperf3-3.6-J-tcp-error-control-socket-closed-json.txt")
    assert r.error == "error - control socket has closed unexpectedly"
    assert r.version == "iperf 3.6" and r.protocol is None and r.streams is None
    assert r.sent_bps is None and r.received_bps is None and r.interval_bps == []
    j = PARSERS["iperf3"].to_json(r)
    assert j["sent_bps"] is None and j["error"].startswith("error - control socket")


def test_iperf2_csv_pre219() -> None:
    rows = parse("iperf2-csv", "07_iperf/iperf2-yC-enhanced-e-pre2.19-k8s-csv.txt").rows
    assert len(rows) == 3 and rows[0].timestamp == "20201210141800.884" and rows[0].tz is None
    assert (rows[0].local_host, rows[0].local_port, rows[0].remote_host, rows[0].remote_port, rows[0].id) == (
        "10.244.2.24", 47880, "10.96.114.79", 6789, 3)
    assert [(r.interval_start_s, r.interval_end_s, r.transfer_bytes, r.bandwidth_bps) for r in rows] == [
        (0.0, 1.0, 1677852672, 13422821376), (1.0, 2.0, 1980760064, 15846080512), (2.0, 3.0, 1886650368, 15093202944)]


def test_iperf2_csv_219_plus_15_fields() -> None:
    rows = parse("iperf2-csv", "07_iperf/iperf2-yC-2.19plus-15field-tzprefix-k8s-csv.txt").rows
    assert len(rows) == 8 and rows[0].tz == "+0000" and rows[0].timestamp == "20240908113035.128"
    assert (rows[0].local_host, rows[0].local_port, rows[0].remote_host, rows[0].remote_port, rows[0].id) == (
        "192.168.9.3", 58256, "192.168.9.4", 5001, 1)
    assert (rows[0].transfer_bytes, rows[0].bandwidth_bps) == (5220466748, 41763733984)
    assert (rows[-1].interval_start_s, rows[-1].interval_end_s) == (7.0, 8.0)
    assert (rows[-1].transfer_bytes, rows[-1].bandwidth_bps) == (5242748928, 41941991424)
    assert all(r.extra == [-1, -1, -1, -1, 0, 0] for r in rows)


# ------------------------------------------------------------------------------ 08 host info
def test_meminfo_1g_hugepages() -> None:
    r = parse("meminfo", "08_host_info/meminfo-hugepages-1G-wangjun-tips.txt")
    assert r.fields == {"AnonHugePages": 2048, "ShmemHugePages": 0, "HugePages_Total": 32, "HugePages_Free": 19,
                        "HugePages_Rsvd": 0, "HugePages_Surp": 0, "Hugepagesize": 1048576, "Hugetlb": 33554432}
    assert r.units["Hugepagesize"] == "kB" and r.units["HugePages_Total"] is None


def test_meminfo_2m_5000() -> None:
    r = parse("meminfo", "08_host_info/meminfo-hugepages-2M-5000-osp-lab.txt")
    assert r.fields == {"AnonHugePages": 8192, "HugePages_Total": 5000, "HugePages_Free": 5000, "HugePages_Rsvd": 0,
                        "HugePages_Surp": 0, "Hugepagesize": 2048}
    assert "Hugetlb" not in r.fields and "ShmemHugePages" not in r.fields


def test_meminfo_full() -> None:
    r = parse("meminfo", "08_host_info/proc-meminfo-full-jc-fixture-no-hugepages.txt")
    # SOURCES.md says "53 lines"; the file holds 51 (wc -l), every one parsed
    text = (DATA / "08_host_info/proc-meminfo-full-jc-fixture-no-hugepages.txt").read_text()
    assert len(r.fields) == len(text.splitlines()) == 51
    assert (r.fields["MemTotal"], r.fields["MemFree"]) == (3997272, 2760316)
    assert (r.fields["HugePages_Total"], r.fields["HugePages_Free"], r.fields["Hugepagesize"], r.fields["Hugetlb"]) == (
        0, 0, 2048, 0)
    assert "FileHugePages" in r.fields and "Active(anon)" in r.fields and r.fields["DirectMap1G"] == 2097152


def test_cmdline_osp16() -> None:
    r = parse("cmdline", "08_host_info/proc-cmdline-osp16-dpdk-compute-el8.txt")
    assert len(r.args) == 29
    assert r.args[0] == ("BOOT_IMAGE", "(hd0,msdos2)/boot/vmlinuz-4.18.0-193.29.1.el8_2.x86_64")
    assert r.last("default_hugepagesz") == "1GB" and r.last("hugepagesz") == "1G" and r.last("hugepages") == "32"
    assert r.last("iommu") == "pt" and r.last("intel_iommu") == "on"
    assert len(r.last("isolcpus").split(",")) == 28
    for key in ("skew_tick", "nohz", "nohz_full", "rcu_nocbs", "tuned.non_isolcpus", "intel_pstate", "nosoftlockup"):
        assert len(r.values(key)) == 2, key
    assert r.last("tuned.non_isolcpus") == "00030003" and r.last("intel_pstate") == "disable"
    for flag in ("ro", "rhgb", "quiet", "no_timer_check", "nosoftlockup"):
        assert r.has_flag(flag), flag
    j = PARSERS["cmdline"].to_json(r)
    assert j["args"][2] == ["ro", None]


def test_cmdline_rhel94_rt() -> None:
    r = parse("cmdline", "08_host_info/proc-cmdline-rhel94-rt-vfio.txt")
    assert len(r.args) == 53
    assert r.args[0] == ("BOOT_IMAGE", "(hd0,gpt2)/vmlinuz-5.14.0-427.20.1.el9_4.x86_64+rt")
    assert r.last("isolcpus") == "managed_irq,domain,1-3"
    assert (r.last("iommu"), r.last("intel_iommu"), r.last("default_hugepagesz"), r.last("hugepagesz"),
            r.last("hugepages")) == ("pt", "on", "1G", "1G", "16")
    assert r.last("vfio-pci.ids") == "8086:9a49,8086:a0c8"
    assert r.values("rd.driver.blacklist") == ["i915", "snd_hda_codec_hdmi"]
    assert len(r.values("intel_pstate")) == 2 and len(r.values("nosoftlockup")) == 2
    assert r.last("crashkernel") == "1G-4G:192M,4G-64G:256M,64G-:512M"


def test_ip_link_legacy_vf_mac_format() -> None:
    (link,) = parse("ip-link", "08_host_info/ip-d-link-show-vf-MAC-legacy-wangjun-tips.txt").links
    assert (link.ifindex, link.name, link.mac, link.portname, link.mtu, link.state) == (
        2, "enp216s0f0", "b8:59:9f:ce:2c:ea", "p0", 1500, "UP")
    assert [v.mac for v in link.vfs] == ["0e:4e:1c:6c:cc:ab", "e0:18:f7:1b:8f:d9", "00:48:9d:d1:c9:00",
                                         "60:03:82:7e:1a:d1"]
    assert [v.vf for v in link.vfs] == [0, 1, 2, 3]
    assert all((v.spoofchk, v.link_state, v.trust, v.query_rss) == (False, "auto", False, False) for v in link.vfs)


# ------------------------------------------------------------------------------ 09 kernel logs
def test_mail_wrapped_dmesg_needs_explicit_unwrap() -> None:
    raw = (DATA / "09_kernel_logs/dmesg-mlx5_vdpa-reset-mr-leak-MAILWRAPPED-lkml2024.txt").read_text()
    wrapped = PARSERS["kernel-log"].parse(raw)  # the wrapped halves are kept, not guessed at
    assert wrapped.unparsed[0].line == 2 and wrapped.unparsed[0].text == raw.split("\n")[1]
    r = PARSERS["kernel-log"].parse(unwrap_mail_wrapped(raw))
    # SOURCES.md says "12 records" but its own breakdown (3+3+2+2+1) and the file's 11 timestamps say 11
    assert len(r.records) == 11 == raw.count("\n[") + 1
    assert all(rec.message.startswith("mlx5_core 0000:0d:00.2:") for rec in r.records)
    resets = r.events("device_reset")
    assert [(e.time, e.pid, e.function) for e in resets] == [
        ("1406.187977", 8506, "mlx5_vdpa_compat_reset"), ("1406.189221", 8506, "mlx5_vdpa_compat_reset"),
        ("1512.929854", 8565, "mlx5_vdpa_compat_reset")]
    leaks = r.events("mr_leak")
    assert len(leaks) == 3 and all("mkey: 0x40000000, refcount: 2" in e.message for e in leaks)
    timeouts = r.events("cmd_timeout")
    assert len(timeouts) == 2 and all("MODIFY_GENERAL_OBJECT(0xa01)" in e.message and e.pid == 428 for e in timeouts)
    assert "cmd[13]" in timeouts[0].message and "cmd[12]" in timeouts[1].message
    vq = r.events("vq_modify_error")
    assert len(vq) == 2 and vq[0].message.endswith("err: 0") and vq[1].message.endswith("err: -110")
    (resume,) = r.events("resume_failed")
    assert resume.function == "mlx5_vdpa_set_status" and "failed to resume VQs" in resume.message
    assert {e.pci for e in r.vdpa_events} == {"0000:0d:00.2"} and len(r.vdpa_events) == 11


# ------------------------------------------------------------------------------ 10 libvirt/qemu
def test_libvirt_domain_xml() -> None:
    d = parse("libvirt-xml", "10_libvirt_qemu/libvirt-tests-net-vdpa-domain-xml.txt")
    assert (d.domain_type, d.name, d.uuid, d.memory_kib) == (
        "qemu", "QEMUGuest1", "c7a5fdbd-edaf-9455-926a-d65c16db1809", 219136)
    (i,) = d.interfaces
    assert (i.type, i.mac, i.source_dev, i.model, i.alias) == ("vdpa", "52:54:00:95:db:c0", "/dev/vhost-vdpa-0",
                                                              None, None)


def test_qemu_args_json_netdev() -> None:
    q = parse("qemu-cmdline", "10_libvirt_qemu/libvirt-tests-net-vdpa-qemu-args-json-netdev-args.txt")
    assert q.binary == "/usr/bin/qemu-system-x86_64" and q.name == "QEMUGuest1"
    assert q.env["LC_ALL"] == "C" and len(q.env) == 8
    assert ("-add-fd", "set=0,fd=XXXXXXX,opaque=net0-vdpa") in q.options
    (n,) = q.netdevs
    assert (n.type, n.vhostdev, n.id) == ("vhost-vdpa", "/dev/fdset/0", "hostnet0")
    nic = [d for d in q.devices if d.driver == "virtio-net-pci"]
    assert len(nic) == 1
    assert (nic[0].netdev, nic[0].id, nic[0].mac, nic[0].options["bus"], nic[0].options["addr"]) == (
        "hostnet0", "net0", "52:54:00:95:db:c0", "pci.0", "0x2")
    assert q.memory == "size=219136k" and q.memory_mib == 214


def test_qemu_args_legacy_keyval() -> None:
    q = parse("qemu-cmdline", "10_libvirt_qemu/libvirt-tests-net-vdpa-qemu-args-legacy-keyval-args.txt")
    assert q.binary == "/usr/bin/qemu-system-i386"
    assert ("-add-fd", "set=0,fd=1732,opaque=/dev/vhost-vdpa-0") in q.options
    assert ("-no-acpi", None) in q.options and q.memory == "214" and q.memory_mib == 214
    (n,) = q.netdevs
    assert (n.type, n.vhostdev, n.id) == ("vhost-vdpa", "/dev/fdset/0", "hostnet0")
    nic = next(d for d in q.devices if d.driver == "virtio-net-pci")
    assert (nic.netdev, nic.id, nic.mac, nic.options["bus"], nic.options["addr"]) == (
        "hostnet0", "net0", "52:54:00:95:db:c0", "pci.0", "0x2")


# ------------------------------------------------------------------------------ 11 found by search
F = "11_found_by_search/"


def test_dump_flows_offloaded_tc_ovs214() -> None:
    (f,) = parse("dump-flows", F + "ovs-dpctl-dump-flows-m-egrep-offload-tc-ovs2.14-wangjun.txt").flows
    assert (f.ufid, f.packets, f.bytes, f.used, f.used_s, f.offloaded, f.dp, f.actions) == (
        "9b0596d9-d3c6-4c88-aadb-087a81690c22", 54114480, 81929308428, "0.520s", 0.52, True, "tc", "enp216s0f0_0")
    assert f.match.startswith("skb_priority(0/0),") and f.match.endswith("frag=no)")
    assert "in_port(enp216s0f0)" in f.match


def test_dump_flows_type_offloaded_no_m() -> None:
    (f,) = parse("dump-flows", F + "ovs-dpctl-dump-flows-type-offloaded-ovs2.14-wangjun.txt").flows
    assert (f.packets, f.bytes, f.used_s, f.actions, f.offloaded, f.dp, f.ufid) == (
        136600676, 206813409172, 0.17, "4", None, None, None)
    assert f.match == "recirc_id(0),in_port(6),eth(src=4a:9a:3a:69:36:5c,dst=0e:4e:1c:6c:cc:ab),eth_type(0x0800)," \
                      "ipv4(frag=no)"


def test_dump_flows_ct_nat_actions_keep_nested_commas() -> None:
    flows = parse("dump-flows", F + "ovs-dpctl-dump-flows-m-type-offloaded-ct-nat-sriov-operator.txt").flows
    assert len(flows) == 4 and all(f.offloaded is True and f.dp == "tc" for f in flows)
    assert [f.actions for f in flows] == ["ct(zone=15,nat),recirc(0x440)", "ct(zone=15,nat),recirc(0x442)", "drop",
                                          "ct(zone=14,nat),recirc(0x43e)"]
    assert flows[0].match.endswith("tcp(src=0/0,dst=57426)") and flows[2].packets == 0
    assert flows[3].bytes == 3049431372


def test_dump_flows_dp_tc_without_offloaded_field_is_null() -> None:
    flows = parse("dump-flows", F + "ovs-dpctl-dump-flows-m-type-non-offloaded-dp-tc-cx4lx.txt").flows
    assert len(flows) == 9 and all(f.offloaded is None and f.dp == "tc" for f in flows)
    assert flows[4].used == "never" and flows[4].used_s is None
    assert flows[2].actions == "ovs-sriov,enp1s0f0npf0vf0,enp1s0f1npf1vf0"


def test_ethtool_i_found() -> None:
    a = parse("ethtool-i", F + "ethtool-i-mlx5_core-ofed24.10-cx4lx.txt")
    assert (a.driver, a.version, a.firmware_version, a.expansion_rom_version, a.bus_info) == (
        "mlx5_core", "24.10-3.2.5", "14.32.1010 (HP_2420110034)", None, "0000:01:00.0")
    assert (a.supports_statistics, a.supports_test, a.supports_eeprom_access, a.supports_register_dump,
            a.supports_priv_flags) == (True, True, False, False, True)
    b = parse("ethtool-i", F + "ethtool-i-virtio_net-vdpa-bus-sriov-operator.txt")
    assert (b.driver, b.version, b.bus_info, b.firmware_version, b.supports_test) == (
        "virtio_net", "1.0.0", "vdpa:0000:65:00.4", None, False)


def test_eswitch_new_encap_mode_basic() -> None:
    r = parse("devlink-eswitch", F + "devlink-eswitch-show-encap-mode-basic-cx4lx.txt")
    assert (r.dev, r.mode, r.inline_mode, r.encap, r.encap_raw) == ("pci/0000:01:00.0", "switchdev", "link", True,
                                                                     "basic")


def test_ip_link_new_vf_link_ether_format() -> None:
    (link,) = parse("ip-link", F + "ip-d-link-show-vf-link-ether-new-format-cx4lx.txt").links
    assert (link.name, link.mac, link.portname, link.parentdev) == (
        "enp1s0f0np0", "94:40:c9:c3:67:fa", "p0", "0000:01:00.0")
    (vf,) = link.vfs
    assert (vf.vf, vf.mac, vf.spoofchk, vf.link_state, vf.trust, vf.query_rss) == (
        0, "00:00:00:00:00:00", False, "disable", False, False)


def test_vdpa_mgmtdev_with_features() -> None:
    m = parse("vdpa-mgmtdev", F + "vdpa-mgmtdev-show-vdpasim_net-features-20220922024305.txt").mgmtdevs["vdpasim_net"]
    assert m.max_supported_vqs == 3 and m.dev_features == [
        "MTU", "MAC", "CTRL_VQ", "CTRL_MAC_ADDR", "ANY_LAYOUT", "VERSION_1", "ACCESS_PLATFORM"]
    i = parse("vdpa-mgmtdev", F + "vdpa-mgmtdev-show-ifcvf-20221125145724.txt").mgmtdevs["pci/0000:01:00.5"]
    assert (i.supported_classes, i.max_supported_vqs) == (["net"], 9) and "MQ" in i.dev_features


def test_vdpa_config_negotiated_features_and_max_vq_pairs() -> None:
    c = parse("vdpa-config", F + "vdpa-dev-config-show-negotiated-features-20220922024305.txt").devs["dev1"]
    assert (c.mac, c.link, c.link_announce, c.mtu) == ("00:00:00:00:00:00", "up", False, 1500)
    assert c.negotiated_features == ["MTU", "MAC", "CTRL_VQ", "CTRL_MAC_ADDR", "VERSION_1", "ACCESS_PLATFORM"]
    d = parse("vdpa-config", F + "vdpa-dev-config-show-max-vq-pairs-ifcvf-20221125145724.txt").devs["vdpa0"]
    assert (d.mac, d.max_vq_pairs, d.mtu) == ("00:e8:ca:11:be:05", 4, 1500)
    assert d.negotiated_features == ["MRG_RXBUF", "CTRL_VQ", "MQ", "VERSION_1", "ACCESS_PLATFORM"]


@pytest.mark.parametrize("rel,qtype,qidx,rx,done", [
    ("vdpa-dev-vstats-show-qidx1-iproute2-20220615034616.txt", "tx", None, 321812, 321812),
    ("vdpa-dev-vstats-show-qidx16-iproute2-20220615034616.txt", "control_vq", None, 17, 17),
    ("vdpa-dev-vstats-show-qidx0-j-iproute2-20220615034616-json.txt", "rx", None, 114855, 114617),
    ("vdpa-dev-vstats-show-qidx0-jp-iproute2-20220615034616-json.txt", "rx", None, 114855, 114617),
    ("vdpa-dev-vstats-show-qidx32-kernel-20220412130402.txt", "control_vq", 32, 62, 62),
    ("vdpa-dev-vstats-show-qidx0-jp-name-value-kernel-20220412130402-json.txt", "rx", 0, 417776, 417548),
])
def test_vdpa_vstats(rel: str, qtype: str, qidx: int | None, rx: int, done: int) -> None:
    s = parse("vdpa-vstats", F + rel).devs["vdpa-a"]
    assert (s.queue_type, s.queue_index, s.received_desc, s.completed_desc) == (qtype, qidx, rx, done)


def test_iperf3_31_udp_only_end_sum() -> None:
    r = parse("iperf3", F + "iperf3-3.1.3-J-udp-end-sum-only-pscheduler-json.txt")
    assert (r.version, r.protocol, r.streams, r.error) == ("iperf 3.1.3", "UDP", 1, None)
    assert r.sum_sent is None and r.sum_received is None
    assert (r.sent_bps, r.received_bps) == (1048481.633493, None)
    assert (r.jitter_ms, r.lost_packets, r.packets, r.lost_percent, r.duration_s) == (2735.461, 0, 159, 0.0, 10.0009)
    assert len(r.interval_bps) == 10 and r.interval_bps[0] == 1047170.885411


def test_journal_json_spaced_format() -> None:
    r = parse("kernel-log", F + "journalctl-o-json-kernel-ext4-walle.txt")
    assert len(r.records) == 2
    a = r.records[0]
    assert (a.host, a.ident, a.time) == ("vla2-6758.search.yandex.net", "kernel", "2020-09-08T05:10:04.928338+00:00")
    assert a.mono_s == 108101.13641 and a.message.startswith("EXT4-fs error (device sdc2)")
    assert r.vdpa_events == []


def test_every_recorded_file_is_exercised_here() -> None:
    """Each sample (and each emulated recording, in its own test file) is named by some test.

    The virsh recordings (12_virsh_test_driver) are exercised by test_guests_libvirt.py, the vDPA VM's
    (11_vdpa_vm) by test_parsers_realworld.py, the emulated-vdpa lab VM's (13_vdpa_lab_vm) by test_vdpa_lab.py, the
    OVSDB JSON lists of both emulated labs (13_ovsdb_json) by test_parsers_ovsdb.py."""
    here = "".join((Path(__file__).parent / name).read_text()
                   for name in (Path(__file__).name, "test_guests_libvirt.py", "test_parsers_realworld.py",
                                "test_vdpa_lab.py", "test_parsers_ovsdb.py"))
    emulated = (Path(__file__).parent / "test_parsers_emulated.py").read_text()
    missing = [str(p.relative_to(DATA)) for p in DATA.rglob("*.txt") if p.name not in here]
    assert missing == []
    emu_dir = DATA.parent / "emulated"
    skipped = {"ovs-version.txt"}  # a version banner, kept for the record
    assert [p.name for p in emu_dir.glob("*.txt") if p.name not in emulated and p.name not in skipped] == []


# --- 13_json_netns_lab: the JSON the live reads use, next to the text, from this machine's tools in the lab ---
J = DATA / "13_json_netns_lab"


def jtext(name: str) -> str:
    return (J / name).read_text(encoding="utf-8")


def test_ip_link_json_and_text_of_the_same_guest_interface_agree() -> None:
    from vdpalab.parsers.iplink import parse_ip_link

    js = parse_ip_link(jtext("guest-ip-j-link-show-eth0-json.txt")).by_name("eth0")
    tx = parse_ip_link(jtext("guest-ip-link-show-eth0.txt")).by_name("eth0")
    detailed = parse_ip_link(jtext("guest-ip-j-d-link-show-eth0-json.txt")).by_name("eth0")
    assert js is not None and tx is not None and detailed is not None
    assert (js.mac, js.mtu, js.state, js.flags) == (tx.mac, tx.mtu, tx.state, tx.flags)
    assert (js.mac, js.mtu) == ("00:11:22:33:44:00", 9000) == (detailed.mac, detailed.mtu)


def test_ip_s_counters_json_and_text_agree_and_mirror_the_veth_peer() -> None:
    from vdpalab.parsers.iplink import parse_ip_link

    js = parse_ip_link(jtext("guest-ip-j-s-link-show-eth0-json.txt")).links[0].stats
    tx = parse_ip_link(jtext("guest-ip-s-link-show-eth0.txt")).links[0].stats
    peer = parse_ip_link(jtext("host-ip-j-s-link-show-ens2f0_0-json.txt")).by_name("ens2f0_0")
    assert js is not None and tx is not None and peer is not None and peer.stats is not None
    for side in ("rx", "tx"):
        for key in ("bytes", "packets", "errors", "dropped"):
            assert js.__dict__[side][key] == tx.__dict__[side][key], (side, key)
    assert js.rx["packets"] >= 3  # the three pings' replies at least
    # the guest's eth0 and the host's ens2f0_0 are the two ends of one veth: what one sends, the other gets
    assert (js.rx["bytes"], js.tx["bytes"]) == (peer.stats.tx["bytes"], peer.stats.rx["bytes"])
    host = parse_ip_link(jtext("host-ip-j-link-show-json.txt"))  # the lab host's namespace: uplinks and representors
    assert {"ens2f0", "ens2f1", "ens2f0_0", "ens2f1_0"} <= {lk.name for lk in host.links}
    assert all(lk.stats is None for lk in host.links)  # no -s, no counters


def test_ip_addr_json_text_oneline_and_busybox_agree() -> None:
    from vdpalab.parsers.iplink import parse_ip_addr

    full_j = parse_ip_addr(jtext("guest-ip-j-addr-show-json.txt"))
    full_t = parse_ip_addr(jtext("guest-ip-addr-show.txt"))
    four_j = parse_ip_addr(jtext("guest-ip-j-4-addr-show-eth0-json.txt"))
    four_o = parse_ip_addr(jtext("guest-ip-4-o-addr-show-eth0.txt"))
    busybox = parse_ip_addr(jtext("guest-busybox-ip-addr-show-eth0.txt"))
    for parsed in (full_j, full_t, four_j, four_o, busybox):
        assert parsed.cidrs("eth0") == ("192.168.30.153/24",) and parsed.unparsed == []
    assert full_j.cidrs("eth0", "inet6") == full_t.cidrs("eth0", "inet6") == busybox.cidrs("eth0", "inet6")
    assert full_j.cidrs("lo") == full_t.cidrs("lo") == ("127.0.0.1/8",)
    assert [a.scope for a in full_j.by_name("eth0").addresses] == [a.scope for a in full_t.by_name("eth0").addresses]


def test_ip_neigh_json_and_text_agree() -> None:
    from vdpalab.parsers.iplink import parse_ip_neigh

    for js_name, tx_name in (("guest-ip-j-neigh-show-json.txt", "guest-ip-neigh-show.txt"),
                             ("machine-ip-neigh-show-json.txt", "machine-ip-neigh-show.txt")):
        js, tx = parse_ip_neigh(jtext(js_name)), parse_ip_neigh(jtext(tx_name))
        assert js.neighbours == tx.neighbours and tx.unparsed == []
    guest = parse_ip_neigh(jtext("guest-ip-j-neigh-show-json.txt")).neighbours
    assert [(n.dst, n.lladdr, n.states) for n in guest] == [("192.168.30.159", "00:11:22:33:44:10", ["REACHABLE"])]
    machine = parse_ip_neigh(jtext("machine-ip-neigh-show.txt")).neighbours
    assert any(n.lladdr is None and n.states == ["FAILED"] for n in machine)  # an unanswered neighbour


def test_ethtool_json_k_equals_its_text() -> None:
    from vdpalab.parsers.ethtool import parse_ethtool_k

    js = parse_ethtool_k(jtext("guest-ethtool-json-k-eth0-json.txt"))
    tx = parse_ethtool_k(jtext("guest-ethtool-k-eth0.txt"))
    assert js.interface == tx.interface == "eth0" and set(js.features) == set(tx.features)
    assert {k: (f.on, f.fixed, f.requested) for k, f in js.features.items()} == {
        k: (f.on, f.fixed, f.requested) for k, f in tx.features.items()}
    host = parse_ethtool_k(jtext("host-ethtool-json-k-ens2f0-json.txt"))
    assert host.interface == "ens2f0" and host.is_on("hw-tc-offload") is not None


def test_a_rejected_json_option_is_told_from_a_real_failure() -> None:
    """The recorded refusals of BusyBox ip, ethtool (-i has no JSON) and OVS 3.1's ovs-appctl (--format came in
    3.3) make the live reads fall back to text; a missing device does not."""
    from vdpalab.command_result import CommandResult
    from vdpalab.hosts.base import json_option_rejected

    versions = jtext("host-tool-versions.txt") + jtext("host-ovs-vsctl-version.txt")
    assert "iproute2-6.1.0" in versions and "ethtool version 6.1" in versions and "3.1.0" in versions
    for name in ("guest-busybox-ip-j-rejected.txt", "guest-ethtool-json-i-rejected.txt",
                 "host-ovs-appctl-format-json-rejected.txt"):
        assert json_option_rejected(CommandResult("h", "x", 1, "", jtext(name), 0.0, 0.0)), name
    missing = CommandResult("h", "ip -j link show dev eth9", 1, "", "Device \"eth9\" does not exist.\n", 0.0, 0.0)
    assert not json_option_rejected(missing)
    assert not json_option_rejected(CommandResult("h", "x", 0, "[]", "", 0.0, 0.0))

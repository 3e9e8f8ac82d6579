"""The emulated-vdpa lab's pieces without booting it: its lab schema (mgmtdev, backend, layer order), the vdpa
layer's plan for VDUSE devices, the vdpa-netns guests' commands, the image's cache key, and the vDPA bus
evidence judged on real outputs recorded in the lab VM (selftest/data/recorded/13_vdpa_lab_vm)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vdpalab.bringup import BringUp
from vdpalab.config import load_lab, parse_lab
from vdpalab.emulated import vm_image
from vdpalab.errors import LabConfigError
from vdpalab.evidence import BusFacts, PortFacts, judge_bus_evidence, port_rx_delta
from vdpalab.guests import GuestRun, driver_for
from vdpalab.layers import LAYER_ORDER, Guests, LayerContext, layer_order
from vdpalab.parsers import PARSERS
from vdpalab.parsers.ovs import parse_ovsdb_map
from vdpalab.parsers.sysfs import parse_ls_l
from vdpalab.parsers.vdpa import parse_vdpa_config, parse_vdpa_dev, parse_vdpa_mgmtdev
from vdpalab.testing.scripted import ScriptedHost

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).parent.parent
LAB = ROOT / "labs" / "emulated-vdpa.toml"
REC = Path(__file__).parent / "data" / "recorded" / "13_vdpa_lab_vm"


def rec(name: str) -> str:
    return (REC / name).read_text()


def ovs_map(name: str) -> dict[str, str]:
    text = rec(name).strip()
    return parse_ovsdb_map("ovs-vsctl get", text, 1, text)


# ----------------------------------------------------------------------------- real outputs, parsed


def test_recorded_vdpa_outputs_parse() -> None:
    devs = parse_vdpa_dev(rec("vdpa-j-dev-show-two-vduse-json.txt")).devs
    assert {n: (d.type, d.mgmtdev, d.max_vqs) for n, d in devs.items()} == {
        "vdpa0": ("network", "vduse", 2), "vdpa1": ("network", "vduse", 2)}
    conf = parse_vdpa_config(rec("vdpa-j-dev-config-show-vduse-virtio_vdpa-json.txt")).devs
    assert "VERSION_1" in conf["vdpa0"].negotiated_features and "ACCESS_PLATFORM" in conf["vdpa1"].negotiated_features
    assert conf["vdpa0"].mac is None  # VDUSE devices show no mac
    mgmt = parse_vdpa_mgmtdev(rec("vdpa-j-mgmtdev-show-vduse-json.txt")).mgmtdevs
    assert mgmt["vduse"].supported_classes == ["net", "block"]
    links = {e.name: e.target for e in parse_ls_l(rec("ls-Fal-sys-bus-vdpa-drivers-virtio_vdpa.txt")).entries}
    assert links["vdpa0"] == "../../../../devices/virtual/vduse/vdpa0/vdpa0/"
    status = ovs_map("ovs-vsctl-get-interface-vduse-status.txt")
    assert (status["socket"], status["status"], status["mode"]) == ("/dev/vduse/vdpa0", "connected", "client")
    stats = ovs_map("ovs-vsctl-get-interface-vduse-statistics.txt")
    assert int(stats["rx_packets"]) >= 20 and int(stats["tx_packets"]) >= 20 and "rx_q0_good_packets" in stats
    assert "Operation not supported" in rec("vdpa-dev-vstats-vduse-not-supported.txt")


def test_recorded_ovs_show_has_the_vduse_ports() -> None:
    from vdpalab.parsers.ovs import parse_vsctl_show

    show = parse_vsctl_show(rec("ovs-3.5-vsctl-show-vduse-lab.txt"))
    wanted = (("br30-ovs", "ens2f0", "ens2f0_0", "vdpa0"), ("br31-ovs", "ens2f1", "ens2f1_0", "vdpa1"))
    for bridge, uplink, rep, dev in wanted:
        ifaces = {n: i for p in show.bridges[bridge].ports.values() for n, i in p.interfaces.items()}
        assert show.bridges[bridge].datapath_type == "netdev"
        assert (ifaces[uplink].type, ifaces[rep].type) == ("dpdk", "dpdkvhostuserclient")
        assert ifaces[rep].options == {"vhost-server-path": f"/dev/vduse/{dev}"}


def test_recorded_vm_dmesg_has_no_mlx5_evidence_and_keeps_every_line() -> None:
    log = PARSERS["kernel-log"].parse(rec("dmesg-vdpa-lab-vm-6.12.txt"))
    assert log.records and not log.events("device_reset")  # VDUSE logs nothing: the bus evidence must carry it
    assert any("virtio_net" in r.message for r in log.records)


# ----------------------------------------------------------------------------- evidence judged on them


def facts(**change: object) -> BusFacts:
    conf = parse_vdpa_config(rec("vdpa-j-dev-config-show-vduse-virtio_vdpa-json.txt")).devs["vdpa0"]
    base = {"device": "vdpa0", "mgmtdev": "vduse", "driver": "virtio_vdpa",
            "negotiated_features": tuple(conf.negotiated_features)}
    return BusFacts(**{**base, **change})  # type: ignore[arg-type]


def ports(received: int, status: str | None = None) -> tuple[PortFacts, PortFacts]:
    stat = ovs_map("ovs-vsctl-get-interface-vduse-status.txt")
    if status is not None:
        stat = {**stat, "status": status}
    recorded = ovs_map("ovs-vsctl-get-interface-vduse-statistics.txt")
    before = {**recorded, "rx_packets": "1000"}
    after = {**recorded, "rx_packets": str(1000 + received)}
    return PortFacts("ens2f0_0", stat, before), PortFacts("ens2f0_0", stat, after)


def judge(bus: BusFacts, received: int = 600, sent: int | None = 600, status: str | None = None):  # type: ignore[no-untyped-def]
    before, after = ports(received, status)
    return judge_bus_evidence("vdpa0", mgmtdev="vduse", driver="virtio_vdpa", bus=bus, port_before=before,
                              port_after=after, guest_sent=sent)


def test_bus_evidence_holds_on_the_recorded_lab() -> None:
    ev = judge(facts())
    assert ev.ok and ev.held == ["vdpa-bus", "ovs-port"], ev.summary()
    assert "status connected" in ev.summary()


@pytest.mark.parametrize(
    ("change", "received", "sent", "status", "why"),
    [
        ({"mgmtdev": "pci/0000:07:00.2"}, 600, 600, None, "on mgmtdev pci/0000:07:00.2, the lab wants vduse"),
        ({"driver": "vhost_vdpa"}, 600, 600, None, "bound to vhost_vdpa, the lab wants virtio_vdpa"),
        ({"driver": None}, 600, 600, None, "bound to no driver"),
        ({"negotiated_features": ()}, 600, 600, None, "no negotiated features"),
        ({}, 599, 600, None, "received 599 packets, fewer than the 600 the guest sent"),
        ({}, 600, 0, None, "unavailable"),
        ({}, 600, 600, "disconnected", "status is disconnected, not connected"),
    ],
)
def test_bus_evidence_fails_with_its_reason(change: dict, received: int, sent: int, status: str | None,  # type: ignore[type-arg]
                                            why: str) -> None:
    ev = judge(facts(**change), received, sent, status)
    assert not ev.ok
    assert why in ev.summary()


def test_port_rx_delta_is_the_recorded_counter_difference_or_none() -> None:
    before, after = ports(600)
    assert port_rx_delta(before, after) == 600
    lost = PortFacts("ens2f0_0", after.status, {k: v for k, v in after.statistics.items() if k != "rx_packets"})
    assert port_rx_delta(before, lost) is None  # a read without the counter is no delta, not zero


def test_bus_evidence_alone_is_not_enough() -> None:
    ev = judge_bus_evidence("vdpa0", mgmtdev="vduse", driver="virtio_vdpa", bus=facts(), port_before=None,
                            port_after=None, guest_sent=None)
    assert ev.held == ["vdpa-bus"] and not ev.ok


# ----------------------------------------------------------------------------- the lab schema


def test_emulated_vdpa_lab_loads_and_orders_vdpa_after_ovs() -> None:
    lab = load_lab(LAB)
    assert [d.management_device for d in lab.vdpa.devices] == ["vduse", "vduse"]
    order = layer_order(lab)
    assert order.index("vdpa") == order.index("ovs") + 1 and set(order) == set(LAYER_ORDER)
    seed = load_lab(ROOT / "labs" / "cx6dx-qemu.toml")
    assert layer_order(seed) == LAYER_ORDER
    assert [d.management_device for d in seed.vdpa.devices] == ["pci/0000:07:00.2", "pci/0000:07:01.2"]


def _data(text: str) -> dict:  # type: ignore[type-arg]
    import tomllib

    return tomllib.loads(text)


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (('"/dev/vduse/vdpa1"', '"/dev/vduse/other"'), "vdpa.devices[1].name",
         'no OVS port has vhost-server-path = "/dev/vduse/vdpa1"'),
        (('{ name = "vdpa0", mgmtdev = "vduse" }', '{ name = "vdpa0", mgmtdev = "pci/0000:07:00.2" }'),
         "vdpa.devices[0].mgmtdev", "every device's mgmtdev is vduse"),
        (('{ name = "vdpa0", mgmtdev = "vduse" }', '{ name = "vdpa0" }'), "vdpa.devices[0].mgmtdev",
         "give mgmtdev"),
        (('{ name = "vdpa0", mgmtdev = "vduse" }', '{ name = "vdpa0", mgmtdev = "VDUSE!" }'),
         "vdpa.devices[0].mgmtdev", "is not a vdpa management device"),
        (('flavour = "vdpa-vm"', 'flavour = "qemu"'), "emulated.vm", "exactly with flavour vdpa-vm"),
        (('sshd_port = 2153\n', ''), "guest[0].sshd_port", "required key is missing"),
    ],
)
def test_emulated_vdpa_lab_problems_are_one_line(edit: tuple[str, str], key: str, problem: str) -> None:
    text = LAB.read_text()
    assert edit[0] in text
    with pytest.raises(LabConfigError) as ei:
        parse_lab(_data(text.replace(edit[0], edit[1], 1)), source=str(LAB), display="lab.toml")
    lines = str(ei.value).splitlines()
    assert any(f"{key}: " in line and problem in line for line in lines), lines


def test_hardware_lab_can_name_a_mgmtdev() -> None:
    text = (ROOT / "labs" / "cx6dx-qemu.toml").read_text()
    lab = load_lab(ROOT / "labs" / "cx6dx-qemu.toml")
    data = _data(text)
    data["vdpa"]["create"] = "vdpa-dev-add"
    data["vdpa"]["devices"][0]["mgmtdev"] = "pci/0000:07:00.2"
    assert parse_lab(data, source=lab.source).vdpa.devices[0].management_device == "pci/0000:07:00.2"
    data["vdpa"]["devices"][0]["mgmtdev"] = "pci/0000:07:01.2"
    with pytest.raises(LabConfigError, match=r"vdpa\.devices\[0\]\.mgmtdev: pci/0000:07:01\.2 is not the VF"):
        parse_lab(data, source=lab.source)


# ----------------------------------------------------------------------------- plans (nothing is run)


def test_offline_plan_creates_vduse_devices_after_ovs_and_moves_netdevs_into_namespaces(tmp_path: Path) -> None:
    lab = load_lab(LAB)
    plans = BringUp(lab, {}, tmp_path).plan(offline=True)
    assert list(plans).index("vdpa") > list(plans).index("ovs")
    ovs = [c.command for c in plans["ovs"]]
    assert any("vhost-server-path=/dev/vduse/vdpa0" in c for c in ovs)
    vdpa = [c.command for c in plans["vdpa"]]
    assert vdpa.index("vdpa dev add name vdpa0 mgmtdev vduse") < vdpa.index(
        "sh -c 'echo virtio_vdpa > /sys/bus/vdpa/devices/vdpa0/driver_override'") < vdpa.index("modprobe virtio_vdpa")
    assert any("/sys/bus/vdpa/drivers/virtio_vdpa/bind" in c for c in vdpa)
    guests = [(c.host, c.command) for c in plans["guests"]]
    assert ("host", "ip netns add c77g153") in guests
    move = next(c for h, c in guests if "netns c77g153" in c and "/sys/bus/vdpa/devices/vdpa0/virtio" in c)
    assert "name eth1" in move
    sshd = next(c for h, c in guests if c.startswith("/usr/sbin/sshd") and "2159" in c)
    assert "ForceCommand=ip netns exec c77g159" in sshd
    assert ("c77g153", "ip link set dev eth1 address 00:11:22:33:44:00") in guests
    assert ("c77g159", "ip addr replace 192.168.30.159/24 dev eth1") in guests


def test_a_vdpa_netns_guest_stops_what_it_started_and_forgets_it(tmp_path: Path) -> None:
    """start records in the guests layer's journal, stop runs the stop commands and drops that entry (a second
    stop does nothing): what the teardown of a real run does, on a scripted host."""
    lab = load_lab(LAB)
    host = ScriptedHost.from_pairs([
        ("ip netns add c77g153", ""), ("ip -n c77g153 link set lo up", ""),
        (re.compile(r"sh -c .*/sys/bus/vdpa/devices/vdpa0/virtio\*/net/.*netns c77g153.*name eth1.*"), ""),
        (re.compile(r"/usr/sbin/sshd -o Port=2153 .*ForceCommand=.*"), ""),
        (re.compile(r"sh -c .*/run/vdpalab-sshd-c77g153\.pid.*kill.*"), ""),
        (re.compile(r"sh -c .*ip netns pids c77g153.*ip netns del c77g153.*"), ""),
    ])  # fmt: skip
    layer = Guests(LayerContext(lab=lab, hosts={"host": host}, state_dir=tmp_path))
    driver = driver_for(lab.guest[0], layer)
    assert driver.start(driver.fresh()) is True
    assert driver.started_here()
    driver.stop()
    host.assert_done()
    assert not driver.started_here() and "started:c77g153" not in layer.journal
    assert driver.stop_plan() == []
    assert driver.start(GuestRun(True)) is False  # running already: nothing to start


# ----------------------------------------------------------------------------- the image


def test_image_cache_key_follows_the_package_list() -> None:
    base = vm_image.input_hash("trixie", vm_image.DEFAULT_MIRROR, vm_image.BASE_PACKAGES)
    assert base == vm_image.input_hash("trixie", vm_image.DEFAULT_MIRROR, tuple(reversed(vm_image.BASE_PACKAGES)))
    more = vm_image.input_hash("trixie", vm_image.DEFAULT_MIRROR, (*vm_image.BASE_PACKAGES, "qemu-system-x86"))
    assert more != base
    assert vm_image.input_hash("bookworm", vm_image.DEFAULT_MIRROR, vm_image.BASE_PACKAGES) != base


def test_boot_script_starts_what_a_lab_host_has() -> None:
    script = vm_image.boot_script()
    for needed in ("/usr/sbin/sshd", "modprobe vduse", "hugetlbfs", vm_image.READY_MARKER, "vdpalab-ovs start"):
        assert needed in script
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIArcncWBvTgSKKA+Ysbjk8uN/IPkBAUUTkSV94CFYCls test"
    arg = vm_image.authkey_arg(key)
    assert re.fullmatch(r"vdpalab\.authkey=[A-Za-z0-9+/=]+", arg)

"""Each layer's decisions on their own: what it plans from a state, what it journals, what down undoes."""

from __future__ import annotations

import json
import shlex
from io import StringIO
from pathlib import Path

import pytest

from vdpalab.commands import plan as plan_cmd
from vdpalab.config import Lab, load_lab
from vdpalab.errors import LayerError
from vdpalab.layers import (
    Guests,
    Hugepages,
    LayerContext,
    LayerStatus,
    Ovs,
    Sriov,
    Switchdev,
    Vdpa,
    _text,
    run_layer,
)
from vdpalab.layers.hugepages import HugepagesState
from vdpalab.layers.ovs import OvsState, kv_arg
from vdpalab.layers.sriov import PfVfState
from vdpalab.layers.vdpa import bind_command
from vdpalab.parsers.libvirt import parse_libvirt_xml
from vdpalab.parsers.ovs import VSCTL_STATE_ARGV, parse_vsctl_show, parse_vsctl_state
from vdpalab.testing.scripted import ScriptedHost, ScriptStep
from vdpalab.testing.transcript import TranscriptError, load_transcript

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
SEED = DATA / "seed"
RECORDED = DATA / "recorded"
OUTPUTS = DATA / "scripts" / "outputs"
OVS_STATE = shlex.join(VSCTL_STATE_ARGV)  # the OVS layer's one read


@pytest.fixture()
def lab() -> Lab:
    return load_lab(ROOT / "labs" / "cx6dx-qemu.toml")


@pytest.fixture()
def emulated() -> Lab:
    return load_lab(ROOT / "lab.toml")


def ctx(lab: Lab, tmp_path: Path, **hosts: ScriptedHost) -> LayerContext:
    return LayerContext(lab=lab, hosts=hosts, state_dir=tmp_path)


def commands(planned: list) -> list[str]:
    return [c.command for c in planned]


# --- text helpers --------------------------------------------------------------------------------


def test_cmdline_sizes_are_normalised() -> None:
    text = (RECORDED / "08_host_info" / "proc-cmdline-osp16-dpdk-compute-el8.txt").read_text()
    required = ["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=16", "intel_iommu=on", "iommu=pt", "pci=realloc"]
    # default_hugepagesz=1GB counts as 1G; hugepages=32 satisfies hugepages=16; pci=realloc is really missing
    assert _text.cmdline_missing(text, required) == ["pci=realloc"]
    assert _text.cmdline_missing("default_hugepagesz=1024M quiet\n", ["default_hugepagesz=1G", "quiet"]) == []
    assert _text.cmdline_missing("quiet=1\n", ["quiet"]) == ["quiet"]


@pytest.mark.parametrize(
    ("have", "want", "ok"),
    [
        ("5.11.11-1.el8.elrepo.x86_64", "5.11", True),
        ("5.10.0", "5.11", False),
        ("6.18.44-fc", "5.7", True),
        ("5.7", "5.7.0", True),
        ("weird", "5.7", False),
    ],
)
def test_version_compare(have: str, want: str, ok: bool) -> None:
    assert _text.version_at_least(have, want) is ok


# --- sriov ---------------------------------------------------------------------------------------


def test_sriov_leaves_right_vfs_alone_and_fixes_only_what_differs(lab: Lab, tmp_path: Path) -> None:
    layer = Sriov(ctx(lab, tmp_path))
    right = {"ens2f0": PfVfState(1, {0: "00:11:22:33:44:00"}), "ens2f1": PfVfState(1, {0: "00:11:22:33:44:10"})}
    assert layer.plan(right) == []
    wrong_mac = {**right, "ens2f1": PfVfState(1, {0: "02:00:00:00:00:01"})}
    planned = layer.plan(wrong_mac)
    assert commands(planned) == ["ip link set ens2f1 vf 0 mac 00:11:22:33:44:10"]  # no 0-then-N reset
    layer.journal_before(wrong_mac, planned)
    assert commands(layer.down_plan()) == ["ip link set ens2f1 vf 0 mac 02:00:00:00:00:01"]


def test_sriov_changes_a_nonzero_count_through_zero(lab: Lab, tmp_path: Path) -> None:
    layer = Sriov(ctx(lab, tmp_path))
    state = {"ens2f0": PfVfState(4, {}), "ens2f1": PfVfState(1, {0: "00:11:22:33:44:10"})}
    planned = layer.plan(state)
    assert commands(planned) == [
        "echo 0 > /sys/class/net/ens2f0/device/sriov_numvfs",
        "echo 1 > /sys/class/net/ens2f0/device/sriov_numvfs",
        "ip link set ens2f0 vf 0 mac 00:11:22:33:44:00",
    ]
    layer.journal_before(state, planned)
    assert commands(layer.down_plan()) == [
        "echo 0 > /sys/class/net/ens2f0/device/sriov_numvfs",
        "echo 4 > /sys/class/net/ens2f0/device/sriov_numvfs",
    ]


def test_sriov_reads_the_old_vf_format_of_rhel83(lab: Lab, tmp_path: Path) -> None:
    text = (RECORDED / "08_host_info" / "ip-d-link-show-vf-MAC-legacy-wangjun-tips.txt").read_text()
    text = text.replace("enp216s0f0", "ens2f0")
    host = ScriptedHost.from_pairs(
        [("cat /sys/class/net/ens2f0/device/sriov_numvfs", "4\n"), IP_NO_JSON("ip -j link show ens2f0"),
         ("ip link show ens2f0", text)]
    )
    single = lab.model_copy(update={"pf": [lab.pf[0].model_copy(update={"num_vfs": 4, "vf_macs": []})]})
    state = Sriov(ctx(single, tmp_path, host=host)).probe()
    assert state["ens2f0"] == PfVfState(
        4, {0: "0e:4e:1c:6c:cc:ab", 1: "e0:18:f7:1b:8f:d9", 2: "00:48:9d:d1:c9:00", 3: "60:03:82:7e:1a:d1"}
    )


def IP_NO_JSON(command: str) -> ScriptStep:
    """What an iproute2 without JSON (before 4.14) answers to ``ip -j``: the real message of ip.c."""
    return ScriptStep(command, rc=255, stderr='Option "-j" is unknown, try "ip -help".\n')


def ETHTOOL_NO_JSON(command: str) -> ScriptStep:
    """What ethtool without ``--json`` answers (ethtool 6.1's own words for an option it lacks, recorded)."""
    return ScriptStep(command, rc=1, stderr=(RECORDED / "13_json_netns_lab" / "guest-ethtool-json-i-rejected.txt")
                      .read_text())


# --- switchdev -----------------------------------------------------------------------------------


def test_switchdev_turns_on_tc_offload_and_refuses_a_vf_on_another_driver(lab: Lab, tmp_path: Path) -> None:
    from vdpalab.layers.switchdev import PfSwitchState

    layer = Switchdev(ctx(lab, tmp_path))
    done = {
        "ens2f0": PfSwitchState("switchdev", {"0000:07:00.2": "mlx5_core"}, False),
        "ens2f1": PfSwitchState("switchdev", {"0000:07:01.2": "mlx5_core"}, True),
    }
    planned = layer.plan(done)
    assert commands(planned) == ["ethtool -K ens2f0 hw-tc-offload on"]
    layer.journal_before(done, planned)
    assert commands(layer.down_plan()) == ["ethtool -K ens2f0 hw-tc-offload off"]
    vfio = {**done, "ens2f1": PfSwitchState("legacy", {"0000:07:01.2": "vfio-pci"}, True)}
    with pytest.raises(LayerError, match=r"VF 0000:07:01\.2 of ens2f1 is bound to vfio-pci"):
        layer.plan(vfio)


def test_switchdev_reads_the_newer_encap_mode_wording(lab: Lab, tmp_path: Path) -> None:
    text = (RECORDED / "11_found_by_search" / "devlink-eswitch-show-encap-mode-basic-cx4lx.txt").read_text()
    text = text.replace("0000:01:00.0", "0000:07:00.0")
    host = ScriptedHost.from_pairs(
        [
            # the text path: a devlink/ethtool that rejects the JSON option falls back to the real text outputs
            ScriptStep("devlink -j dev eswitch show pci/0000:07:00.0", rc=1, stderr='Option "-j" is unknown\n'),
            ("devlink dev eswitch show pci/0000:07:00.0", text),
            (
                "readlink -f /sys/bus/pci/devices/0000:07:00.2/driver",
                "/sys/devices/pci0000:00/0000:00:03.0/0000:07:00.2/driver\n",
            ),
            ETHTOOL_NO_JSON("ethtool --json -k ens2f0"),
            ("ethtool -k ens2f0", (SEED / "ethtool-k-ens2f0-grep-tc.txt").read_text()),
        ]
    )
    single = lab.model_copy(update={"pf": [lab.pf[0]]})
    state = Switchdev(ctx(single, tmp_path, host=host)).probe()
    assert state["ens2f0"].mode == "switchdev"
    assert state["ens2f0"].vf_drivers == {"0000:07:00.2": None}  # the VF exists but no driver holds it


# --- vdpa ----------------------------------------------------------------------------------------


def test_vdpa_dev_add_for_missing_devices_and_down_deletes_them(lab: Lab, tmp_path: Path) -> None:
    vdpa = lab.vdpa.model_copy(
        update={
            "create": "vdpa-dev-add",
            "devices": [lab.vdpa.devices[0].model_copy(update={"mac": "00:11:22:33:44:00"}), lab.vdpa.devices[1]],
        }
    )
    newer = lab.model_copy(update={"vdpa": vdpa})
    # `vdpa -j dev show` as the vDPA lab VM recorded it (13_vdpa_lab_vm), for an mlx5 VF's device
    listing = (RECORDED / "13_vdpa_lab_vm" / "vdpa-j-dev-show-two-vduse-json.txt").read_text()
    second = ',"vdpa1":{"type":"network","mgmtdev":"vduse","vendor_id":0,"max_vqs":2,"max_vq_size":1024}'
    listing = listing.replace(second, "").replace('"vdpa0"', '"vdpa1"').replace('"vduse"', '"pci/0000:07:01.2"')
    assert '"vdpa1":{"type":"network","mgmtdev":"pci/0000:07:01.2"' in listing
    host = ScriptedHost.from_pairs(
        [
            ("lsmod", (SEED / "lsmod-grep-vd-after-modprobe.txt").read_text()),
            ("vdpa -j dev show", listing),
            ("vdpa dev add name vdpa0 mgmtdev pci/0000:07:00.2 mac 00:11:22:33:44:00", ""),
            # the new device binds to the lab's bus driver only, whichever vdpa driver was loaded first
            ("sh -c 'echo vhost_vdpa > /sys/bus/vdpa/devices/vdpa0/driver_override'", ""),
            (f"sh -c {shlex.quote(bind_command('vdpa0', 'vhost_vdpa'))}", ""),
        ]
    )
    layer = Vdpa(ctx(newer, tmp_path, host=host))
    assert layer.up() is True
    host.assert_done()
    assert commands(layer.down_plan()) == ["vdpa dev del vdpa0"]  # vdpa1 was there already; the module too
    wrong = ScriptedHost.from_pairs([("lsmod", ""), ("vdpa -j dev show", listing.replace("07:01.2", "07:00.2"))])
    with pytest.raises(
        LayerError, match=r"vDPA device vdpa1 exists on pci/0000:07:00\.2, the lab wants pci/0000:07:01\.2"
    ):
        Vdpa(ctx(newer, tmp_path, host=wrong)).plan()


def test_vdpa_verify_catches_a_device_on_the_wrong_vf(lab: Lab, tmp_path: Path) -> None:
    swapped = (SEED / "ls-Fal-sys-vhost_vdpa-after-modprobe.txt").read_text()
    swapped = swapped.replace("0000:07:00.2/vdpa0", "0000:07:01.2/vdpa0")
    host = ScriptedHost.from_pairs(
        [
            ("lsmod", (SEED / "lsmod-grep-vd-after-modprobe.txt").read_text()),
            ("ls -Fal /sys/bus/vdpa/drivers/vhost_vdpa", swapped),
            ("ls -Fal /dev", (SEED / "ls-Fal-dev-before-modprobe.txt").read_text()),
        ]
    )
    layer = Vdpa(ctx(lab, tmp_path, host=host))
    layer.ctx.versions["nic_driver"] = "mlx5_core"
    evidence = layer.verify()
    assert not evidence.ok
    assert evidence.summary == (
        "vdpa0 sits on 0000:07:01.2, the lab wants VF 0000:07:00.2; "
        "/dev/vhost-vdpa-0 (for vdpa0) is not a character device; "
        "/dev/vhost-vdpa-1 (for vdpa1) is not a character device"
    )


# --- ovs -----------------------------------------------------------------------------------------


def seed_ovs_state() -> OvsState:
    from vdpalab.parsers.ovs import parse_other_config

    config = parse_other_config((SEED / "ovs-vsctl-get-other-config.txt").read_text()).other_config
    return OvsState(True, config, parse_vsctl_show((SEED / "ovs-vsctl-show-br30-br31.txt").read_text()))


def test_ovs_allow_flag_follows_the_dpdk_version(lab: Lab, tmp_path: Path) -> None:
    layer = Ovs(ctx(lab, tmp_path))
    assert layer.allow_flag() == "-a"  # unknown: the current name
    for version, flag in (("19.11.7", "-w"), ("20.11.0", "-a"), ("21.02.0", "-a")):
        layer.ctx.versions["dpdk"] = version
        assert layer.allow_flag() == flag
    explicit = Ovs(ctx(lab.model_copy(update={"ovs": lab.ovs.model_copy(update={"dpdk_allow_flag": "-w"})}), tmp_path))
    assert explicit.allow_flag() == "-w"


def test_ovs_takes_the_seeds_own_config_as_up_when_the_lab_says_w(lab: Lab, tmp_path: Path) -> None:
    seed_flag = lab.model_copy(update={"ovs": lab.ovs.model_copy(update={"dpdk_allow_flag": "-w"})})
    # the seed's value has a leading space; EAL arguments are compared word by word
    assert Ovs(ctx(seed_flag, tmp_path)).plan(seed_ovs_state()) == []


def test_ovs_modernises_the_seeds_w_to_a_and_restarts(lab: Lab, tmp_path: Path) -> None:
    layer = Ovs(ctx(lab, tmp_path))
    layer.ctx.versions["dpdk"] = "20.11.0"
    assert commands(layer.plan(seed_ovs_state())) == [
        'ovs-vsctl set Open_vSwitch . other_config:dpdk-extra="-a 0000:07:00.0,representor=[0],dv_flow_en=1,'
        'dv_esw_en=1,dv_xmeta_en=0 -a 0000:07:00.1,representor=[0],dv_flow_en=1,dv_esw_en=1,dv_xmeta_en=0"',
        "systemctl restart openvswitch",
    ]


def test_ovs_extras_apply_live_and_need_no_restart_command(emulated: Lab, tmp_path: Path) -> None:
    show = "b726e713-a4bb-4e4f-873d-6b67c17de3dc\n"
    state = OvsState(True, {"max-idle": "30000"}, parse_vsctl_show(show))
    layer = Ovs(ctx(emulated, tmp_path))
    planned = layer.plan(state)
    assert commands(planned)[0] == "ovs-vsctl set Open_vSwitch . other_config:userspace-tso-enable=true"
    assert not any("restart" in c for c in commands(planned))
    assert commands(planned)[1:3] == [
        "ovs-vsctl add-br br30-ovs -- set bridge br30-ovs datapath_type=netdev",
        "ovs-vsctl add-port br30-ovs ens2f0",
    ]


def test_ovs_restart_key_without_restart_command_is_an_error(emulated: Lab, tmp_path: Path) -> None:
    dpdk = emulated.model_copy(
        update={"ovs": emulated.ovs.model_copy(update={"other_config": {"dpdk-lcore-mask": "0x3"}})}
    )
    with pytest.raises(LayerError, match=r"need an OVS restart but lab\.ovs\.restart_command is not set"):
        Ovs(ctx(dpdk, tmp_path)).plan(OvsState(True, {}, parse_vsctl_show("b726e713-a4bb-4e4f-873d-6b67c17de3dc\n")))


def test_ovs_never_rewrites_what_it_did_not_create(lab: Lab, tmp_path: Path) -> None:
    layer = Ovs(ctx(lab, tmp_path))
    text = (SEED / "ovs-vsctl-show-br30-br31.txt").read_text()
    system = seed_ovs_state().__class__(
        True,
        seed_ovs_state().other_config,
        parse_vsctl_show(text.replace("datapath_type: netdev", "datapath_type: system", 1)),
    )
    with pytest.raises(LayerError, match="bridge br31-ovs exists with datapath_type system"):
        layer.plan_bridges(system)
    moved = text.replace("Port ens2f0_0\n            Interface ens2f0_0", "Port ens2f9\n            Interface ens2f9")
    moved = moved.replace(
        "Port ens2f1_0\n            Interface ens2f1_0", "Port ens2f0_0\n            Interface ens2f0_0"
    )
    with pytest.raises(LayerError, match="port ens2f0_0 is on bridge br31-ovs, the lab wants br30-ovs"):
        layer.plan_bridges(OvsState(True, {}, parse_vsctl_show(moved)))


def without_port(listed: str, port: str) -> str:
    """A state answer (``VSCTL_STATE_ARGV``) as OVS lists it after ``del-port``: the Port row, its Interface row and
    the bridge's reference go; a set left with one element is printed as that element, as OVS does."""
    top, bridges, ports, ifaces = (json.loads(line) for line in listed.splitlines())
    name_at, ifaces_at = ports["headings"].index("name"), ports["headings"].index("interfaces")
    row = next(r for r in ports["data"] if r[name_at] == port)
    ports["data"].remove(row)
    gone = row[ifaces_at][1]
    ifaces["data"] = [r for r in ifaces["data"] if r[0][1] != gone]
    ports_at = bridges["headings"].index("ports")
    for bridge in bridges["data"]:
        refs = [r for r in bridge[ports_at][1] if r != row[0]] if bridge[ports_at][0] == "set" else [bridge[ports_at]]
        bridge[ports_at] = refs[0] if len(refs) == 1 else ["set", refs]
    return "".join(json.dumps(doc, separators=(",", ":")) + "\n" for doc in (top, bridges, ports, ifaces))


def test_ovs_adds_a_missing_port_to_an_existing_bridge_and_down_removes_only_it(lab: Lab, tmp_path: Path) -> None:
    # the seed after (2)-(4) (br31-ovs not made yet) without ens2f0_0, with our other_config (-a)
    partial = without_port((OUTPUTS / "ovs-vsctl-list-state-br30-allow-a-json.txt").read_text(), "ens2f0_0")
    assert set(parse_vsctl_state(partial).show.bridges["br30-ovs"].ports) == {"br30-ovs", "ens2f0"}
    host = ScriptedHost.from_pairs(
        [
            (OVS_STATE, partial),
            (
                "ovs-vsctl add-port br30-ovs ens2f0_0 -- set Interface ens2f0_0 type=dpdk "
                'options:dpdk-devargs="0000:07:00.0,representor=[0]"',
                "",
            ),
            ("ovs-vsctl add-br br31-ovs -- set bridge br31-ovs datapath_type=netdev", ""),
            (
                "ovs-vsctl add-port br31-ovs ens2f1 -- set Interface ens2f1 type=dpdk "
                "options:dpdk-devargs=0000:07:00.1",
                "",
            ),
            (
                "ovs-vsctl add-port br31-ovs ens2f1_0 -- set Interface ens2f1_0 type=dpdk "
                'options:dpdk-devargs="0000:07:00.1,representor=[0]"',
                "",
            ),
        ]
    )
    layer = Ovs(ctx(lab, tmp_path, host=host))
    layer.ctx.versions["dpdk"] = "20.11.0"
    assert layer.up() is True
    host.assert_done()
    assert commands(layer.down_plan()) == ["ovs-vsctl del-br br31-ovs", "ovs-vsctl del-port br30-ovs ens2f0_0"]


def test_ovs_down_puts_back_changed_values_and_restarts(lab: Lab, tmp_path: Path) -> None:
    layer = Ovs(ctx(lab, tmp_path))
    layer.journal.record("other_config:dpdk-socket-mem", "2048")
    layer.journal.record("other_config:dpdk-init", None)
    layer.journal.record("restart_keys_changed", True)
    assert commands(layer.down_plan()) == [
        "ovs-vsctl remove Open_vSwitch . other_config dpdk-init",
        "ovs-vsctl set Open_vSwitch . other_config:dpdk-socket-mem=2048",
        "systemctl restart openvswitch",
    ]


def test_ovs_verify_reports_interface_errors(lab: Lab, tmp_path: Path) -> None:
    row = '"ens2f1_0","dpdk",["map",[["dpdk-devargs","0000:07:00.1,representor=[0]"]]],["set",[]],2]'
    listed = (OUTPUTS / "ovs-vsctl-list-state-br30-br31-allow-a-json.txt").read_text()
    assert listed.count(row) == 1
    # what OVS lists for a port DPDK could not attach: its error, and ofport -1
    error = "Error attaching device '0000:07:00.1,representor=[0]' to DPDK"
    broken = listed.replace(row, row.replace('["set",[]],2]', json.dumps(error) + ",-1]"))
    host = ScriptedHost.from_pairs([(OVS_STATE, broken)])
    evidence = Ovs(ctx(lab, tmp_path, host=host)).verify()
    host.assert_done()
    assert not evidence.ok
    assert evidence.summary == (
        "interface ens2f1_0 (bridge br31-ovs) error: Error attaching device '0000:07:00.1,representor=[0]' to DPDK; "
        "interface ens2f1_0 has no OpenFlow port (ofport -1)"
    )


def test_ovs_verify_takes_the_ofports_from_the_same_read(lab: Lab, tmp_path: Path) -> None:
    listed = (OUTPUTS / "ovs-vsctl-list-state-br30-br31-allow-a-json.txt").read_text()
    host = ScriptedHost.from_pairs([(OVS_STATE, listed)])
    layer = Ovs(ctx(lab, tmp_path, host=host))
    layer.ctx.versions["dpdk"] = "20.11.0"
    evidence = layer.verify()
    host.assert_done()  # one command: no per-port ofport read
    assert evidence.ok, evidence.summary
    assert {d for d in evidence.details if "ofport" in d} == {
        "br30-ovs ens2f0: ofport 1", "br30-ovs ens2f0_0: ofport 2", "br31-ovs ens2f1: ofport 1",
        "br31-ovs ens2f1_0: ofport 2",
    }


def test_kv_arg_quotes_only_when_needed() -> None:
    assert kv_arg("other_config:dpdk-socket-mem", "1024,1024") == "other_config:dpdk-socket-mem=1024,1024"
    assert kv_arg("options:dpdk-devargs", "0000:07:00.0,representor=[0]") == (
        'options:dpdk-devargs="0000:07:00.0,representor=[0]"'
    )
    assert kv_arg("other_config:x", 'a "b" $c') == 'other_config:x="a \\"b\\" \\$c"'


# --- hugepages -----------------------------------------------------------------------------------


def test_hugepages_at_runtime_reserves_mounts_and_down_restores(emulated: Lab, tmp_path: Path) -> None:
    layer = Hugepages(ctx(emulated, tmp_path))
    mount = layer.mount_path
    state = HugepagesState(2048, 2048, 10, 4, 10, None, None, False)
    planned = layer.plan(state)
    assert commands(planned) == [
        "echo 38 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        f"mkdir -p {mount}",
        f"mount -t hugetlbfs -o pagesize=2M nodev {mount}",
    ]
    layer.journal_before(state, planned)
    assert commands(layer.down_plan()) == [
        f"umount {mount}",
        f"rmdir {mount}",
        "echo 10 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
    ]


def test_hugepages_down_gives_back_only_its_own_pages(emulated: Lab, tmp_path: Path) -> None:
    """Two labs share the machine's pool: each takes back what it added, so any down order ends where both began."""
    sysfs = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
    need = Hugepages(ctx(emulated, tmp_path)).needed_pages()[0]
    # lab A saw 0 pages and added `need`; lab B came up after A and saw A's pages used, adding its own
    a = Hugepages(ctx(emulated, tmp_path / "a", host=ScriptedHost.from_pairs([(f"cat {sysfs}", f"{2 * need}\n")])))
    state_a = HugepagesState(2048, 2048, 0, 0, 0, None, None, False)
    a.journal_before(state_a, a.plan(state_a))
    state_b = HugepagesState(2048, 2048, need, 0, need, None, None, False)
    b = Hugepages(ctx(emulated, tmp_path / "b", host=ScriptedHost.from_pairs([(f"cat {sysfs}", f"{need}\n")])))
    b.journal_before(state_b, b.plan(state_b))
    assert b.journal.get("nr_hugepages") == {"path": sysfs, "before": need, "added": need}
    # A goes down first (the pool holds 2*need): it leaves B's pages; B then finds `need` and leaves 0
    assert commands(a.down_plan())[-1] == f"echo {need} > {sysfs}"
    assert commands(b.down_plan())[-1] == f"echo 0 > {sysfs}"  # writing the count B saw would have left `need`


def test_hugepages_needs_socket_mem_plus_vhost_user_guests(lab: Lab, tmp_path: Path) -> None:
    assert Hugepages(ctx(lab, tmp_path)).needed_pages()[0] == 16  # the seed: count 16 covers socket-mem 2 GiB
    guests = [
        g.model_copy(update={"vdpa_device": None, "vhost_user_socket": f"/run/vu{i}.sock"})
        for i, g in enumerate(lab.guest)
    ]
    vhost_user = lab.model_copy(update={"guest": guests})
    need, why = Hugepages(ctx(vhost_user, tmp_path)).needed_pages()
    assert need == 2 + 8 + 8  # more than the 16 the lab reserves: verify will say so
    assert why[1:] == [
        "OVS dpdk-socket-mem 1024,1024 = 2 page(s)",
        "guest c77g153 8192 MiB = 8 page(s)",
        "guest c77g159 8192 MiB = 8 page(s)",
    ]


# --- guests --------------------------------------------------------------------------------------


def test_libvirt_guest_gets_the_seeds_vdpa_interface(tmp_path: Path) -> None:
    """The seed's libvirt lab: its existing domain gets the seed's interface for the run (as virsh edit)."""
    lab = load_lab(ROOT / "labs" / "cx6dx-libvirt.toml")
    single = lab.model_copy(update={"guest": lab.guest[:1]})
    virsh = RECORDED / "12_virsh_test_driver"
    original = (virsh / "virsh-dumpxml-inactive-c77g153-xml.txt").read_text()
    guest_host = ScriptedHost.from_pairs(
        [
            ("true", ""),
            IP_NO_JSON("ip -j link show dev eth0"),
            ("ip link show dev eth0", (DATA / "scripts/outputs/guest-c77g153-ip-link-eth0-up.txt").read_text()),
            IP_NO_JSON("ip -j -4 addr show dev eth0"),
            ("ip -4 -o addr show dev eth0", (DATA / "scripts/outputs/guest-c77g153-ip-4-o-addr-eth0.txt").read_text()),
        ]
    )
    host = ScriptedHost.from_pairs(
        [
            ("virsh domstate c77g153", (virsh / "virsh-domstate-shut-off.txt").read_text()),
            ("virsh dumpxml --inactive --security-info c77g153", original),
            ("mkdir -p /run/vdpalab/cx6dx-libvirt", ""),
            ("virsh define /run/vdpalab/cx6dx-libvirt/c77g153.xml", (virsh / "virsh-define-c77g153.txt").read_text()),
            ("virsh start c77g153", (virsh / "virsh-start-c77g153.txt").read_text()),
        ]
    )
    layer = Guests(ctx(single, tmp_path, host=host, c77g153=guest_host))
    assert layer.up() is True
    host.assert_done()
    guest_host.assert_done()
    xml = host.files["/run/vdpalab/cx6dx-libvirt/c77g153.xml"].decode()
    [seed_iface] = parse_libvirt_xml((SEED / "libvirt-interface-vdpa-0-fragment.txt").read_text()).interfaces
    [iface] = parse_libvirt_xml(xml).interfaces
    assert (iface.type, iface.source_dev) == (seed_iface.type, seed_iface.source_dev) == ("vdpa", "/dev/vhost-vdpa-0")
    assert iface.mac == "00:11:22:33:44:00"  # the VF's MAC; model and driver stay the domain's defaults, as in the seed
    assert (iface.model, iface.driver) == (None, {})
    assert "<source file='/var/lib/libvirt/images/c77g1532.qcow2'/>" in xml  # the domain's own disk, untouched
    assert commands(layer.down_plan()) == [
        "virsh destroy c77g153",
        "virsh define /run/vdpalab/cx6dx-libvirt/c77g153.xml",
        "rm -f /run/vdpalab/cx6dx-libvirt/c77g153.xml",
    ]


def test_a_guest_that_never_answers_ssh_shows_its_console(lab: Lab, tmp_path: Path) -> None:
    guest = lab.guest[0].model_copy(update={"boot_timeout_s": 0.05})
    single = lab.model_copy(update={"guest": [guest]})
    never = ScriptedHost("c77g153", [ScriptStep("true", raises="unreachable")] * 3)
    host = ScriptedHost.from_pairs(
        [
            (
                "tail -n 40 /run/vdpalab/cx6dx-qemu/c77g153.console.log",
                "[    2.31] virtio_net virtio0: failed to set mac\n"
                "Kernel panic - not syncing: VFS: Unable to mount root fs\n",
            ),
        ]
    )
    layer = Guests(ctx(single, tmp_path, host=host, c77g153=never))
    with pytest.raises(LayerError) as info:
        layer.wait_ssh(guest)
    message = str(info.value)
    assert message.startswith(
        "layer guests: guest c77g153: no SSH after 0.05 s (c77g153: unreachable while running 'true'"
    )
    assert "--- console /run/vdpalab/cx6dx-qemu/c77g153.console.log (last 40 lines) ---" in message
    assert message.endswith("Kernel panic - not syncing: VFS: Unable to mount root fs")


def test_a_guest_that_answers_with_an_unpinned_host_key_fails_at_once(lab: Lab, tmp_path: Path) -> None:
    """A rebuilt guest image brings a new host key: the wait stops at the first answer instead of the boot timeout
    (the scripted guest answers once; a second attempt would be a script mismatch)."""
    guest = lab.guest[0].model_copy(update={"boot_timeout_s": 600.0})
    single = lab.model_copy(update={"guest": [guest]})
    rekeyed = ScriptedHost("c77g153", [ScriptStep("true", raises="host-key")])
    host = ScriptedHost.from_pairs(
        [("tail -n 40 /run/vdpalab/cx6dx-qemu/c77g153.console.log", "[148] Exit before auth: Exited normally\n")]
    )
    layer = Guests(ctx(single, tmp_path, host=host, c77g153=rekeyed))
    with pytest.raises(LayerError) as info:
        layer.wait_ssh(guest)
    rekeyed.assert_done()
    message = str(info.value)
    pinned = single.resolve(guest.ssh.known_hosts) or "~/.ssh/known_hosts"
    assert message.startswith("layer guests: guest c77g153: answered after ")
    assert f"with a host key that {pinned} does not pin (c77g153: unreachable while running 'true': host key" in message
    assert message.endswith("Exit before auth: Exited normally")


def test_netns_guest_is_configured_and_down_removes_the_address(emulated: Lab, tmp_path: Path) -> None:
    single = emulated.model_copy(update={"guest": emulated.guest[:1]})
    link = (
        # the emulated builder creates every veth end with the lab's datapath MTU (9000), as lab.toml's guests want
        "2: eth0@if7: <BROADCAST,MULTICAST> mtu 9000 qdisc noop state DOWN mode DEFAULT group default qlen 1000\n"
        "    link/ether 5e:1c:2a:90:11:7b brd ff:ff:ff:ff:ff:ff link-netns vdpalab-emu-host\n"
    )
    guest = ScriptedHost.from_pairs(
        [
            IP_NO_JSON("ip -j link show dev eth0"),
            ("ip link show dev eth0", link),
            IP_NO_JSON("ip -j -4 addr show dev eth0"),
            ("ip -4 -o addr show dev eth0", ""),
            ("true", ""),
            IP_NO_JSON("ip -j link show dev eth0"),
            ("ip link show dev eth0", link),
            IP_NO_JSON("ip -j -4 addr show dev eth0"),
            ("ip -4 -o addr show dev eth0", ""),
            ("ip link set dev eth0 address 00:11:22:33:44:00", ""),
            ("ip addr replace 192.168.30.153/24 dev eth0", ""),
            ("ip link set dev eth0 up", ""),
        ]
    )
    layer = Guests(ctx(single, tmp_path, c77g153=guest))
    planned = layer.plan()
    assert [(c.host, c.command) for c in planned] == [
        ("c77g153", "ip link set dev eth0 address 00:11:22:33:44:00"),
        ("c77g153", "ip addr replace 192.168.30.153/24 dev eth0"),
        ("c77g153", "ip link set dev eth0 up"),
    ]
    assert layer.up() is True
    guest.assert_done()
    assert [(c.host, c.command) for c in layer.down_plan()] == [
        ("c77g153", "ip addr del 192.168.30.153/24 dev eth0"),
        ("c77g153", "ip link set dev eth0 address 5e:1c:2a:90:11:7b"),
    ]


def test_guests_down_kills_only_a_qemu_that_is_still_ours(lab: Lab, tmp_path: Path) -> None:
    single = lab.model_copy(update={"guest": lab.guest[:1]})
    layer = Guests(
        ctx(
            single,
            tmp_path,
            host=ScriptedHost.from_pairs(
                [
                    (
                        "tr '\\0' ' ' < /proc/5088/cmdline",
                        "/usr/bin/sleep 1000 ",
                    ),  # the pid was reused by another program
                    ("rm -f /run/vdpalab/cx6dx-qemu/c77g153.pid /run/vdpalab/cx6dx-qemu/c77g153.qmp", ""),
                ]
            ),
        )
    )
    layer.journal.record("qemu:c77g153", 5088)
    layer.down()
    layer.ctx.hosts["host"].assert_done()  # no QMP, no kill: only the stale files went


# --- transcripts and the plan command ------------------------------------------------------------


def test_transcript_format_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.script"
    bad.write_text("| output first\n")
    with pytest.raises(TranscriptError, match=r"bad.script:1: output before any '\$ command' line"):
        load_transcript(bad)
    bad.write_text("$ true\nwhat is this\n")
    with pytest.raises(TranscriptError, match=r"bad.script:2: not a transcript directive"):
        load_transcript(bad)
    loop = tmp_path / "loop.script"
    loop.write_text("@include loop.script\n")
    with pytest.raises(TranscriptError, match="@include loop"):
        load_transcript(loop)
    ok = tmp_path / "ok.script"
    ok.write_text("$ a\n| one\n|\n! err\nrc 3\n$~ b .*\nraise timeout\n")
    first, second = load_transcript(ok)
    assert (first.expect, first.stdout, first.stderr, first.rc) == ("a", "one\n\n", "err\n", 3)
    assert second.matches("b anything") and second.raises == "timeout"


def test_plan_command_offline_prints_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from vdpalab.cli import main

    assert main(["plan", "--lab", str(ROOT / "labs" / "cx6dx-qemu.toml"), "--offline"]) == 0
    out = capsys.readouterr().out
    assert "## sriov: 4 command(s)" in out
    assert "devlink dev eswitch set pci/0000:07:00.0 mode switchdev" in out
    assert "# on c77g153 (guest, root@c77g153)" in out
    assert out.rstrip().endswith("# 31 command(s) in all; none was run")


def test_plan_command_json_and_emulated(tmp_path: Path) -> None:
    import argparse

    out = StringIO()
    args = argparse.Namespace(
        lab=str(ROOT / "lab.toml"), offline=True, down=False, state_dir=str(tmp_path), layer=None, json=True
    )
    assert plan_cmd.run(args, out) == 0
    doc = json.loads(out.getvalue())
    assert doc["layers"]["vdpa"] == {"not_applicable": "vdpa.enabled = false in the lab", "commands": []}
    assert doc["layers"]["ovs"]["commands"][0]["command"] == (
        "ovs-vsctl set Open_vSwitch . other_config:userspace-tso-enable=true"
    )


def test_run_layer_reports_not_applicable_without_touching_a_host(emulated: Lab, tmp_path: Path) -> None:
    outcome = run_layer(Vdpa(ctx(emulated, tmp_path)))
    assert (outcome.status, outcome.reason) == (
        LayerStatus.NOT_APPLICABLE,
        "vdpa.enabled = false in the lab",
    )

"""The bring-up of labs/cx6dx-qemu.toml is the seed's procedure, command for command.

Scripted hosts replay transcripts (``data/scripts/``) built from the seed's real outputs
(``data/seed/``): a fresh host (``seed-fresh``), the dry-run probes (``seed-plan``), a host
that is already up (``seed-up``) and the teardown (``seed-down``). A command the transcript
does not expect, or one it expects that never comes, fails the test.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vdpalab.bringup import BringUp
from vdpalab.config import Lab, load_lab
from vdpalab.layers import LAYER_ORDER, LayerStatus
from vdpalab.session import SessionRecord
from vdpalab.testing.scripted import ScriptedHost
from vdpalab.testing.transcript import scripted_host

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).parent / "data" / "scripts"
SEED_TEXT = ROOT.parent / "shared" / "seed" / "vdpa-vhost_vdpa-vm-setup.ja.txt"

Q153 = (
    "/usr/local/bin/qemu-system-x86_64 -name c77g153 -accel kvm -cpu host -m 8G "
    "-hda /var/lib/libvirt/images/c77g1532.qcow2 "
    "-netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0 "
    "-device virtio-net-pci,netdev=vhost-vdpa0,page-per-vq=on,iommu_platform=on,disable-legacy=on "
    "-serial file:/run/vdpalab/cx6dx-qemu/c77g153.console.log "
    "-qmp unix:/run/vdpalab/cx6dx-qemu/c77g153.qmp,server=on,wait=off "
    "-pidfile /run/vdpalab/cx6dx-qemu/c77g153.pid -display none -daemonize"
)
Q159 = (
    "/usr/local/bin/qemu-system-x86_64 -name c77g159 -accel kvm -cpu host -m 8G "
    "-hda /var/lib/libvirt/images/c77g1592.qcow2 "
    "-netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-1,id=vhost-vdpa1 "
    "-device virtio-net-pci,netdev=vhost-vdpa1,page-per-vq=on,iommu_platform=on,disable-legacy=on "
    "-serial file:/run/vdpalab/cx6dx-qemu/c77g159.console.log "
    "-qmp unix:/run/vdpalab/cx6dx-qemu/c77g159.qmp,server=on,wait=off "
    "-pidfile /run/vdpalab/cx6dx-qemu/c77g159.pid -display none -daemonize"
)
DPDK_EXTRA_A = (
    "-a 0000:07:00.0,representor=[0],dv_flow_en=1,dv_esw_en=1,dv_xmeta_en=0 "
    "-a 0000:07:00.1,representor=[0],dv_flow_en=1,dv_esw_en=1,dv_xmeta_en=0"
)

# The changing commands bring-up issues on a fresh host, per layer, as (host role, command).
SEED_SEQUENCE: dict[str, list[tuple[str, str]]] = {
    "preflight": [],
    "hugepages": [],  # the seed reserves hugepages on the kernel command line: verified, not changed
    "sriov": [
        ("host", "echo 1 > /sys/class/net/ens2f0/device/sriov_numvfs"),
        ("host", "echo 1 > /sys/class/net/ens2f1/device/sriov_numvfs"),
        ("host", "ip link set ens2f0 vf 0 mac 00:11:22:33:44:00"),
        ("host", "ip link set ens2f1 vf 0 mac 00:11:22:33:44:10"),
    ],
    "switchdev": [
        ("host", "echo 0000:07:00.2 > /sys/bus/pci/drivers/mlx5_core/unbind"),
        ("host", "echo 0000:07:01.2 > /sys/bus/pci/drivers/mlx5_core/unbind"),
        ("host", "devlink dev eswitch set pci/0000:07:00.0 mode switchdev"),
        ("host", "devlink dev eswitch set pci/0000:07:00.1 mode switchdev"),
        ("host", "echo 0000:07:00.2 > /sys/bus/pci/drivers/mlx5_core/bind"),
        ("host", "echo 0000:07:01.2 > /sys/bus/pci/drivers/mlx5_core/bind"),
    ],
    "vdpa": [("host", "modprobe vhost_vdpa")],
    "ovs": [
        ("host", "systemctl start openvswitch"),
        ("host", "ovs-vsctl set Open_vSwitch . other_config:dpdk-init=true"),
        ("host", "ovs-vsctl set Open_vSwitch . other_config:hw-offload=true other_config:tc-policy=none"),
        ("host", "ovs-vsctl set Open_vSwitch . other_config:dpdk-socket-mem=1024,1024"),
        ("host", "ovs-vsctl set Open_vSwitch . other_config:vhost-iommu-support=true"),
        ("host", f'ovs-vsctl set Open_vSwitch . other_config:dpdk-extra="{DPDK_EXTRA_A}"'),
        ("host", "systemctl restart openvswitch"),
        ("host", "ovs-vsctl add-br br30-ovs -- set bridge br30-ovs datapath_type=netdev"),
        (
            "host",
            "ovs-vsctl add-port br30-ovs ens2f0 -- set Interface ens2f0 type=dpdk options:dpdk-devargs=0000:07:00.0",
        ),
        (
            "host",
            "ovs-vsctl add-port br30-ovs ens2f0_0 -- set Interface ens2f0_0 type=dpdk "
            'options:dpdk-devargs="0000:07:00.0,representor=[0]"',
        ),
        ("host", "ovs-vsctl add-br br31-ovs -- set bridge br31-ovs datapath_type=netdev"),
        (
            "host",
            "ovs-vsctl add-port br31-ovs ens2f1 -- set Interface ens2f1 type=dpdk options:dpdk-devargs=0000:07:00.1",
        ),
        (
            "host",
            "ovs-vsctl add-port br31-ovs ens2f1_0 -- set Interface ens2f1_0 type=dpdk "
            'options:dpdk-devargs="0000:07:00.1,representor=[0]"',
        ),
    ],
    "guests": [
        ("host", "mkdir -p /run/vdpalab/cx6dx-qemu"),
        ("host", Q153),
        ("host", Q159),
        ("c77g153", "ip addr replace 192.168.30.153/24 dev eth0"),
        ("c77g153", "ip link set dev eth0 up"),
        ("c77g159", "ip addr replace 192.168.30.159/24 dev eth0"),
        ("c77g159", "ip link set dev eth0 up"),
    ],
}

# The seed's own commands for the same steps, copied from the seed (each is checked to be in it below).
SEED_COMMANDS = [
    "echo 1 > /sys/class/net/ens2f0/device/sriov_numvfs",
    "echo 1 > /sys/class/net/ens2f1/device/sriov_numvfs",
    "ip link set ens2f0 vf 0 mac 00:11:22:33:44:00",
    "ip link set ens2f1 vf 0 mac 00:11:22:33:44:10",
    "echo 0000:07:00.2 > /sys/bus/pci/drivers/mlx5_core/unbind",
    "echo 0000:07:01.2 > /sys/bus/pci/drivers/mlx5_core/unbind",
    "devlink dev eswitch set pci/0000:07:00.0 mode switchdev",
    "devlink dev eswitch set pci/0000:07:00.1 mode switchdev",
    "echo 0000:07:00.2 > /sys/bus/pci/drivers/mlx5_core/bind",
    "echo 0000:07:01.2 > /sys/bus/pci/drivers/mlx5_core/bind",
    "modprobe vhost_vdpa",
    "systemctl start openvswitch",
    "ovs-vsctl set Open_vSwitch . other_config:dpdk-init=true",
    "ovs-vsctl set Open_vSwitch . other_config:hw-offload=true other_config:tc-policy=none",
    "ovs-vsctl set Open_vSwitch . other_config:dpdk-socket-mem=1024,1024",
    "ovs-vsctl set Open_vSwitch . other_config:vhost-iommu-support=true",
    'ovs-vsctl set Open_vSwitch . other_config:dpdk-extra=" \\\n'
    "-w 0000:07:00.0,representor=[0],dv_flow_en=1,dv_esw_en=1,dv_xmeta_en=0 \\\n"
    '-w 0000:07:00.1,representor=[0],dv_flow_en=1,dv_esw_en=1,dv_xmeta_en=0"',
    "systemctl restart openvswitch",
    "ovs-vsctl add-br br30-ovs -- set bridge br30-ovs datapath_type=netdev",
    "ovs-vsctl add-port br30-ovs ens2f0 -- set Interface ens2f0 type=dpdk options:dpdk-devargs=0000:07:00.0",
    "ovs-vsctl add-port br30-ovs ens2f0_0 -- set Interface ens2f0_0 type=dpdk "
    "options:dpdk-devargs=0000:07:00.0,representor=[0]",
    "ovs-vsctl add-br br31-ovs -- set bridge br31-ovs datapath_type=netdev",
    "ovs-vsctl add-port br31-ovs ens2f1 -- set Interface ens2f1 type=dpdk options:dpdk-devargs=0000:07:00.1",
    "ovs-vsctl add-port br31-ovs ens2f1_0 -- set Interface ens2f1_0 type=dpdk "
    "options:dpdk-devargs=0000:07:00.1,representor=[0]",
]
SEED_QEMU_153 = (
    "qemu-system-x86_64 \\\n -enable-kvm \\\n -cpu host \\\n -m 8G \\\n"
    " -hda /var/lib/libvirt/images/c77g1532.qcow2 \\\n"
    " -netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0 \\\n"
    " -device virtio-net-pci,netdev=vhost-vdpa0,page-per-vq=on,iommu_platform=on,disable-legacy=on \\\n -nographic"
)


def shell_argv(command: str) -> list[str]:
    """The argv a shell passes for ``command`` (backslash-newline is a continuation, also inside "...")."""
    return shlex.split(command.replace("\\\n", ""))


def modernised(argv: list[str]) -> list[str]:
    """The seed's argv with the deliberate changes of docs/layers.md applied.

    dpdk-extra: ``-w`` -> ``-a`` (DPDK >= 20.11; the lab's DPDK is 20.11.0), without the leading space
    that the seed's line continuation left in the value.
    """
    out = []
    for word in argv:
        if word.startswith("other_config:dpdk-extra="):
            key, value = word.split("=", 1)
            word = f"{key}={' '.join('-a' if w == '-w' else w for w in value.split())}"
        out.append(word)
    return out


@pytest.fixture()
def lab() -> Lab:
    return load_lab(ROOT / "labs" / "cx6dx-qemu.toml")


def hosts_for(case: str) -> dict[str, ScriptedHost]:
    folder = SCRIPTS / case
    hosts = {"host": scripted_host("c83g155", folder / "host.script")}
    for guest in ("c77g153", "c77g159"):
        path = folder / f"{guest}.script"
        hosts[guest] = scripted_host(guest, path) if path.exists() else ScriptedHost(guest, [])
    return hosts


def assert_all_ran(hosts: dict[str, ScriptedHost]) -> None:
    for host in hosts.values():
        host.assert_done()


def flat(sequence: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    return [item for name in LAYER_ORDER for item in sequence[name]]


def test_seed_commands_are_copied_from_the_seed() -> None:
    text = SEED_TEXT.read_text(encoding="utf-8") if SEED_TEXT.exists() else pytest.skip("../shared/seed not here")
    for command in [*SEED_COMMANDS, SEED_QEMU_153]:
        assert command in text, command


def test_fresh_bringup_issues_the_seed_sequence(lab: Lab, tmp_path: Path) -> None:
    hosts = hosts_for("seed-fresh")
    bring = BringUp(lab, hosts, tmp_path)
    outcomes = bring.up()
    assert {n: (o.status, o.reason) for n, o in outcomes.items()} == {n: (LayerStatus.UP, "") for n in LAYER_ORDER}
    assert_all_ran(hosts)
    issued = {name: [tuple(c.split(": ", 1)) for c in o.commands_run] for name, o in outcomes.items()}
    assert issued == SEED_SEQUENCE
    assert {n: o.changed for n, o in outcomes.items()} == {n: bool(SEED_SEQUENCE[n]) for n in LAYER_ORDER}


def test_our_host_commands_are_the_seeds_argv_after_the_listed_modernisations() -> None:
    ours = [c for role, c in flat(SEED_SEQUENCE) if role == "host" and not c.startswith(("mkdir ", "/usr/local"))]
    assert [shell_argv(c) for c in ours] == [modernised(shell_argv(c)) for c in SEED_COMMANDS]
    # the seed's argv, unmodernised, differs only in dpdk-extra
    differing = [a for a, b in zip(ours, SEED_COMMANDS, strict=True) if shell_argv(a) != shell_argv(b)]
    assert len(differing) == 1 and "dpdk-extra" in differing[0]


def test_qemu_command_keeps_every_seed_option_in_order() -> None:
    seed = shell_argv(SEED_QEMU_153)
    ours = shell_argv(Q153)
    kept = [w for w in seed if w not in ("-enable-kvm", "-nographic")]
    kept[0] = "/usr/local/bin/qemu-system-x86_64"  # the binary the seed built and found in PATH
    assert [w for w in ours if w in kept] == kept
    added = [w for w in ours if w not in kept]
    assert added == [
        "-name",
        "c77g153",
        "-accel",
        "kvm",
        "-serial",
        "file:/run/vdpalab/cx6dx-qemu/c77g153.console.log",
        "-qmp",
        "unix:/run/vdpalab/cx6dx-qemu/c77g153.qmp,server=on,wait=off",
        "-pidfile",
        "/run/vdpalab/cx6dx-qemu/c77g153.pid",
        "-display",
        "none",
        "-daemonize",
    ]


def test_offline_plan_is_the_same_sequence(lab: Lab, tmp_path: Path) -> None:
    plans = BringUp(lab, {}, tmp_path).plan(offline=True)
    assert {n: [(c.host, c.command) for c in p] for n, p in plans.items()} == SEED_SEQUENCE


def test_live_plan_runs_only_probes_and_gives_the_same_sequence(lab: Lab, tmp_path: Path) -> None:
    hosts = hosts_for("seed-plan")
    plans = BringUp(lab, hosts, tmp_path).plan()
    assert_all_ran(hosts)  # the transcript holds read-only commands only
    assert {n: [(c.host, c.command) for c in p] for n, p in plans.items()} == SEED_SEQUENCE


def test_already_up_host_gets_only_probes(lab: Lab, tmp_path: Path) -> None:
    hosts = hosts_for("seed-up")
    outcomes = BringUp(lab, hosts, tmp_path).up()
    assert_all_ran(hosts)
    assert all(o.status is LayerStatus.UP for o in outcomes.values()), outcomes
    assert [c for o in outcomes.values() for c in o.commands_run] == []
    assert not any(o.changed for o in outcomes.values())
    assert not (tmp_path / "journal").exists() or not any((tmp_path / "journal").iterdir())


def test_already_up_host_plans_nothing(lab: Lab, tmp_path: Path) -> None:
    folder = SCRIPTS / "seed-up"
    hosts = {"host": scripted_host("c83g155", folder / "plan.script")}
    for guest in ("c77g153", "c77g159"):
        hosts[guest] = scripted_host(guest, folder / f"{guest}-plan.script")
    plans = BringUp(lab, hosts, tmp_path).plan()
    assert_all_ran(hosts)
    assert plans == {name: [] for name in LAYER_ORDER}


def test_down_restores_the_recorded_state(lab: Lab, tmp_path: Path) -> None:
    BringUp(lab, hosts_for("seed-fresh"), tmp_path).up()
    down_hosts = hosts_for("seed-down")  # a new process: journals are read back from tmp_path
    bring = BringUp(lab, down_hosts, tmp_path)
    planned = [c.command for cmds in bring.down_plan().values() for c in cmds]
    errors = bring.down()
    assert errors == {}
    assert_all_ran(down_hosts)
    executed = down_hosts["host"].executed
    reads = {c for c in executed if c.startswith("tr '\\0'")}
    assert [c for c in executed if c not in reads] == planned
    assert planned == [
        'printf \'%s\\n\' \'{"execute":"qmp_capabilities"}\' \'{"execute":"quit"}\' '
        "| socat - UNIX-CONNECT:/run/vdpalab/cx6dx-qemu/c77g159.qmp",
        "for i in $(seq 1 30); do kill -0 5380 2>/dev/null || exit 0; sleep 1; done; exit 1",
        "rm -f /run/vdpalab/cx6dx-qemu/c77g159.pid /run/vdpalab/cx6dx-qemu/c77g159.qmp",
        'printf \'%s\\n\' \'{"execute":"qmp_capabilities"}\' \'{"execute":"quit"}\' '
        "| socat - UNIX-CONNECT:/run/vdpalab/cx6dx-qemu/c77g153.qmp",
        "for i in $(seq 1 30); do kill -0 5088 2>/dev/null || exit 0; sleep 1; done; exit 1",
        "rm -f /run/vdpalab/cx6dx-qemu/c77g153.pid /run/vdpalab/cx6dx-qemu/c77g153.qmp",
        "ovs-vsctl del-br br31-ovs",
        "ovs-vsctl del-br br30-ovs",
        "ovs-vsctl remove Open_vSwitch . other_config dpdk-init hw-offload tc-policy dpdk-socket-mem "
        "vhost-iommu-support dpdk-extra",
        "systemctl stop openvswitch",
        "modprobe -r vhost_vdpa",
        "echo 0000:07:00.2 > /sys/bus/pci/drivers/mlx5_core/unbind",
        "echo 0000:07:01.2 > /sys/bus/pci/drivers/mlx5_core/unbind",
        "devlink dev eswitch set pci/0000:07:00.0 mode legacy",
        "devlink dev eswitch set pci/0000:07:00.1 mode legacy",
        "echo 0000:07:00.2 > /sys/bus/pci/drivers/mlx5_core/bind",
        "echo 0000:07:01.2 > /sys/bus/pci/drivers/mlx5_core/bind",
        "echo 0 > /sys/class/net/ens2f0/device/sriov_numvfs",
        "echo 0 > /sys/class/net/ens2f1/device/sriov_numvfs",
    ]
    assert list((tmp_path / "journal").iterdir()) == []  # every journal cleared
    assert {o.status for o in bring.outcomes.values()} == {LayerStatus.DOWN}


def test_outcomes_and_versions_reach_other_processes_through_the_session_record(lab: Lab, tmp_path: Path) -> None:
    """One home for layer outcomes: the run's session record. BringUp writes no file of its own; what an xdist
    worker reads back from session.json is what bring-up returned."""
    bring = BringUp(lab, hosts_for("seed-fresh"), tmp_path)
    bring.up()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal"]  # only what down needs outlives the process
    written = SessionRecord(run_id="r1", owner_pid=1, started=0.0, outcomes=bring.outcomes, versions=bring.versions)
    read = SessionRecord.from_json(written.to_json())
    outcomes, versions = read.outcomes, read.versions
    assert outcomes["ovs"].status is LayerStatus.UP
    assert outcomes["sriov"].commands_run == bring.outcomes["sriov"].commands_run
    assert outcomes["switchdev"].evidence is not None and outcomes["switchdev"].evidence.ok
    assert versions == {
        "kernel": "5.11.11-1.el8.elrepo.x86_64",
        "nic_driver": "mlx5_core",
        "nic_firmware": "22.29.2002 (MT_0000000359)",
        "ofed": "5.2-2.2.0.0",
        "ovs": "2.14.1",
        "dpdk": "20.11.0",
        "qemu": "5.2.91 (v6.0.0-rc1)",
        "libvirt": None,
    }
    assert bring.skip_reason("guests") is None
    assert BringUp(lab, {}, tmp_path).skip_reason("guests") == "layer guests has not been brought up"


def test_preflight_evidence_names_every_check(lab: Lab, tmp_path: Path) -> None:
    outcomes = BringUp(lab, hosts_for("seed-fresh"), tmp_path).up()
    details = "\n".join(outcomes["preflight"].evidence.details)
    for fact in (
        "ok: kernel 5.11.11-1.el8.elrepo.x86_64 >= 5.11",
        "ok: kernel command line has default_hugepagesz=1G",
        "ok: tool devlink found",
        "ok: /usr/local/bin/qemu-system-x86_64 supports -netdev vhost-vdpa",
        "ok: PF ens2f0 is PCI 0000:07:00.0 as lab.toml says",
        "ok: no switchdev PF carries the default route (eno1)",
    ):
        assert fact in details
    assert re.search(r"version dpdk: 20\.11\.0", details)

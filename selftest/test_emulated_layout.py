"""The emulated lab's names, paths and checks, and the snapshot diff: pure, no root needed."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from vdpalab.config import Lab, load_lab, parse_lab
from vdpalab.emulated.netns_lab import HOST_ROLE, lab_layout
from vdpalab.emulated.relabel import relabel_lab_file
from vdpalab.emulated.snapshot import SYSCTLS, diff_snapshots, foreign_filter, machine_snapshot
from vdpalab.errors import LabStateError

pytestmark = [pytest.mark.selftest]

ROOT = Path(__file__).resolve().parent.parent


def _data(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def _lab(data: dict[str, Any], source: Path = ROOT / "lab.toml") -> Lab:
    return parse_lab(data, source=str(source))


def test_default_lab_layout_mirrors_the_seed() -> None:
    layout = lab_layout(load_lab(ROOT / "lab.toml"))
    assert layout.prefix == "vdpalab-emu"
    assert layout.host_netns == "vdpalab-emu-host"
    assert layout.guest_netns == {"c77g153": "vdpalab-emu-c77g153", "c77g159": "vdpalab-emu-c77g159"}
    cables = [(v.name, v.netns, v.peer, v.peer_netns) for v in layout.veths]
    assert cables == [
        ("ens2f0", "vdpalab-emu-host", "ens2f1", "vdpalab-emu-host"),  # the DAC loop: one veth pair
        ("ens2f0_0", "vdpalab-emu-host", "eth0", "vdpalab-emu-c77g153"),
        ("ens2f1_0", "vdpalab-emu-host", "eth0", "vdpalab-emu-c77g159"),
    ]
    assert layout.links_in("vdpalab-emu-host") == ["ens2f0", "ens2f0_0", "ens2f1_0", "ens2f1"]
    assert layout.state_dir == ROOT / ".state" / "emu"
    assert layout.client_key == layout.state_dir / "id_ed25519"
    assert layout.known_hosts == layout.state_dir / "known_hosts"
    host = layout.sshds[0]
    assert (host.role, host.netns, host.address, host.port) == (HOST_ROLE, "vdpalab-emu-host", "127.0.0.1", 22)
    assert host.set_env == {
        "OVS_RUNDIR": str(layout.state_dir / "run"),
        "OVS_DBDIR": str(layout.state_dir / "db"),
        "OVS_LOGDIR": str(layout.state_dir / "log"),
    }
    assert all(not spec.set_env for spec in layout.sshds[1:])


def test_lab_b_shares_nothing_with_the_default_lab() -> None:
    a = lab_layout(load_lab(ROOT / "lab.toml"))
    b_lab = load_lab(ROOT / "labs" / "emulated-b.toml")
    b = lab_layout(b_lab)
    assert b_lab.lab.name == "emu-b"
    assert b.state_dir == ROOT / ".state" / "emu-b"  # "../.state/emu-b" relative to labs/
    assert set(a.namespaces).isdisjoint(b.namespaces)
    assert all(ns.startswith("vdpalab-emu-b-") for ns in b.namespaces)
    # the pid marker of one lab never matches the other's daemons (".state/emu" vs ".state/emu-b")
    assert a.marker not in str(b.ovs.db_sock) and b.marker not in str(a.ovs.db_sock)
    assert {g.address for g in load_lab(ROOT / "lab.toml").guest}.isdisjoint({g.address for g in b_lab.guest})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["emulated"].update(host_netns="other-host") or d["host"].update(netns="other-host"),
         "does not carry the lab's prefix"),
        (lambda d: d["guest"][0]["ssh"].update(netns="someone-elses"), "does not carry the lab's prefix"),
        (lambda d: d["host"].update(netns="vdpalab-emu-elsewhere"), "differs from emulated.host_netns"),
        (lambda d: d["host"].update(key_file="/root/.ssh/id_ed25519"), "must share one key_file"),
        (lambda d: [g["ssh"].update(known_hosts="/etc/ssh/ssh_known_hosts") for g in d["guest"]]
         and d["host"].update(known_hosts="/etc/ssh/ssh_known_hosts"), "must be inside the lab's state dir"),
        (lambda d: d["pf"].pop(), "cannot be paired"),
        (lambda d: d["host"].update(address="192.0.2.1"), "listens on the namespace's loopback"),
        (lambda d: d["emulated"].update(flavour="qemu"), "does not build flavour 'qemu'"),
        (lambda d: d["guest"][1].update(representor=None), "needs a representor"),
    ],
)
def test_layout_refuses_what_it_cannot_build_safely(change: Any, message: str) -> None:
    data = copy.deepcopy(_data(ROOT / "lab.toml"))
    if message == "cannot be paired":
        data["bridge"].pop()  # keep the file valid without ens2f1 (a port may be in one bridge only)
        data["guest"][1]["representor"] = None
    change(data)
    with pytest.raises(LabStateError, match=message):
        lab_layout(_lab(data))


def test_layout_refuses_a_hardware_lab() -> None:
    with pytest.raises(LabStateError, match="hardware lab"):
        lab_layout(load_lab(ROOT / "labs" / "cx6dx-qemu.toml"))


def test_relabel_renames_namespaces_and_moves_state(tmp_path: Path) -> None:
    path = relabel_lab_file(ROOT / "labs" / "emulated-b.toml", tmp_path, "st9", state_dir=tmp_path / "s")
    lab = load_lab(path)
    layout = lab_layout(lab)
    assert lab.lab.name == "st9"
    assert layout.namespaces == ["vdpalab-st9-host", "vdpalab-st9-c77g153", "vdpalab-st9-c77g159"]
    assert layout.state_dir == tmp_path / "s"
    assert lab.resolve(lab.hugepages.mount) == tmp_path / "s" / "hugepages"
    assert [g.address for g in lab.guest] == ["192.168.31.153", "192.168.31.159"]


def test_diff_snapshots_names_every_difference() -> None:
    before = {"netns": ["a"], "hugepages": {"2048kB": {"nr_hugepages": 0}}, "sysctls": {"vm.nr_hugepages": "0"}}
    after = {"netns": ["b"], "hugepages": {"2048kB": {"nr_hugepages": 32}}, "sysctls": {"vm.nr_hugepages": "32"}}
    assert diff_snapshots(before, before) == []
    assert diff_snapshots(before, after) == [
        "hugepages: ~ 2048kB: {'nr_hugepages': 0} -> {'nr_hugepages': 32}",
        "netns: - a",
        "netns: + b",
        "sysctls: ~ vm.nr_hugepages: '0' -> '32'",
    ]


def test_foreign_filter_ignores_only_what_is_provably_someone_elses() -> None:
    before = {"netns": [], "mounts": [], "processes": [], "links": []}
    after = {
        "netns": ["vdpalab-st1-host", "other-lab-host"],
        "mounts": ["/run/netns/vdpalab-st1-host nsfs nsfs", "/run/netns/other-lab-host nsfs nsfs",
                   "/tmp/s/hugepages hugetlbfs nodev pagesize=2M", "/mnt/x tmpfs tmpfs"],
        "processes": ["10 sshd net:[111]: sshd: root@notty", "11 sshd net:[222]: sshd: root@notty",
                      "12 sshd root: sshd: /usr/sbin/sshd -D -f /tmp/s/sshd/host/sshd_config",
                      "13 qemu-system-x86 root: qemu-system-x86_64 -name other"],
        "links": ["veth0 kind=veth UP mtu=1500 master=None"],
    }
    ignore = foreign_filter("vdpalab-st", ["/tmp/s/"], [111])
    assert diff_snapshots(before, after, ignore=ignore) == [
        "links: + veth0 kind=veth UP mtu=1500 master=None",  # root links are never someone else's
        "mounts: + /run/netns/vdpalab-st1-host nsfs nsfs",
        "mounts: + /tmp/s/hugepages hugetlbfs nodev pagesize=2M",
        "mounts: + /mnt/x tmpfs tmpfs",
        "netns: + vdpalab-st1-host",
        "processes: + 10 sshd net:[111]: sshd: root@notty",
        "processes: + 12 sshd root: sshd: /usr/sbin/sshd -D -f /tmp/s/sshd/host/sshd_config",
    ]


def test_machine_snapshot_has_every_section() -> None:
    snap = machine_snapshot()
    assert set(snap) == {"netns", "links", "addresses", "routes", "processes", "mounts", "hugepages", "modules",
                         "sysctls"}
    assert any(line.startswith("lo ") for line in snap["links"])
    assert "net.ipv4.ip_forward" in snap["sysctls"] and "vm.nr_hugepages" in snap["sysctls"]
    assert set(snap["sysctls"]) <= set(SYSCTLS)
    assert all(size.endswith("kB") for size in snap["hugepages"])


def test_cli_registers_lab_actions() -> None:
    from vdpalab.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["lab", "up", "--lab", "x.toml", "--infra-only"])
    assert (args.action, args.lab, args.infra_only) == ("up", "x.toml", True)
    args = parser.parse_args(["lab", "status", "--json"])
    assert (args.action, args.lab, args.json) == ("status", "lab.toml", True)
    assert parser.parse_args(["lab", "down"]).action == "down"


def test_run_netns_mount_is_undone_by_whichever_lab_goes_down_last(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Lab a's first namespace mounts /run/netns, lab b finds it mounted; a goes down first, then b.

    The state before any lab is kept machine-wide, so b (whose own record says "was mounted") still
    unmounts it once the directory is empty. Mounts are simulated: the decision logic is under test.
    """
    from vdpalab.emulated import netns_lab

    run_netns = tmp_path / "netns"
    run_netns.mkdir()
    mounted: list[str] = []
    unmounted: list[list[str]] = []
    monkeypatch.setattr(netns_lab, "NETNS_RUN_DIR", str(run_netns))
    monkeypatch.setattr(netns_lab, "RUN_NETNS_NOTE", tmp_path / "note.json")
    monkeypatch.setattr(netns_lab, "_mountpoints", lambda: list(mounted))

    def fake_umount(argv: list[str], **_: object) -> Any:
        unmounted.append(argv)
        mounted.remove(argv[1])
        return type("R", (), {"returncode": 0})()

    monkeypatch.setattr(netns_lab.subprocess, "run", fake_umount)
    record_a = netns_lab.note_run_netns()  # lab a: not mounted yet, noted machine-wide
    mounted.append(str(run_netns))
    (run_netns / "vdpalab-a-host").touch()
    (run_netns / "vdpalab-b-host").touch()
    record_b = netns_lab.note_run_netns()  # lab b: finds a's mount
    assert (record_a["mounted"], record_b["mounted"]) == (False, True)
    (run_netns / "vdpalab-a-host").unlink()
    assert netns_lab.restore_run_netns(record_a) == []  # b's namespace is still there
    assert unmounted == [] and (tmp_path / "note.json").exists()
    (run_netns / "vdpalab-b-host").unlink()
    assert netns_lab.restore_run_netns(record_b) == [f"unmounted {run_netns} (made a mount point by the first "
                                                       "namespace)"]
    assert unmounted == [["umount", str(run_netns)]] and not (tmp_path / "note.json").exists()

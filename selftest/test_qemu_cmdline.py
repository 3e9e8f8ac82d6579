"""The QEMU argv builder (hardware seed and emulated vhost-user), the QEMU process controller against a fake QEMU,
and the pure OVS-DPDK runtime helpers."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vdpalab.emulated.dpdk import (
    cleanup_dpdk_runtime,
    dpdk_extra_args,
    dpdk_runtime_dir,
    missing_dpdk_drivers,
    ovs_dpdk_other_config,
    vsctl_set_other_config,
)
from vdpalab.qemu import DataNic, QemuProcess, QemuSpec, guest_append, qemu_argv, qmp_command

pytestmark = pytest.mark.selftest

SEED_OPTIONS = ("page-per-vq=on", "iommu_platform=on", "disable-legacy=on")


def _pairs(argv: list[str]) -> list[tuple[str, str]]:
    """(option, value) pairs of an argv whose options all take one value, except the listed flags."""
    flags = {"-nographic", "-no-user-config", "-nodefaults", "-no-reboot"}
    out, i = [], 1
    while i < len(argv):
        if argv[i] in flags:
            out.append((argv[i], ""))
            i += 1
        else:
            out.append((argv[i], argv[i + 1]))
            i += 2
    return out


def test_hardware_seed_command_line() -> None:
    """PROCEDURE.md layer 6: the seed's qemu-system-x86_64 line, with -accel kvm for -enable-kvm."""
    spec = QemuSpec(
        accel="kvm",
        cpu="host",
        memory_mib=8192,
        disk=Path("IMAGE.qcow2"),
        data_nics=(DataNic("vhost-vdpa", Path("/dev/vhost-vdpa-0"), id="vhost-vdpa0", device_options=SEED_OPTIONS),),
        nographic=True,
        minimal_config=False,
        no_reboot=False,
    )
    assert qemu_argv(spec) == [
        "qemu-system-x86_64",
        "-accel", "kvm",
        "-cpu", "host",
        "-m", "8G",
        "-hda", "IMAGE.qcow2",
        "-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0",
        "-device", "virtio-net-pci,netdev=vhost-vdpa0,page-per-vq=on,iommu_platform=on,disable-legacy=on",
        "-nographic",
    ]  # fmt: skip


def test_hardware_guest_with_second_vdpa_and_mac() -> None:
    nic = DataNic("vhost-vdpa", Path("/dev/vhost-vdpa-1"), id="vhost-vdpa1", mac="00:11:22:33:44:10",
                  device_options=SEED_OPTIONS, queues=2)
    argv = qemu_argv(QemuSpec(accel="kvm", cpu="host", data_nics=(nic,)))
    pairs = _pairs(argv)
    assert ("-netdev", "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-1,id=vhost-vdpa1,queues=2") in pairs
    assert ("-device", "virtio-net-pci,netdev=vhost-vdpa1,mac=00:11:22:33:44:10,page-per-vq=on,iommu_platform=on,"
                       "disable-legacy=on") in pairs
    # vhost-vdpa needs no shared memory backend
    assert not any(opt == "-object" for opt, _ in pairs)


def _emulated_spec(tmp: Path, **kw) -> QemuSpec:
    base = dict(
        name="c77g153",
        kernel=tmp / "vmlinuz",
        initrd=tmp / "initrd.img",
        append=guest_append([("52:54:00:AA:01:53", "10.0.2.15/24"), ("52:54:00:30:01:53", "192.168.30.153/24")],
                            hostname="c77g153"),
        mgmt_ssh_port=40022,
        mgmt_mac="52:54:00:aa:01:53",
        nic_romfile="",
        data_nics=(DataNic("vhost-user", tmp / "vhu.sock", mac="52:54:00:30:01:53",
                           device_options=(*SEED_OPTIONS, "vectors=0")),),
        serial_log=tmp / "console.log",
        pidfile=tmp / "qemu.pid",
        qmp_socket=tmp / "qmp.sock",
    )
    base.update(kw)
    return QemuSpec(**base)


def test_emulated_vhost_user_command_line(tmp_path: Path) -> None:
    argv = qemu_argv(_emulated_spec(tmp_path))
    pairs = _pairs(argv)
    assert argv[:3] == ["qemu-system-x86_64", "-no-user-config", "-nodefaults"]
    assert ("-accel", "tcg") in pairs and ("-cpu", "max") in pairs and ("-m", "512M") in pairs
    assert "-smp" not in argv  # 1 is QEMU's default
    # vhost-user: guest RAM must be shared with the backend (OVS maps it)
    assert ("-object", "memory-backend-memfd,id=mem,size=512M,share=on") in pairs
    assert ("-numa", "node,memdev=mem") in pairs
    # QEMU is the socket server, OVS the dpdkvhostuserclient
    assert ("-chardev", f"socket,id=chr-net0,path={tmp_path}/vhu.sock,server=on,wait=off") in pairs
    assert ("-netdev", "type=vhost-user,id=net0,chardev=chr-net0,queues=1") in pairs
    assert ("-device", "virtio-net-pci,netdev=net0,mac=52:54:00:30:01:53,page-per-vq=on,iommu_platform=on,"
                       "disable-legacy=on,vectors=0,romfile=") in pairs
    # management NIC: user networking, restricted, one port forward bound to loopback only
    assert ("-netdev", "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22") in pairs
    assert ("-device", "virtio-net-pci,netdev=mgmt,mac=52:54:00:aa:01:53,romfile=") in pairs
    assert ("-serial", f"file:{tmp_path}/console.log") in pairs
    assert ("-qmp", f"unix:{tmp_path}/qmp.sock,server=on,wait=off") in pairs
    assert ("-pidfile", f"{tmp_path}/qemu.pid") in pairs
    assert ("-display", "none") in pairs and ("-no-reboot", "") in pairs
    # the management NIC comes before the data NIC: eth0 = mgmt in the guest when MACs are not used
    assert argv.index("user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22") < argv.index(
        "type=vhost-user,id=net0,chardev=chr-net0,queues=1"
    )


def test_guest_append() -> None:
    line = guest_append([("52:54:00:AA:01:53", "10.0.2.15/24"), ("52:54:00:30:01:53", "192.168.30.153/24")],
                        hostname="c77g153")
    assert line == ("console=ttyS0 panic=-1 ipv6.disable=1 "
                    "vdpalab.net=52:54:00:aa:01:53,10.0.2.15/24;52:54:00:30:01:53,192.168.30.153/24 "
                    "vdpalab.hostname=c77g153")
    assert " " not in line.split("vdpalab.net=")[1].split()[0]  # one kernel parameter


def test_memory_backends(tmp_path: Path) -> None:
    kvm_huge = qemu_argv(_emulated_spec(tmp_path, accel="kvm", cpu="host", memory_mib=2048,
                                        memory_backend="file", mem_path=Path("/dev/hugepages")))
    assert "memory-backend-file,id=mem,size=2G,mem-path=/dev/hugepages,share=on" in kvm_huge
    assert "-accel" in kvm_huge and kvm_huge[kvm_huge.index("-accel") + 1] == "kvm"
    plain = qemu_argv(_emulated_spec(tmp_path, data_nics=()))
    assert "-object" not in plain and "-numa" not in plain
    with pytest.raises(ValueError, match="mem_path"):
        qemu_argv(_emulated_spec(tmp_path, memory_backend="file"))


def test_socket_paths_too_long_are_refused(tmp_path: Path) -> None:
    long_dir = tmp_path / ("x" * 120)
    with pytest.raises(ValueError, match="longer than"):
        qemu_argv(_emulated_spec(tmp_path, data_nics=(DataNic("vhost-user", long_dir / "vhu.sock"),)))
    with pytest.raises(ValueError, match="QMP"):
        qemu_argv(_emulated_spec(tmp_path, qmp_socket=long_dir / "qmp.sock"))


# ----------------------------------------------------------------------------------------------- the controller

FAKE_QEMU = textwrap.dedent(
    """\
    #!{python}
    # A stand-in for qemu-system-x86_64: pidfile, a console line, and a QMP server that obeys quit.
    import json, os, socket, sys, time
    args = sys.argv[1:]
    opt = {{args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("-")}}
    open(opt["-pidfile"], "w").write(str(os.getpid()))
    mode = os.environ.get("FAKE_QEMU_MODE", "ok")
    with open(opt["-serial"].removeprefix("file:"), "w") as con:
        con.write("[    0.000000] Linux version 6.1\\n")
        con.flush()
        time.sleep(0.2)
        con.write("Kernel panic - not syncing: test\\n" if mode == "panic" else "VDPALAB-GUEST-READY fake 0.2\\n")
    if mode == "deaf":  # no QMP answers: the controller must fall back to SIGKILL
        time.sleep(600)
    path = opt["-qmp"].removeprefix("unix:").split(",")[0]
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    while True:
        conn, _ = srv.accept()
        f = conn.makefile("rwb")
        f.write(b'{{"QMP": {{"version": {{}}, "capabilities": []}}}}\\n'); f.flush()
        for line in f:
            cmd = json.loads(line)["execute"]
            f.write(b'{{"return": {{}}}}\\n'); f.flush()
            if cmd == "quit":
                sys.exit(0)
    """
)


@pytest.fixture
def fake_qemu(tmp_path: Path) -> Path:
    path = tmp_path / "fake-qemu"
    path.write_text(FAKE_QEMU.format(python=sys.executable))
    path.chmod(0o755)
    return path


def test_process_start_marker_qmp_quit(tmp_path: Path, fake_qemu: Path) -> None:
    proc = QemuProcess(_emulated_spec(tmp_path, binary=str(fake_qemu)))
    proc.start()
    try:
        assert proc.wait_for_console("VDPALAB-GUEST-READY", timeout=20) < 20
        deadline = time.monotonic() + 10
        while not proc.qmp_socket.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert qmp_command(proc.qmp_socket, "query-status") == {"return": {}}
        again = QemuProcess.from_pidfile(proc.spec)
        assert again is not None and again.pid == proc.pid
    finally:
        how = proc.stop(timeout=10)
    assert how == "qmp"
    assert not proc.alive()
    assert not proc.pidfile.exists() and not proc.qmp_socket.exists()


def test_process_kill_fallback_and_console_error(tmp_path: Path, fake_qemu: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "deaf")
    proc = QemuProcess(_emulated_spec(tmp_path, binary=str(fake_qemu)))
    proc.start()
    try:
        proc.wait_for_console("VDPALAB-GUEST-READY", timeout=20)
    finally:
        how = proc.stop(timeout=1)
    assert how == "kill" and not proc.alive()

    monkeypatch.setenv("FAKE_QEMU_MODE", "panic")
    proc = QemuProcess(_emulated_spec(tmp_path, binary=str(fake_qemu)))
    proc.start()
    try:
        with pytest.raises(Exception, match="Kernel panic"):
            proc.wait_for_console("VDPALAB-GUEST-READY", timeout=20)
    finally:
        proc.stop(timeout=1)


def test_from_pidfile_refuses_a_foreign_pid(tmp_path: Path) -> None:
    spec = _emulated_spec(tmp_path)
    spec.pidfile.write_text(f"{os.getpid()}\n")  # alive, but not a QEMU with this pidfile
    assert QemuProcess.from_pidfile(spec) is None


# ----------------------------------------------------------------------------------------------- OVS-DPDK helpers


def test_dpdk_extra_and_other_config() -> None:
    huge = Path("/lab/.state/hugepages")
    assert dpdk_extra_args(file_prefix="vdpalab-poc", huge_dir=huge) == (
        "--huge-dir=/lab/.state/hugepages --file-prefix=vdpalab-poc --no-pci"
    )
    # without hugepages --legacy-mem is required, or OVS adds --in-memory and EAL refuses to start
    assert dpdk_extra_args(file_prefix="p", huge_dir=None) == "--no-huge --legacy-mem -m 1024 --no-pci --file-prefix=p"
    cfg = ovs_dpdk_other_config(file_prefix="vdpalab-poc", huge_dir=huge)
    assert cfg == {
        "dpdk-init": "true",
        "dpdk-extra": "--huge-dir=/lab/.state/hugepages --file-prefix=vdpalab-poc --no-pci",
        "vhost-iommu-support": "true",
        "dpdk-socket-mem": "256",
        "pmd-maxsleep": "50",
    }
    assert "dpdk-socket-mem" not in ovs_dpdk_other_config(file_prefix="p", huge_dir=None)
    assert vsctl_set_other_config({"dpdk-init": "true", "dpdk-extra": "--no-pci --file-prefix=p"}) == [
        "set", "Open_vSwitch", ".",
        'other_config:dpdk-init="true"', 'other_config:dpdk-extra="--no-pci --file-prefix=p"',
    ]  # fmt: skip


def test_dpdk_runtime_dir_cleanup(tmp_path: Path) -> None:
    root = tmp_path / "dpdk"
    (root / "vdpalab-a").mkdir(parents=True)
    (root / "vdpalab-a" / "config").write_text("x")
    (root / "other-app").mkdir()
    assert cleanup_dpdk_runtime("vdpalab-a", root=root, remove_root=True) == [root / "vdpalab-a"]
    assert (root / "other-app").is_dir()  # never someone else's prefix, never a non-empty root
    assert cleanup_dpdk_runtime("vdpalab-a", root=root) == []
    (root / "other-app").rmdir()
    assert cleanup_dpdk_runtime("vdpalab-a", root=root, remove_root=True) == [root]
    for bad in ("", "../etc", "a/b", ".."):
        with pytest.raises(ValueError):
            dpdk_runtime_dir(bad)


def test_missing_dpdk_drivers(tmp_path: Path) -> None:
    pmds = tmp_path / "pmds-23.0"
    pmds.mkdir()
    (pmds / "librte_mempool_ring.so.23").write_text("")
    assert missing_dpdk_drivers(pmd_dirs=(pmds,)) == ["librte-bus-vdev23", "librte-net-af-packet23"]
    (pmds / "librte_bus_vdev.so.23").write_text("")
    (pmds / "librte_net_af_packet.so.23.0").write_text("")
    assert missing_dpdk_drivers(pmd_dirs=(pmds,)) == []


# --- the emulated-qemu lab through the hardware layers (pure: no host is contacted) ---------------------

QEMU_LAB = Path(__file__).resolve().parent.parent / "labs" / "emulated-qemu.toml"


def _layers(tmp_path: Path):  # type: ignore[no-untyped-def]
    from vdpalab.config import load_lab
    from vdpalab.layers.base import LayerContext
    from vdpalab.layers.guests import Guests
    from vdpalab.layers.ovs import Ovs

    lab = load_lab(QEMU_LAB)
    ctx = LayerContext(lab=lab, hosts={}, state_dir=tmp_path)
    return lab, Guests(ctx), Ovs(ctx)


def test_emulated_qemu_lab_guest_command_line(tmp_path: Path) -> None:
    """The guests layer renders the qemu lab's guest from lab.toml alone: the seed's NIC options plus vectors=0,
    TCG, a shared memfd, a direct kernel boot, the management port forward and files in the state dir."""
    lab, guests, _ovs = _layers(tmp_path)
    state = QEMU_LAB.parent.parent / ".state" / "emu-qemu"
    guest = lab.guest[0]
    argv = qemu_argv(guests.driver(guest).spec())  # the layer adds -daemonize: the guest runs in the background
    assert guests.driver(guest).command().split()[0] == "qemu-system-x86_64"
    pairs = dict(_pairs(argv[:-1]))
    assert pairs["-accel"] == "tcg" and pairs["-cpu"] == "max" and pairs["-m"] == "512M"
    assert "-smp" not in pairs  # one vCPU is QEMU's default
    assert pairs["-object"] == "memory-backend-memfd,id=mem,size=512M,share=on"
    assert pairs["-kernel"] == f"{state}/guest/vmlinuz" and pairs["-initrd"] == f"{state}/guest/initrd.img"
    assert pairs["-append"] == guest.append and "vdpalab.net=52:54:00:aa:01:53,10.0.2.15/24" in pairs["-append"]
    netdevs = [v for k, v in _pairs(argv[:-1]) if k == "-netdev"]
    devices = [v for k, v in _pairs(argv[:-1]) if k == "-device"]
    assert netdevs == ["user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:2153-:22",
                       "type=vhost-user,id=net0,chardev=chr-net0,queues=1"]
    assert devices == ["virtio-net-pci,netdev=mgmt,mac=52:54:00:aa:01:53",
                       "virtio-net-pci,netdev=net0,mac=00:11:22:33:44:00,"
                       "page-per-vq=on,iommu_platform=on,disable-legacy=on,vectors=0"]
    assert pairs["-chardev"] == f"socket,id=chr-net0,path={state}/guests/c77g153.vhost-user.sock,server=on,wait=off"
    assert pairs["-serial"] == f"file:{state}/guests/c77g153.console.log"
    assert pairs["-pidfile"] == f"{state}/guests/c77g153.pid"
    assert argv[-4:] == ["-no-user-config", "-nodefaults", "-no-reboot", "-daemonize"]


def test_emulated_qemu_lab_ovs_paths_are_relative_to_the_lab_file(tmp_path: Path) -> None:
    """--huge-dir, vhost-server-path and the restart command's program are lab paths: made absolute for OVS."""
    lab, _guests, ovs = _layers(tmp_path)
    state = QEMU_LAB.parent.parent / ".state" / "emu-qemu"
    assert ovs.desired()["dpdk-extra"] == (
        f"--huge-dir={state}/hugepages --file-prefix=vdpalab-emu-qemu-dpdk --no-pci"
    )
    assert ovs.restart_command == f"{state}/bin/ovs-ctl restart"
    assert ovs.service_command("start") == f"{state}/bin/ovs-ctl start"
    port = lab.bridge[0].representors[0]
    assert ovs.port_command("br30-ovs", port) == (
        "ovs-vsctl add-port br30-ovs ens2f0_0 -- set Interface ens2f0_0 type=dpdkvhostuserclient "
        f"options:vhost-server-path={state}/guests/c77g153.vhost-user.sock"
    )
    assert ovs.port_command("br30-ovs", lab.bridge[0].uplink) == (
        "ovs-vsctl add-port br30-ovs ens2f0 -- set Interface ens2f0 type=dpdk "
        "options:dpdk-devargs=net_af_packet0,iface=ens2f0"
    )


def test_guest_boot_fields_are_checked(tmp_path: Path) -> None:
    import tomllib

    from vdpalab.config import parse_lab
    from vdpalab.errors import LabConfigError

    data = tomllib.loads(QEMU_LAB.read_text())
    del data["guest"][0]["kernel"]
    with pytest.raises(LabConfigError, match=r"guest\[0\]\.initrd: initrd is used only with kernel"):
        parse_lab(data, source=str(QEMU_LAB))
    data = tomllib.loads(QEMU_LAB.read_text())
    data["guest"][1]["memory_backend"] = "hugepages"
    with pytest.raises(LabConfigError, match=r"guest\[1\]\.memory_backend"):
        parse_lab(data, source=str(QEMU_LAB))


def test_nested_qemu_guest_on_vhost_vdpa_command_line(tmp_path: Path) -> None:
    """The seed's QEMU guest inside the vDPA lab's VM, rendered by the same builder as on hardware: the seed's
    vhost-vdpa netdev and device options, a shared memfd (VDUSE's userspace maps guest memory), the small guest
    image booted directly, a management port forward for SSH, serial log, QMP and pidfile."""
    from vdpalab.config import load_lab
    from vdpalab.layers.base import LayerContext
    from vdpalab.layers.guests import Guests

    lab = load_lab(Path(__file__).parent / "data" / "labs" / "nested-vdpa-guests.toml")
    guests = Guests(LayerContext(lab=lab, hosts={}, state_dir=tmp_path))
    argv = qemu_argv(guests.driver(lab.guest[0]).spec())
    pairs = _pairs(argv[:-1])
    netdevs = [v for k, v in pairs if k == "-netdev"]
    devices = [v for k, v in pairs if k == "-device"]
    assert netdevs == [
        "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:2153-:22",
        "type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0",
    ]
    assert devices == [
        "virtio-net-pci,netdev=mgmt,mac=52:54:00:aa:01:53",
        "virtio-net-pci,netdev=vhost-vdpa0,page-per-vq=on,iommu_platform=on,disable-legacy=on",
    ]
    found = dict(pairs)
    assert found["-object"] == "memory-backend-memfd,id=mem,size=256M,share=on"
    assert found["-numa"] == "node,memdev=mem"
    assert (found["-accel"], found["-cpu"], found["-m"]) == ("tcg", "max", "256M")
    assert found["-kernel"] == "/var/cache/vdpalab/guest/vmlinuz"
    assert found["-serial"] == "file:/run/vdpalab/nested-vdpa/c77g153.console.log"
    assert found["-qmp"] == "unix:/run/vdpalab/nested-vdpa/c77g153.qmp,server=on,wait=off"
    assert found["-pidfile"] == "/run/vdpalab/nested-vdpa/c77g153.pid"
    assert argv[-1] == "-daemonize"


def test_running_qemu_shows_the_seeds_vhost_vdpa_netdev_in_verify(tmp_path: Path) -> None:
    """verify reads the netdev back from the running process (/proc/PID/cmdline, NULs as spaces): the seed's own
    command line passes, one whose netdev is on another device (or not vhost-vdpa) is a problem naming it."""
    from vdpalab.config import load_lab
    from vdpalab.guests.base import GuestRun
    from vdpalab.layers.base import LayerContext
    from vdpalab.layers.guests import Guests

    lab = load_lab(Path(__file__).parent / "data" / "labs" / "nested-vdpa-guests.toml")
    driver = Guests(LayerContext(lab=lab, hosts={}, state_dir=tmp_path)).driver(lab.guest[0])
    seed = (Path(__file__).parent / "data" / "seed" / "qemu-cmdline-c77g153.txt").read_text()
    proc = " ".join(line.rstrip(" \\") for line in seed.splitlines() if not line.startswith("#"))
    lines, problems = driver.datapath_evidence(GuestRun(True, 4153, cmdline=proc))
    assert lines == [
        "c77g153: QEMU pid 4153 -netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0"
        " -> -device virtio-net-pci,page-per-vq=on,iommu_platform=on,disable-legacy=on"
    ]
    assert problems == []
    other = driver.datapath_evidence(GuestRun(True, 4153, cmdline=proc.replace("vhost-vdpa-0", "vhost-vdpa-7")))
    assert other[1] == ["c77g153: QEMU pid 4153 has no vhost-vdpa netdev on /dev/vhost-vdpa-0"]
    user = proc.replace("type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0", "type=user")
    assert driver.datapath_evidence(GuestRun(True, 4153, cmdline=user)) == (
        [], ["c77g153: QEMU pid 4153 has no vhost-vdpa netdev on /dev/vhost-vdpa-0"]
    )
    assert driver.datapath_evidence(GuestRun(False)) == ([], [])

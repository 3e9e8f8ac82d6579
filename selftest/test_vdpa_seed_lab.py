"""The emu-vdpa-seed lab file (the seed's QEMU guests nested in the vDPA lab VM on vhost_vdpa) says what the seed
does: devices bound to vhost_vdpa by driver_override, each guest on its /dev/vhost-vdpa-N with the seed's QEMU
command line, guest RAM a shared memfd (VDUSE hands vhost-vdpa's memory to OVS-DPDK by its file), guests reached
through the lab host; the VM infrastructure copies the guest image only for those VMs and forwards no port for
them; ``set_mac`` and ``via_lab_host`` behave and are refused where they make no sense."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from vdpalab.config import Lab, QemuGuest, load_lab
from vdpalab.emulated.vdpa_vm_lab import LIBVIRTD_SETUP, VdpaVmLab
from vdpalab.errors import LabConfigError
from vdpalab.guests import driver_for
from vdpalab.layers.base import LayerContext
from vdpalab.layers.guests import Guests
from vdpalab.qemu import qemu_argv

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "labs" / "emulated-vdpa-seed.toml"


@pytest.fixture(scope="module")
def lab() -> Lab:
    return load_lab(LAB)


def test_devices_bind_to_vhost_vdpa_and_each_guest_uses_its_chardev(lab: Lab) -> None:
    assert lab.lab.name == "emu-vdpa-seed" and lab.vdpa.bus_driver == "vhost_vdpa" and lab.vdpa.backend == "vduse"
    chardevs = [d.chardev for d in lab.vdpa.devices]
    assert [g.vdpa_device for g in lab.guest] == chardevs == ["/dev/vhost-vdpa-0", "/dev/vhost-vdpa-1"]
    assert {"qemu-system-x86", "libvirt-daemon", "libvirt-clients"} <= set(lab.emulated.vm.extra_packages)


def test_the_guests_run_the_seeds_qemu_command_line(lab: Lab, tmp_path: Path) -> None:
    guest = lab.guest[0]
    assert isinstance(guest, QemuGuest)
    argv = shlex.split(Guests(LayerContext(lab=lab, hosts={}, state_dir=tmp_path)).driver(guest).command())
    joined = " ".join(argv)
    assert "-netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0" in joined
    device = argv[argv.index("-device", argv.index("type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0")) + 1]
    assert device == "virtio-net-pci,netdev=vhost-vdpa0,page-per-vq=on,iommu_platform=on,disable-legacy=on"
    assert "memory-backend-memfd,id=mem,size=256M,share=on" in argv
    assert argv[argv.index("-serial") + 1].endswith("c77g153.console.log")
    assert argv[argv.index("-qmp") + 1].startswith("unix:") and "-daemonize" in argv
    assert "hostfwd=tcp:127.0.0.1:2153-:22" in joined  # the VM's loopback: reached through the lab host


def test_the_vm_infrastructure_serves_the_nested_guests(lab: Lab) -> None:
    infra = VdpaVmLab(lab)
    assert infra.forwards() == [(2256, 22)]  # the lab VM's sshd only: the guests are reached through it
    assert [g.name for g in infra.vm_guests()] == ["c77g153", "c77g159"]
    assert all(g.ssh.via_lab_host for g in lab.guest)
    # the nested guests' TCG keeps the lab VM's TCG translating: a 2 GiB translation buffer instead of 1 GiB (fewer
    # flushes, 5.7 instead of 7.3 min to the first guest's SSH), on both seed labs' VM command lines
    for path in (LAB, ROOT / "labs" / "emulated-vdpa-seed-libvirt.toml"):
        argv = qemu_argv(VdpaVmLab(load_lab(path)).spec(None))
        assert argv[argv.index("-accel") + 1] == "tcg,thread=multi,tb-size=2048", path
    # libvirtd needs the users its QEMU driver resolves at start, and virsh's socket path
    assert "libvirt-qemu:x:" in LIBVIRTD_SETUP and "/var/run/libvirt" in LIBVIRTD_SETUP


def test_set_mac_lets_the_layer_set_the_mac_of_a_vm(lab: Lab) -> None:
    guest = lab.guest[0]
    assert driver_for(guest).sets_mac is True
    assert driver_for(guest.model_copy(update={"set_mac": False})).sets_mac is False


def test_via_lab_host_is_refused_where_it_makes_no_sense(tmp_path: Path) -> None:
    text = LAB.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(
        text.replace(
            "connect_timeout_s = 20\ncommand_timeout_s = 180",
            "connect_timeout_s = 20\ncommand_timeout_s = 180\nvia_lab_host = true",
            1,
        )
    )
    with pytest.raises(LabConfigError, match=r"host\.via_lab_host: only a guest"):
        load_lab(bad)


def test_a_guest_naming_its_chardev_finds_its_vdpa_device(lab: Lab) -> None:
    """The evidence test keys the OVS port and the guest's counters by device name; a VM guest gives the chardev."""
    assert [lab.vdpa_device_name(g.vdpa_device) for g in lab.guest] == ["vdpa0", "vdpa1"]
    assert lab.vdpa_device_name("vdpa1") == "vdpa1"
    assert lab.vdpa_device_name("/dev/vhost-vdpa-7") == "/dev/vhost-vdpa-7"


def test_a_guest_that_exits_while_qmp_quits_it_is_not_signalled(lab: Lab, tmp_path: Path) -> None:
    """Stopping a QEMU guest early in its boot: socat reports an error as QEMU closes the socket on its way out; the
    guest is gone, so no SIGTERM follows (a real teardown failed on 'kill: No such process')."""
    import re

    from vdpalab.testing.scripted import ScriptedHost, ScriptStep

    run = "/run/vdpalab/emu-vdpa-seed"
    alive = f"qemu-system-x86_64 -name c77g153 -pidfile {run}/c77g153.pid -daemonize "
    host = ScriptedHost.from_pairs([
        ("tr '\\0' ' ' < /proc/457/cmdline", alive),
        ScriptStep(re.compile(r".*qmp_capabilities.*quit.*socat - .*c77g153\.qmp"), rc=1, stderr="Connection reset"),
        ScriptStep("tr '\\0' ' ' < /proc/457/cmdline", rc=1, stderr="No such file or directory"),
        ScriptStep(re.compile(r".*kill -0 457.*"), rc=0),
        (f"rm -f {run}/c77g153.pid {run}/c77g153.qmp", ""),
    ])  # fmt: skip
    layer = Guests(LayerContext(lab=lab, hosts={"host": host}, state_dir=tmp_path))
    layer.journal.record("qemu:c77g153", 457)
    layer.driver(lab.guest[0]).stop()
    host.assert_done()  # exactly these commands: no kill -TERM / -KILL is scripted


PROBE = """
def pytest_collection_finish(session):
    for item in session.items:
        marker = item.get_closest_marker("timeout")
        print("TIMEOUT", item.nodeid, marker.args[0] if marker else None)
        print("SLOW", item.nodeid, item.get_closest_marker("slow") is not None)
"""


def test_its_boots_widen_each_lab_tests_timeout_and_nothing_else(lab: Lab, tmp_path: Path) -> None:
    """The lab boots inside its first test's setup: 180 s for the lab VM plus 600 s per nested guest (waited for
    one after the other) on top of the 300 s a test may take; a netns lab and a test without a lab keep 300 s (a
    timeout ends pytest without teardown, which left this lab up half-way: no test may be cut while it boots)."""
    assert lab.boot_waits_s == 180 + 600 + 600
    assert load_lab(ROOT / "lab.toml").boot_waits_s == 0
    (tmp_path / "timeout_probe.py").write_text(PROBE)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "timeout_probe",
         "--no-reports", "--lab", str(LAB), "--lab", "lab.toml", "tests_bringup/test_guests.py",
         "selftest/test_config.py"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    timeouts = dict(line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("TIMEOUT "))
    seed = [v for k, v in timeouts.items() if k.startswith("tests_bringup/") and "[emu-vdpa-seed]" in k]
    netns = [v for k, v in timeouts.items() if k.startswith("tests_bringup/") and "[emu]" in k]
    plain = [v for k, v in timeouts.items() if k.startswith("selftest/")]
    assert seed and set(seed) == {str(300.0 + 1380.0)}, timeouts
    assert netns and set(netns) == {"None"} and plain and set(plain) == {"None"}, timeouts
    slow = dict(line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("SLOW "))
    assert {v for k, v in slow.items() if "[emu-vdpa-seed]" in k} == {"True"}, slow  # nested guests: -m "not slow"
    assert {v for k, v in slow.items() if "[emu]" in k} == {"False"}, slow

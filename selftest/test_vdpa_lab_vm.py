"""The emulated-vdpa lab for real, on a renamed copy: it comes up, its guests ping over VDUSE, and when its VM is
killed half-way the guests become unreachable (what the affected tests see) while ``lab_down`` still leaves the
machine exactly as it was found (no QEMU, no namespace, hugepages and mounts untouched)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vdpalab import control
from vdpalab.config import Lab, load_lab
from vdpalab.emulated.daemons import netns_inode
from vdpalab.emulated.relabel import relabel_lab_file
from vdpalab.emulated.snapshot import diff_snapshots, foreign_filter, machine_snapshot
from vdpalab.emulated.vdpa_vm_lab import VdpaVmLab
from vdpalab.errors import HostError
from vdpalab.layers import LayerStatus

pytestmark = [pytest.mark.selftest, pytest.mark.emulated, pytest.mark.qemu, pytest.mark.slow]

LAB = Path(__file__).parent.parent / "labs" / "emulated-vdpa.toml"


@pytest.fixture
def vm_lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the emulated-vdpa lab needs root")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    work = Path(tempfile.mkdtemp(prefix="vdpalab-vk-"))
    try:
        yield load_lab(relabel_lab_file(LAB, work, "vk", state_dir=work / "s"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _settled() -> dict:  # type: ignore[type-arg]
    snap = machine_snapshot()
    for _ in range(40):
        time.sleep(0.1)
        again = machine_snapshot()
        if again == snap:
            return snap
        snap = again
    return snap


@pytest.mark.timeout(900)
def test_vm_killed_half_way_fails_the_guests_and_down_still_cleans(vm_lab: Lab) -> None:
    before = machine_snapshot()
    builder = VdpaVmLab(vm_lab)
    inodes: set[int] = set()
    done: list[str] = []
    try:
        with control.lab_up(vm_lab) as handle:
            broken = {n: o.reason for n, o in handle.outcomes.items() if o.status is LayerStatus.BROKEN}
            assert not broken, broken
            inode = netns_inode(builder.netns)
            assert inode is not None
            inodes.add(inode)
            a, b = vm_lab.guest[0], vm_lab.guest[1]
            ping = handle.hosts[a.name].run(["ping", "-c", "5", "-i", "0.2", "-W", "3", b.address], timeout=60)
            assert ping.ok and "5 received" in ping.stdout, ping.stdout + ping.stderr
            vm = builder.running_vm()
            assert vm is not None and vm.pid is not None
            os.kill(vm.pid, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while vm.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not vm.alive()
            try:
                after = handle.hosts[a.name].run(["ping", "-c", "1", "-W", "2", b.address], timeout=30)
                assert not after.ok, "a guest of a dead VM answered"
            except (HostError, OSError):
                pass  # unreachable: what the affected tests see
            assert control.lab_status(vm_lab)["state"] != "up"
    finally:
        done = control.lab_down(vm_lab)
    assert any("dropped" in line for line in done), done
    assert builder.running_vm() is None and netns_inode(builder.netns) is None
    foreign = foreign_filter(("vdpalab-vk-",), [str(vm_lab.state_dir)], inodes)
    left = [line for line in diff_snapshots(before, _settled()) if not foreign(line)]
    assert left == [], left

"""The emulated-qemu lab: real QEMU guests boot, answer over SSH (dropbear), and leave the machine as found.

Every test works on a renamed copy of ``labs/emulated-qemu.toml`` (``vdpalab-stq*-`` namespaces, DPDK file
prefix ``vdpalab-stq*-dpdk``, state under a temporary directory), so a default ``emu-qemu`` lab someone has up
is never touched. The copies share the image cache and one client key, so the guest image is built once.

* a guest whose kernel cannot start init fails the guests layer at once, with its console in the reason;
* up then down: QEMU stopped through QMP, DPDK's runtime directory of the lab's --file-prefix gone, the
  hugepages given back: the machine snapshot after equals the one before;
* dropbear 2022.83 (mkj/dropbear#321): many commands in a row and from several threads on one SSHHost.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from vdpalab import control
from vdpalab.bringup import BringUp
from vdpalab.config import Lab, load_lab
from vdpalab.emulated.daemons import pid_running, read_pidfile
from vdpalab.emulated.dpdk import dpdk_runtime_dir, find_vswitchd_dpdk, missing_dpdk_drivers
from vdpalab.emulated.qemu_lab import QemuLab, dpdk_file_prefix, guest_runtime_files, relabeled_qemu_lab
from vdpalab.emulated.snapshot import machine_snapshot
from vdpalab.errors import LabStateError
from vdpalab.hosts.factory import HostPool
from vdpalab.hosts.ssh import SSHHost
from vdpalab.layers.base import LayerStatus
from vdpalab.testing.machine import Machine

pytestmark = [pytest.mark.selftest, pytest.mark.emulated, pytest.mark.qemu, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "labs" / "emulated-qemu.toml"
TOOLS = ("ip", "ovsdb-tool", "ovsdb-server", "ovs-vsctl", "ssh-keygen", "qemu-system-x86_64", "busybox", "dropbear",
         "dropbearkey", "iperf3", "socat")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, hugepages, mounts, QEMU)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (scripts/setup.sh installs them)"
    try:
        find_vswitchd_dpdk()
    except LabStateError as exc:
        return str(exc)
    if missing_dpdk_drivers():
        return f"DPDK plugins missing: {' '.join(missing_dpdk_drivers())}"
    return None


@pytest.fixture(autouse=True)
def _needs_root_and_tools() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _one_emulated_selftest_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Snapshots compare machine-wide state (hugepages, mounts): the emulated self-tests take turns."""
    with FileLock(str(tmp_path_factory.getbasetemp().parent / "vdpalab-emulated-selftest.lock")):
        yield


_COPIES = itertools.count(1)


def _lab_copy(tmp_path_factory: pytest.TempPathFactory, *, replace: dict[str, str] | None = None) -> Lab:
    """A renamed copy of the qemu lab sharing the image cache and one client key (one cached image for all)."""
    name = f"stq{os.getpid() % 100000}-{next(_COPIES)}"
    directory = tmp_path_factory.mktemp("stq")  # short: OVS and QEMU put unix sockets in the state dir
    return load_lab(relabeled_qemu_lab(SOURCE, directory, name, replace=replace))


def _down_quietly(lab: Lab) -> None:
    try:
        control.lab_down(lab)
    except Exception:
        QemuLab(lab).down()


def _up(lab: Lab) -> control.LabHandle:
    handle = control.lab_up(lab)
    broken = {name: o.reason for name, o in handle.outcomes.items() if o.status.value not in ("up", "not-applicable")}
    if broken:
        handle.close()
        pytest.fail(f"bring-up layers broken: {broken}")
    return handle


def test_a_guest_that_cannot_boot_breaks_the_guests_layer_with_its_console(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # the image boots from its initramfs, whose init is rdinit= (init= is for a root filesystem): without it the
    # kernel finds no root filesystem and panics; panic=-1 with QEMU's -no-reboot then ends QEMU
    broken = {'vdpalab.hostname=c77g153"': 'vdpalab.hostname=c77g153 rdinit=/nonexistent"'}
    lab = _lab_copy(tmp_path_factory, replace=broken)
    assert "rdinit=/nonexistent" in (lab.guest[0].append or "") and "panic=-1" in (lab.guest[0].append or "")
    machine = Machine.of_layouts(QemuLab(lab).layout)
    try:
        started = time.monotonic()
        with control.lab_up(lab) as handle:
            machine.note()
            elapsed = time.monotonic() - started
            outcomes = handle.outcomes
        guests = outcomes["guests"]
        assert outcomes["ovs"].status is LayerStatus.UP, outcomes["ovs"].reason
        assert guests.status is LayerStatus.BROKEN, guests
        reason = guests.reason
        assert "guest c77g153" in reason, reason
        assert "--- console " in reason and "c77g153.console.log" in reason, reason
        assert "Kernel panic" in reason, reason
        assert elapsed < lab.guest[0].boot_timeout_s, f"a dead guest must fail at once: {elapsed:.1f} s"
    finally:
        control.lab_down(lab)
    assert machine.leftovers() == []


def test_up_then_down_stops_qemu_through_qmp_and_leaves_the_machine_as_found(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    lab = _lab_copy(tmp_path_factory)
    prefix = dpdk_file_prefix(lab)
    assert prefix and prefix.startswith(f"vdpalab-{lab.lab.name}-"), prefix
    machine = Machine.of_layouts(QemuLab(lab).layout)
    state = lab.state_dir
    try:
        with _up(lab) as handle:
            machine.note()
            during = machine_snapshot()
            size = f"{lab.hugepages.size_kb}kB"
            assert during["hugepages"][size]["nr_hugepages"] >= lab.hugepages.count
            assert dpdk_runtime_dir(prefix).is_dir(), "OVS-DPDK runs with the lab's --file-prefix"
            pids = {g.name: read_pidfile(guest_runtime_files(lab, g)["pid"]) for g in lab.guest}
            assert all(pid and pid_running(pid) for pid in pids.values()), pids
            a, b = lab.guest
            result = handle.hosts[a.name].run(["ping", "-c", "5", "-i", "0.2", "-W", "2", b.address], timeout=30)
            assert result.ok and "5 received" in result.stdout, result.stdout + result.stderr
            _dropbear_keeps_up(handle.hosts[b.name])
        # the layers' down, as lab_down runs it, to see the guests layer's commands
        pool = HostPool(lab)
        try:
            bring = BringUp(lab, pool, state)
            assert bring.down() == {}
            guest_cmds = bring.layers["guests"].changes
        finally:
            pool.close()
        qmp = [c for c in guest_cmds if "qmp_capabilities" in c and '"quit"' in c and "socat" in c]
        assert len(qmp) == len(lab.guest), guest_cmds
        signalled = [c for c in guest_cmds if "kill -TERM" in c or "kill -KILL" in c]
        assert not signalled, f"QEMU did not quit through QMP: {guest_cmds}"
        assert not [pid for pid in pids.values() if pid and pid_running(pid)], pids
        done = control.lab_down(lab)
        assert any("removed namespace" in line for line in done), done
    finally:
        _down_quietly(lab)
    assert not dpdk_runtime_dir(prefix).exists(), f"{dpdk_runtime_dir(prefix)} left behind"
    assert machine.leftovers() == []


def _dropbear_keeps_up(guest: object) -> None:
    """mkj/dropbear#321: back-to-back commands and concurrent callers on one connection all succeed."""
    assert isinstance(guest, SSHHost)
    guest.run("true", timeout=30)
    transport = guest.connect()
    assert transport.remote_version.startswith("SSH-2.0-dropbear"), transport.remote_version
    assert SSHHost.serial_server(transport)
    for i in range(25):
        result = guest.run(f"echo {i}", timeout=30)
        assert result.ok and result.stdout.strip() == str(i), result
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(8):
            try:
                result = guest.run(["cat", "/proc/uptime"], timeout=60)
                if not result.ok:
                    errors.append(f"worker {n} command {i}: rc={result.rc} {result.stderr}")
            except Exception as exc:  # collected and reported below
                errors.append(f"worker {n} command {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []

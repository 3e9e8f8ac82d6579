"""The emulated lab builds, probes and removes itself, and leaves the machine exactly as it found it.

Every test works on a renamed copy of a lab file (``vdpalab-st*-`` namespaces, state under a
temporary directory), so a default lab (``emu``) that someone has up is never touched.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from vdpalab import control
from vdpalab.config import Lab
from vdpalab.emulated.daemons import pid_running, read_pidfile
from vdpalab.emulated.netns_lab import EmulatedLab, lab_layout
from vdpalab.emulated.relabel import relabeled_lab
from vdpalab.emulated.snapshot import machine_snapshot
from vdpalab.errors import LabStateError
from vdpalab.testing.machine import Machine

pytestmark = [pytest.mark.selftest, pytest.mark.emulated]

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("ip", "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ssh-keygen", "ping")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veths, sshd)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not os.path.exists("/usr/sbin/sshd"):
        missing.append("/usr/sbin/sshd")
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if not os.path.exists("/usr/share/openvswitch/vswitch.ovsschema"):
        return "openvswitch-switch schema not installed"
    return None


@pytest.fixture(autouse=True)
def _needs_root_and_tools() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


_COPIES = itertools.count(1)


def _lab_copy(tmp_path_factory: pytest.TempPathFactory, source: Path, tag: str) -> Lab:
    """A renamed copy, unique to this process and call (xdist workers never share namespace names)."""
    name = f"st{tag}-{os.getpid()}-{next(_COPIES)}"
    # a short directory: OVS puts unix sockets in the state dir (108-byte limit)
    directory = tmp_path_factory.mktemp(f"st{tag}")
    return relabeled_lab(source, directory, name, state_dir=directory / "s")


@pytest.fixture(autouse=True)
def _one_emulated_selftest_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The snapshots compare machine-wide state (hugepages, mounts): xdist workers take turns."""
    with FileLock(str(tmp_path_factory.getbasetemp().parent / "vdpalab-emulated-selftest.lock")):
        yield


@pytest.fixture
def lab_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = _lab_copy(tmp_path_factory, ROOT / "lab.toml", "a")
    yield lab
    _down_quietly(lab)


@pytest.fixture
def lab_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = _lab_copy(tmp_path_factory, ROOT / "labs" / "emulated-b.toml", "b")
    yield lab
    _down_quietly(lab)


def _down_quietly(lab: Lab) -> None:
    """Teardown of a test that failed half-way: never leave a lab behind."""
    try:
        control.lab_down(lab)
    except Exception:
        EmulatedLab(lab).down()


def _up(lab: Lab) -> control.LabHandle:
    """Infrastructure, then the bring-up layers over SSH: every layer up or not available here."""
    handle = control.lab_up(lab)
    assert handle.bringup_available, "vdpalab.bringup is not installed"
    broken = {name: o.reason for name, o in handle.outcomes.items() if o.status.value not in ("up", "not-applicable")}
    if broken:
        handle.close()
        pytest.fail(f"bring-up layers broken: {broken}")
    return handle


def _ping(handle: control.LabHandle, count: int = 3) -> str:
    a, b = handle.lab.guest[0], handle.lab.guest[1]
    result = handle.hosts[a.name].run(["ping", "-c", str(count), "-i", "0.2", "-W", "2", b.address], timeout=30)
    assert result.ok, f"ping {a.name} -> {b.name} ({b.address}) failed:\n{result.stdout}{result.stderr}"
    assert f"{count} received" in result.stdout, result.stdout
    return result.stdout


def test_up_then_down_leaves_the_machine_as_found(lab_a: Lab) -> None:
    machine = Machine.of_layouts(lab_layout(lab_a))
    with _up(lab_a) as handle:
        machine.note()
        assert control.lab_status(lab_a)["state"] == "up"
        during = machine_snapshot()
        assert set(lab_layout(lab_a).namespaces) <= set(during["netns"])
        assert during["links"] == machine.before["links"], "the lab must create nothing in the root namespace"
        # the hugepages layer is real: its reservation and its mount are on the machine (and would be seen if leaked)
        mount = str(lab_a.resolve(lab_a.hugepages.mount))
        assert any(line.startswith(f"{mount} hugetlbfs") for line in during["mounts"]), during["mounts"]
        size = f"{lab_a.hugepages.size_kb}kB"
        assert during["hugepages"][size]["nr_hugepages"] >= lab_a.hugepages.count
        _ping(handle)
        # a test that forgets its iperf3 server: down must not leave it running in a deleted namespace
        server = lab_a.guest[1].name
        handle.hosts[server].check(["iperf3", "-s", "-D", "-p", "5299"])
    done = control.lab_down(lab_a)
    assert any("removed namespace" in line for line in done)
    assert any("leftover process" in line for line in done), done
    assert machine.leftovers() == []
    assert control.lab_status(lab_a)["state"] == "down"


def test_second_up_only_probes_and_is_fast(lab_a: Lab) -> None:
    with _up(lab_a) as first:
        assert first.changed
        pids = control.lab_status(lab_a)["daemons"]
        _ping(first)
    times = []
    for _ in range(3):  # the best of three: a loaded machine (xdist) must not fail a speed target by chance
        t0 = time.monotonic()
        with control.lab_up(lab_a) as second:
            times.append(time.monotonic() - t0)
            assert not second.build.changed, second.build.changed
            assert not second.changed, "a second up must find nothing to do"
            assert control.lab_status(lab_a)["daemons"] == pids, "a second up must not restart daemons"
    with control.lab_up(lab_a) as again:
        _ping(again)
    assert min(times) < 0.5, f"second up took {[round(t, 3) for t in times]} s (target < 0.5 s)"


def test_down_after_kill_9_then_up_again(lab_a: Lab) -> None:
    machine = Machine.of_layouts(lab_layout(lab_a))
    layout = lab_layout(lab_a)
    with _up(lab_a) as handle:
        machine.note()
        _ping(handle)
    vswitchd = read_pidfile(layout.ovs.pidfile("ovs-vswitchd"))
    sshd = read_pidfile(layout.sshd_dir("host") / "sshd.pid")
    assert vswitchd and sshd
    os.kill(vswitchd, signal.SIGKILL)
    os.kill(sshd, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (pid_running(vswitchd) or pid_running(sshd)) and time.monotonic() < deadline:
        time.sleep(0.01)
    status = control.lab_status(lab_a)
    assert status["state"] == "partial"
    assert status["daemons"]["ovs-vswitchd"] is None and status["daemons"]["sshd:host"] is None
    control.lab_down(lab_a)
    assert machine.leftovers() == []
    # and the lab comes up again from scratch
    with _up(lab_a) as again:
        machine.note()
        assert again.build.changed
        _ping(again)
    control.lab_down(lab_a)
    assert machine.leftovers() == []


def test_down_cleans_a_half_built_lab(lab_a: Lab) -> None:
    """A crash after the namespaces and OVS came up but before sshd: down still removes everything."""
    machine = Machine.of_layouts(lab_layout(lab_a))
    emu = EmulatedLab(lab_a)
    emu._write_record()
    emu._ensure_keys()
    emu._ensure_namespaces()
    emu._ensure_links()
    emu.ovs.start()
    machine.note()
    assert emu.status()["state"] == "partial"
    done = control.lab_down(lab_a)
    assert any("stopped ovs-vswitchd" in line for line in done)
    assert not (lab_layout(lab_a).ovs.db_file).exists(), "down forgets the OVS database"
    assert machine.leftovers() == []


def test_two_labs_side_by_side(lab_a: Lab, lab_b: Lab) -> None:
    machine = Machine.of_layouts(lab_layout(lab_a), lab_layout(lab_b))
    with _up(lab_a) as a, _up(lab_b) as b:
        machine.note()
        assert {g.address for g in lab_a.guest}.isdisjoint({g.address for g in lab_b.guest})
        _ping(a)
        _ping(b)
        # each OVS is private: lab a's bridges carry only lab a's ports
        show_a = a.hosts["host"].check("ovs-vsctl show").stdout
        show_b = b.hosts["host"].check("ovs-vsctl show").stdout
        assert show_a.split("\n", 1)[0] != show_b.split("\n", 1)[0], "the two labs share an OVS database"
    control.lab_down(lab_a)
    assert control.lab_status(lab_b)["up"], "taking lab a down must not touch lab b"
    with _up(lab_b) as b_again:
        _ping(b_again)
    control.lab_down(lab_b)
    assert machine.leftovers() == []


def test_cli_up_status_down(lab_a: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    from vdpalab.cli import main

    assert main(["lab", "status", "--lab", lab_a.source]) == 1
    assert main(["lab", "up", "--lab", lab_a.source, "--infra-only"]) == 0
    assert main(["lab", "up", "--lab", lab_a.source, "--infra-only"]) == 0
    out = capsys.readouterr().out
    assert "built in" in out and "already up (probed only)" in out
    assert main(["lab", "status", "--lab", lab_a.source]) == 0
    assert "sshd:host: pid" in capsys.readouterr().out
    assert main(["lab", "down", "--lab", lab_a.source]) == 0
    assert f"removed namespace {lab_layout(lab_a).host_netns}" in capsys.readouterr().out
    assert main(["lab", "status", "--lab", lab_a.source]) == 1


def test_a_failed_cold_build_removes_what_it_built(lab_a: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine.of_layouts(lab_layout(lab_a))

    def no_sshd(self: EmulatedLab) -> list[str]:
        machine.note()
        raise OSError("sshd would not start (injected)")

    monkeypatch.setattr(EmulatedLab, "_ensure_sshds", no_sshd)
    with pytest.raises(LabStateError, match=r"injected.*removed again"):
        control.infra_up(lab_a)
    assert machine.inodes, "the namespaces were built before the failure"
    assert machine.leftovers() == []
    assert control.lab_status(lab_a)["state"] == "down"

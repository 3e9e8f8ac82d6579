"""vdpalab.diagnostics: every section gathered, and a dead or hung host never hangs or breaks it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vdpalab.config import load_lab
from vdpalab.diagnostics import collect_diagnostics
from vdpalab.errors import CommandTimeout, HostUnreachable
from vdpalab.evidence import LogMarker
from vdpalab.hosts.base import CommandResult, Host

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).parent.parent
SEED = Path(__file__).parent / "data" / "seed"
LAB = load_lab(ROOT / "lab.toml")


class FakeHost(Host):
    """Answers each command with ``answer(command)``; counts calls."""

    def __init__(self, name: str, answer: Callable[[str], str | BaseException]) -> None:
        super().__init__(name, 5.0)
        self.answer = answer
        self.calls: list[str] = []

    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        self.calls.append(command)
        out = self.answer(command)
        if isinstance(out, BaseException):
            raise out
        return CommandResult(self.name, command, 0, out, "", time.time(), 0.001)

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        raise NotImplementedError

    def get(self, remote_path: str, local_path: str) -> None:
        raise NotImplementedError


def host_answer(command: str) -> str:
    if command == "dmesg":
        return "[  10.000000] old line\n[  20.000000] mlx5_core 0000:07:00.2: x:1:(pid 1): new line\n"
    if "ovs-vswitchd.log" in command:
        return (SEED / "var-log-messages-guest-start.txt").read_text()
    if command == "ovs-vsctl show":
        return (SEED / "ovs-vsctl-show-br30-br31.txt").read_text()
    if "dump-ports br30-ovs" in command:
        return (SEED / "ovs-ofctl-of14-dump-ports-br30-ovs.txt").read_text()
    return f"output of {command}\n"


JSON_LAB = Path(__file__).parent / "data" / "recorded" / "13_json_netns_lab"  # this lab's guest, recorded
GUEST_READS = {
    "ip -j -s link show dev eth0": "guest-ip-j-s-link-show-eth0-json.txt",
    "ip -j addr show dev eth0": "guest-ip-j-addr-show-json.txt",
    "ip -j neigh show": "guest-ip-j-neigh-show-json.txt",
}


def guest_answer(command: str) -> str:
    return (JSON_LAB / GUEST_READS[command]).read_text() if command in GUEST_READS else f"output of {command}\n"


def test_every_section_is_there() -> None:
    host = FakeHost("c83g155", host_answer)
    host.run("ovs-ofctl del-flows br30-ovs")  # something for the history
    hosts = {"host": host, "c77g153": FakeHost("c77g153", guest_answer), "c77g159": FakeHost("c77g159", guest_answer)}
    sections = collect_diagnostics(LAB, hosts, LogMarker("dmesg", 15.0, "c83g155"))
    assert list(sections) == [
        "host: kernel log since dmesg after [15.000000]",
        "host: ovs-vswitchd.log (tail)",
        "host: cpu load and pressure",
        "host: ovs-vsctl show",
        "host: ovs-appctl dpctl/dump-flows -m",
        "host: dump-ports br30-ovs",
        "host: dump-flows br30-ovs",
        "host: dump-ports br31-ovs",
        "host: dump-flows br31-ovs",
        "c77g153: links, addresses, neighbours",
        "c77g159: links, addresses, neighbours",
        "host: command history",
        "c77g153: command history",
        "c77g159: command history",
    ]
    kernel = sections["host: kernel log since dmesg after [15.000000]"]
    assert "new line" in kernel and "old line" not in kernel
    assert "<-- known harmless (IGMP flow key, see the seed)" in sections["host: ovs-vswitchd.log (tail)"]
    assert "ens2f0_0" in sections["host: dump-ports br30-ovs"]
    assert "--names" in sections["host: dump-ports br30-ovs"].splitlines()[0]
    assert "ovs-ofctl del-flows br30-ovs" in sections["host: command history"]
    net = sections["c77g153: links, addresses, neighbours"]  # ip -j read and summed up
    assert "eth0: state UP mtu 9000 mac 00:11:22:33:44:00" in net
    assert "rx 7 packets 586 bytes 0 errors 0 dropped; tx 7 packets 602 bytes" in net
    assert "eth0: 192.168.30.153/24 (global), fe80::84c5:c2ff:feae:94df/64 (link)" in net
    assert "192.168.30.159 dev eth0 lladdr 00:11:22:33:44:10 REACHABLE" in net


def test_dead_guest_is_asked_once_and_said_so() -> None:
    dead = FakeHost("c77g159", lambda c: HostUnreachable("c77g159", c, "connection refused"))
    hosts = {"host": FakeHost("c83g155", host_answer), "c77g153": FakeHost("c77g153", guest_answer), "c77g159": dead}
    sections = collect_diagnostics(LAB, hosts, None)
    assert len(dead.calls) == 1
    assert "unreachable" in sections["c77g159: links, addresses, neighbours"]
    assert "c77g159: c77g159: unreachable" in sections["unreachable hosts"]
    assert "unreachable" in sections["c77g159: command history"]  # its history shows the failed attempt


def test_hung_command_and_failing_opener_do_not_stop_the_rest() -> None:
    def slow(command: str) -> str | BaseException:
        if command == "ovs-vsctl show":
            return CommandTimeout("c83g155", command, 8.0)
        return host_answer(command)

    class Pool(dict):
        def __getitem__(self, key: str) -> Host:
            if key == "c77g153":
                raise OSError("cannot open SSH connection")
            return super().__getitem__(key)

    hosts = Pool(host=FakeHost("c83g155", slow), c77g159=FakeHost("c77g159", guest_answer))
    sections = collect_diagnostics(LAB, hosts, LogMarker.start("c83g155"))
    assert "timed out after 8 s" in sections["host: ovs-vsctl show"]
    assert "cannot open SSH connection" in sections["c77g153: links, addresses, neighbours"]
    assert "eth0" in sections["c77g159: links, addresses, neighbours"]
    assert "journalctl -k -b" in sections["host: kernel log since start of the log"]


def test_console_logs_from_the_state_dir(tmp_path: Path) -> None:
    (tmp_path / "guests").mkdir()
    (tmp_path / "guests" / "c77g153.serial.log").write_text("Linux version 6.1\nlogin:\n")
    hosts = {"host": FakeHost("c83g155", host_answer)}
    sections = collect_diagnostics(LAB, hosts, None, state_dir=tmp_path)
    assert sections["c77g153: console c77g153.serial.log"].endswith("login:")


def test_a_lab_vm_that_stopped_answering_shows_its_console(tmp_path: Path) -> None:
    """The vDPA lab's host is a VM: when it stops answering mid-run (a kernel panic ends QEMU), its console's tail
    is in the report; while it answers, its console is left out."""
    (tmp_path / "vm").mkdir()
    panic = "[  446.75] Oops: int3: 0000 [#1]\n[  446.76] Kernel panic - not syncing\n"
    (tmp_path / "vm" / "console.log").write_text(panic)
    title = "c83g155: lab VM console vm/console.log (tail)"
    dead = FakeHost("c83g155", lambda c: HostUnreachable("c83g155", c, "connection refused"))
    sections = collect_diagnostics(LAB, {"host": dead}, None, state_dir=tmp_path)
    assert sections[title].endswith("Kernel panic - not syncing") and len(dead.calls) == 1
    assert "c83g155" in sections["unreachable hosts"]
    alive = collect_diagnostics(LAB, {"host": FakeHost("c83g155", host_answer)}, None, state_dir=tmp_path)
    assert title not in alive


def test_the_cpu_load_section_reads_this_machine() -> None:
    """The command the CPU section runs, on this machine: cores, load average, PSI (or says PSI is off)."""
    import subprocess

    from vdpalab.diagnostics import CPU_LOAD

    out = subprocess.run(["sh", "-c", CPU_LOAD], capture_output=True, text=True, timeout=10, check=True).stdout
    lines = out.splitlines()
    assert int(lines[0]) >= 1
    assert len(lines[1].split()) == 5 and float(lines[1].split()[0]) >= 0
    assert lines[2].startswith("some avg10=") or "PSI off" in lines[2]

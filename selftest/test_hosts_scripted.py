"""ScriptedHost: replays an exact command sequence and catches every deviation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vdpalab.errors import CommandFailed, CommandTimeout, HostUnreachable
from vdpalab.testing.scripted import ScriptedHost, ScriptMismatch, ScriptStep

pytestmark = pytest.mark.selftest


def test_replays_results_in_order() -> None:
    host = ScriptedHost(
        "dut",
        [
            ScriptStep("uname -r", stdout="6.1.0-18-amd64\n"),
            ScriptStep(re.compile(r"ip -j link show dev \S+"), stdout="[]\n", rc=1, stderr="Device does not exist\n"),
        ],
    )
    assert host.run("uname -r").stdout == "6.1.0-18-amd64\n"
    result = host.run(["ip", "-j", "link", "show", "dev", "eth7"])
    assert (result.rc, result.stdout, result.stderr, result.host) == (1, "[]\n", "Device does not exist\n", "dut")
    host.assert_done()
    assert host.executed == ["uname -r", "ip -j link show dev eth7"]
    assert [e.outcome for e in host.history.entries()] == ["ok", "failed"]


def test_unexpected_command_is_a_mismatch() -> None:
    host = ScriptedHost.from_pairs([("ovs-vsctl show", "")], name="dut")
    with pytest.raises(ScriptMismatch, match=r"command #1 was 'ovs-vsctl list-br', expected 'ovs-vsctl show'"):
        host.run("ovs-vsctl list-br")
    assert isinstance(ScriptMismatch("x"), AssertionError)
    # the script did not advance: the expected command still works
    host.run("ovs-vsctl show")
    host.assert_done()


def test_out_of_order_command_is_named_as_such() -> None:
    host = ScriptedHost.from_pairs([("modprobe vdpa", ""), ("modprobe mlx5_vdpa", "")])
    with pytest.raises(ScriptMismatch, match="out of order"):
        host.run("modprobe mlx5_vdpa")


def test_extra_command_after_the_script_is_a_mismatch() -> None:
    host = ScriptedHost.from_pairs([("true", "")])
    host.run("true")
    with pytest.raises(ScriptMismatch, match="unexpected command #2 'reboot'"):
        host.run("reboot")


def test_remaining_steps_fail_assert_done() -> None:
    host = ScriptedHost.from_pairs([("a", ""), ("b", ""), (re.compile("c.*"), "")])
    host.run("a")
    with pytest.raises(ScriptMismatch, match=r"2 scripted step\(s\) never ran: 'b', /c\.\*/"):
        host.assert_done()
    assert len(host.remaining) == 2


def test_regex_must_match_the_whole_command() -> None:
    host = ScriptedHost("dut", [ScriptStep(re.compile(r"ping -c \d+ 10\.0\.0\.2"))])
    with pytest.raises(ScriptMismatch):
        host.run("ping -c 3 10.0.0.2; reboot")
    host.run("ping -c 3 10.0.0.2")


def test_scripted_failures_raise_like_real_hosts() -> None:
    host = ScriptedHost(
        "dut",
        [
            ScriptStep("sleep 30", raises="timeout"),
            ScriptStep("true", raises="unreachable"),
            ScriptStep("false", rc=1, stderr="boom\n"),
        ],
    )
    with pytest.raises(CommandTimeout) as timeout:
        host.run("sleep 30", timeout=0.5)
    assert timeout.value.timeout == 0.5
    with pytest.raises(HostUnreachable):
        host.run("true")
    with pytest.raises(CommandFailed, match="rc=1: boom"):
        host.check("false")
    host.assert_done()
    assert [e.outcome for e in host.history.entries()] == ["timeout", "unreachable", "failed"]
    with pytest.raises(ValueError):
        ScriptStep("x", raises="crash")  # type: ignore[arg-type]


def test_from_pairs_with_rc_and_stdout_file(tmp_path: Path) -> None:
    recorded = tmp_path / "vdpa_dev_show.txt"
    recorded.write_text("vdpa0: type network mgmtdev pci/0000:3b:00.2\n")
    host = ScriptedHost.from_pairs([("vdpa dev show", recorded), ("vdpa mgmtdev show", "", 2)], name="dut")
    assert host.run("vdpa dev show").stdout.startswith("vdpa0: type network")
    assert host.run("vdpa mgmtdev show").rc == 2
    host.assert_done()


def test_env_and_sudo_are_part_of_the_command() -> None:
    host = ScriptedHost(
        "dut",
        [ScriptStep("export OVS_RUNDIR=/run/x; sudo -n sh -c 'ovs-vsctl show'")],
        needs_sudo=False,
    )
    with pytest.raises(ScriptMismatch):
        host.run("ovs-vsctl show", env={"OVS_RUNDIR": "/run/x"}, sudo=True)
    sudo_host = ScriptedHost(
        "dut", [ScriptStep("sudo -n sh -c 'export OVS_RUNDIR=/run/x; ovs-vsctl show'")], needs_sudo=True
    )
    sudo_host.run("ovs-vsctl show", env={"OVS_RUNDIR": "/run/x"}, sudo=True)
    sudo_host.assert_done()


def test_put_get_use_in_memory_files(tmp_path: Path) -> None:
    host = ScriptedHost("dut", [], files={"/etc/lab.conf": "a=1\n"})
    local = tmp_path / "lab.conf"
    host.get("/etc/lab.conf", str(local))
    assert local.read_text() == "a=1\n"
    local.write_text("a=2\n")
    host.put(str(local), "/tmp/lab.conf", mode=0o600)
    assert host.files["/tmp/lab.conf"] == b"a=2\n"
    assert host.transfers == [("get", str(local), "/etc/lab.conf"), ("put", str(local), "/tmp/lab.conf")]
    with pytest.raises(FileNotFoundError):
        host.get("/nope", str(tmp_path / "nope"))
    host.assert_done()


def test_history_redacts_secrets() -> None:
    host = ScriptedHost.from_pairs([(re.compile(r"curl .*"), "")])
    host.history.add_secret("tok-123")
    host.run("curl -H 'Authorization: tok-123' http://127.0.0.1/ --password hunter2")
    command = host.history.entries()[0].command
    assert "tok-123" not in command and "hunter2" not in command

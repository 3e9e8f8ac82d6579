"""LocalHost and the shared Host behaviour (history, redaction, errors), against real processes."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from vdpalab.errors import CommandFailed, CommandTimeout
from vdpalab.hosts import LocalHost
from vdpalab.processes import pid_running, pid_state, wait_pid_stopped

pytestmark = pytest.mark.selftest


@pytest.fixture
def host() -> LocalHost:
    return LocalHost("local", command_timeout=10)


def test_run_captures_rc_stdout_stderr(host: LocalHost) -> None:
    result = host.run("echo out; echo err >&2; exit 3")
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.host == "local" and not result.ok and result.duration >= 0


def test_list_command_is_quoted(host: LocalHost) -> None:
    assert host.run(["printf", "%s|", "a b", "$HOME", "'q'"]).stdout == "a b|$HOME|'q'|"


def test_env_and_stdin(host: LocalHost) -> None:
    result = host.run('printf "%s:" "$GREETING"; cat', env={"GREETING": "hello world"}, stdin="from stdin")
    assert result.stdout == "hello world:from stdin"


def test_stdin_is_closed_when_not_given(host: LocalHost) -> None:
    # a command reading stdin must see EOF, not hang until the timeout
    assert host.run("cat; echo done", timeout=5).stdout == "done\n"


def test_non_utf8_output_is_replaced(host: LocalHost) -> None:
    assert host.run(r"printf 'a\377b'").stdout == "a\ufffdb"


def test_large_output_does_not_deadlock(host: LocalHost) -> None:
    result = host.run("head -c 10000000 /dev/zero | tr '\\0' x; head -c 2000000 /dev/zero | tr '\\0' y >&2", timeout=30)
    assert len(result.stdout) == 10_000_000 and len(result.stderr) == 2_000_000


def test_large_stdin_while_output_flows(host: LocalHost) -> None:
    data = "0123456789abcdef\n" * 400_000
    assert host.run("cat", stdin=data, timeout=30).stdout == data


def test_signal_death_reports_128_plus_signal(host: LocalHost) -> None:
    assert host.run("kill -KILL $$").rc == 137


def test_timeout_kills_the_whole_process_group(host: LocalHost, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    marker = f"vdpalab-local-{uuid.uuid4().hex[:8]}"
    # a grandchild in the background and a child in the foreground, both in the command's group
    command = f"sh -c 'exec -a {marker} sleep 30' & echo $! > {pids}; sleep 30; echo never"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        host.run(command, timeout=0.5)
    assert time.monotonic() - started < 5
    assert info.value.timeout == 0.5 and "timed out after 0.5 s" in str(info.value)
    background = int(pids.read_text())
    assert wait_pid_stopped(background, 5), f"background pid {background} survived: state {pid_state(background)}"
    assert not any(marker in _cmdline(pid) for pid in _all_pids())
    assert host.history.entries()[-1].outcome == "timeout"


def test_command_failed_names_host_command_rc_and_stderr(host: LocalHost) -> None:
    with pytest.raises(CommandFailed) as info:
        host.run("echo noise; echo 'no such device: eth9' >&2; exit 4", check=True)
    message = str(info.value)
    assert message.startswith("local: ")
    assert "exit 4" in message and "rc=4" in message and "no such device: eth9" in message
    assert info.value.result.rc == 4


def test_check_passes_through_on_success(host: LocalHost) -> None:
    assert host.check("echo ok").stdout == "ok\n"


def test_history_records_outcomes_and_redacts_secrets(host: LocalHost) -> None:
    host.history.add_secret("s3cr3t-value")
    host.run("echo s3cr3t-value >/dev/null")
    host.run("false")
    host.run("echo password=hunter2 token abc >/dev/null")
    with pytest.raises(CommandFailed) as info:
        host.run("echo s3cr3t-value; exit 2", check=True)
    entries = host.history.entries()
    assert [e.outcome for e in entries] == ["ok", "failed", "ok", "failed"]
    assert entries[0].command == "echo *** >/dev/null"
    assert "hunter2" not in entries[2].command and "abc" not in entries[2].command
    assert all("s3cr3t-value" not in e.command for e in entries)
    # the exception message goes to logs: redacted as well (command and output tail)
    assert "s3cr3t-value" not in str(info.value) and "rc=2" in str(info.value)
    assert entries[1].rc == 1 and entries[0].rc == 0


def test_put_get_roundtrip(host: LocalHost, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(bytes(range(256)) * 100)
    host.put(str(source), str(tmp_path / "remote.bin"), mode=0o600)
    assert os.stat(tmp_path / "remote.bin").st_mode & 0o777 == 0o600
    host.get(str(tmp_path / "remote.bin"), str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert host.read_text(str(tmp_path / "remote.bin"))[:3] == "\x00\x01\x02"


def test_pid_running_treats_zombies_as_stopped() -> None:
    pid = os.fork()
    if pid == 0:  # child: exit at once and stay a zombie until reaped
        os._exit(0)
    try:
        assert wait_pid_stopped(pid, 5)
        assert pid_state(pid) == "Z"  # kill -0 would still succeed here
        os.kill(pid, 0)
        assert not pid_running(pid)
    finally:
        os.waitpid(pid, 0)
    assert pid_state(pid) is None


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class _BatchingHost(LocalHost):
    """A LocalHost that batches prefetched reads, as SSHHost does (the mechanism is the base class's)."""

    batches_reads = True


def test_prefetch_runs_reads_once_and_each_result_is_the_commands_own(tmp_path: Path) -> None:
    reads = [
        "echo out; echo err >&2; exit 3",
        "printf 'no newline'",
        ["printf", "%s\n", "a b", "# not a comment)"],
        f"cat {tmp_path}/counter 2>/dev/null || echo none",
        "cat",  # stdin is closed in a batch: EOF, not a hang
    ]
    plain = LocalHost("plain", command_timeout=10)
    want = [plain.run(c) for c in reads]
    host = _BatchingHost("batching", command_timeout=10)
    host.prefetch(reads)
    (tmp_path / "counter").write_text("written after the prefetch\n")
    got = [host.run(c) for c in reversed(reads)][::-1]
    assert [(r.rc, r.stdout, r.stderr) for r in got] == [(r.rc, r.stdout, r.stderr) for r in want]
    assert got[3].stdout == "none\n"  # it ran in the batch, before the file existed
    ran = [e.command for e in host.history.entries() if e.duration > 0]
    assert len(ran) == 1 and "vdpalab-batch-" in ran[0]  # one round trip for five reads


def test_a_command_that_was_not_prefetched_drops_the_rest(tmp_path: Path) -> None:
    host = _BatchingHost("batching", command_timeout=10)
    marker = tmp_path / "m"
    host.prefetch([f"cat {marker} 2>/dev/null || echo none", "true"])
    host.run(f"echo changed > {marker}")  # may change what the reads see
    assert host.run(f"cat {marker} 2>/dev/null || echo none").stdout == "changed\n"
    host.prefetch(["echo a", "echo b"])
    host.run("echo fed", stdin="x")  # a command fed stdin is never taken from the batch, and drops it
    assert host._prefetched == {}


def test_prefetch_is_plain_runs_where_the_backend_does_not_batch(host: LocalHost) -> None:
    host.prefetch(["echo a", "echo b"])
    assert host.history.entries() == [] and host.run("echo a").stdout == "a\n"


def test_exit_ends_only_its_own_read_and_a_batch_that_times_out_leaves_nothing() -> None:
    host = _BatchingHost("batching", command_timeout=10)
    host.prefetch(["exit 7; echo never", "echo after"])
    assert host.run("exit 7; echo never").rc == 7 and host.run("echo after").stdout == "after\n"
    host.prefetch(["echo one", "sleep 5"], timeout=0.5)  # the batch is cut: nothing kept, no error
    assert host._prefetched == {}
    assert [e.outcome for e in host.history.entries()][-1] == "timeout"


def test_a_second_prefetch_keeps_the_first_and_sends_only_new_reads() -> None:
    host = _BatchingHost("batching", command_timeout=10)
    host.prefetch(["echo a", "echo b", "echo c"])  # as a layer's verify, before its probe prefetches again
    host.prefetch(["echo a", "echo b"])
    host.prefetch(["echo a", "echo d"])
    assert [host.run(f"echo {x}").stdout for x in "abcd"] == ["a\n", "b\n", "c\n", "d\n"]
    batches = [e.command for e in host.history.entries() if "vdpalab-batch-" in e.command]
    assert len(batches) == 2 and "echo d" in batches[1] and "echo a" not in batches[1]


def test_run_sequence_stops_at_the_first_failure_in_one_round_trip(tmp_path: Path) -> None:
    host = _BatchingHost("batching", command_timeout=10)
    done = tmp_path / "done"
    results = host.run_sequence(["echo one", f"echo two > {done}", "echo err >&2; exit 4", f"rm {done}"])
    assert [(r.rc, r.stdout, r.stderr) for r in results] == [(0, "one\n", ""), (0, "", ""), (4, "", "err\n")]
    assert done.exists()  # the command after the failure never ran
    assert len([e for e in host.history.entries() if "vdpalab-batch-" in e.command]) == 1
    plain = LocalHost("plain", command_timeout=10)
    again = plain.run_sequence(["echo one", "exit 4", "echo never"])
    assert [r.rc for r in again] == [0, 4] and len(plain.history.entries()) == 2
    assert [r.stdout for r in host.run_sequence(["echo a", "echo b"])] == ["a\n", "b\n"]

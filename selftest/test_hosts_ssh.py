"""SSHHost against a real OpenSSH server started by the test (no mocks).

The server is private (own keys, config, port on 127.0.0.1, clean home in a
private mount namespace) and is stopped by pid afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vdpalab.emulated.netns_lab import note_run_netns, restore_run_netns, run_netns_left_mounted
from vdpalab.emulated.sshd import SshdServer, start_sshd
from vdpalab.errors import CommandFailed, CommandTimeout, HostKeyRejected, HostUnreachable
from vdpalab.hosts.netns import free_tcp_port
from vdpalab.hosts.ssh import SSHHost
from vdpalab.processes import descendants, pid_running, wait_pid_stopped

pytestmark = [pytest.mark.selftest, pytest.mark.machine]  # sshd and dropbear: daemons a machine snapshot watches

_CAN_RUN = os.geteuid() == 0 and os.path.exists("/usr/sbin/sshd") and shutil.which("ssh-keygen") is not None
needs_sshd = pytest.mark.skipif(not _CAN_RUN, reason="needs root, /usr/sbin/sshd and ssh-keygen")


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdServer]:
    if not _CAN_RUN:
        pytest.skip("needs root, /usr/sbin/sshd and ssh-keygen")
    # MaxSessions 10 is sshd's default: the client must queue, not rely on a higher limit
    server = start_sshd(max_sessions=10, set_env={"VDPALAB_SELFTEST": "from-sshd-config"})
    try:
        yield server
    finally:
        server.stop()
        assert not pid_running(server.pid)


@pytest.fixture(scope="module")
def host(sshd: SshdServer) -> Iterator[SSHHost]:
    with sshd.host("target", command_timeout=20) as h:
        yield h


def _connection(h: SSHHost) -> str:
    """Client address and port as sshd sees them: equal for commands sharing one connection."""
    return " ".join(h.check("echo $SSH_CONNECTION").stdout.split()[:2])


@needs_sshd
def test_connect_and_run(host: SSHHost) -> None:
    result = host.run("echo out; echo err >&2; exit 3")
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.host == "target" and result.command == "echo out; echo err >&2; exit 3"
    assert host.run(["printf", "%s|", "a b", "$HOME"]).stdout == "a b|$HOME|"
    assert host.run('printf "%s:" "$K"; cat', env={"K": "v w"}, stdin="in put").stdout == "v w:in put"
    assert host.run("cat; echo eof", timeout=5).stdout == "eof\n"  # no stdin given: EOF, no hang
    assert host.run("echo $VDPALAB_SELFTEST").stdout == "from-sshd-config\n"  # SetEnv from the helper
    assert host.run("kill -KILL $$").rc == 137
    # the login shell's rc files are the clean temporary home's, not the machine's
    assert host.run("ls -A ~ | wc -l").stdout.strip() == "0"


@needs_sshd
def test_prefetched_reads_take_one_channel_and_give_each_commands_own_result(host: SSHHost) -> None:
    reads = ["echo out; echo err >&2; exit 3", ["printf", "%s|", "a b", "$HOME"], "cat; echo eof", "printf x"]
    want = [host.run(c) for c in reads]
    host.prefetch(reads)
    before = len(host.history.entries())
    got = [host.run(c) for c in reads]
    assert [(r.rc, r.stdout, r.stderr) for r in got] == [(r.rc, r.stdout, r.stderr) for r in want]
    taken = host.history.entries()[before:]
    assert len(taken) == 4 and all(e.duration == 0.0 for e in taken)  # none of them opened a channel


@needs_sshd
def test_a_batch_that_times_out_is_named_by_its_commands(host: SSHHost) -> None:
    """A sequence cut by its timeout names the commands it ran, not the shell text that wraps them in one batch."""
    with pytest.raises(CommandTimeout) as info:
        host.run_sequence(["true", "sleep 30"], timeout=1)
    message = str(info.value)
    assert "'2 batched commands: true; sleep 30'" in message and "@@" not in message, message


@needs_sshd
def test_one_connection_is_reused(host: SSHHost) -> None:
    first = _connection(host)
    transport = host.connect()
    for _ in range(5):
        assert _connection(host) == first
    assert host.connect() is transport


@needs_sshd
def test_closed_port_is_unreachable_within_connect_timeout(sshd: SshdServer) -> None:
    port = free_tcp_port()
    h = SSHHost(
        "nowhere", "127.0.0.1", port=port, key_file=str(sshd.client_key), connect_timeout=2, host_key_policy="ignore"
    )
    started = time.monotonic()
    with pytest.raises(HostUnreachable) as info:
        h.run("true")
    assert time.monotonic() - started < 2.5
    assert f"127.0.0.1:{port}" in str(info.value) and "nowhere: unreachable" in str(info.value)
    assert h.history.entries()[-1].outcome == "unreachable"


@needs_sshd
def test_silent_server_is_unreachable_within_connect_timeout(sshd: SshdServer) -> None:
    # the kernel completes the TCP handshake but nobody ever sends an SSH banner
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        h = SSHHost(
            "silent", "127.0.0.1", port=port, key_file=str(sshd.client_key), connect_timeout=1, host_key_policy="ignore"
        )
        started = time.monotonic()
        with pytest.raises(HostUnreachable, match="within 1 s"):
            h.run("true")
        assert time.monotonic() - started < 2.5


@needs_sshd
def test_timeout_kills_the_remote_process_group(host: SSHHost, tmp_path: Path) -> None:
    marker = f"vdpalab-timeout-{uuid.uuid4().hex[:10]}"
    pgid_file = f"/tmp/{marker}.pgid"
    # a background child and a foreground child, both must die with the group
    command = f"ps -o pgid= $$ > {pgid_file}; sleep 30 & sleep 30; : {marker}"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        host.run(command, timeout=0.5)
    assert time.monotonic() - started < 3
    assert info.value.timeout == 0.5 and "timed out after 0.5 s and was killed" in str(info.value)
    try:
        pgid = int(host.check(["cat", pgid_file]).stdout)
        # checked over the same connection: nothing of the group runs (zombies awaiting a reaper are dead)
        alive = ""
        for _ in range(100):
            alive = host.run(f"ps -o pid=,stat=,args= -g {pgid} | grep -v ' Z'").stdout.strip()
            alive += host.run(f"pgrep -af '[v]dpalab-timeout-{marker[16:]}' | grep -v pgrep").stdout.strip()
            if not alive:
                break
            time.sleep(0.05)
        assert not alive, f"still running on the remote side: {alive}"
    finally:
        host.run(["rm", "-f", pgid_file])
    assert host.run("echo still usable").stdout == "still usable\n"


@needs_sshd
def test_large_output_does_not_deadlock(host: SSHHost) -> None:
    result = host.run("head -c 10000000 /dev/zero | tr '\\0' x; head -c 3000000 /dev/zero | tr '\\0' y >&2", timeout=30)
    assert len(result.stdout) == 10_000_000 and set(result.stdout) == {"x"}
    assert len(result.stderr) == 3_000_000 and set(result.stderr) == {"y"}


@needs_sshd
def test_large_stdin_while_output_flows(host: SSHHost) -> None:
    data = "0123456789abcdef\n" * 400_000  # 6.8 MB, more than the SSH window and the pipes hold
    result = host.run("cat; echo end >&2", stdin=data, timeout=30)
    assert result.stdout == data and result.stderr == "end\n"


@needs_sshd
def test_twenty_concurrent_commands_share_one_connection(host: SSHHost) -> None:
    first = _connection(host)
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = host.check(f"sleep 0.2; echo {i} $SSH_CONNECTION").stdout
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(results) == list(range(20))
    for i, out in results.items():
        number, client, client_port, *_ = out.split()
        assert number == str(i) and f"{client} {client_port}" == first
    # 20 x 0.2 s with at most 8 at a time: three waves, not twenty
    assert time.monotonic() - started < 3.5


@needs_sshd
def test_non_utf8_output_is_replaced(host: SSHHost) -> None:
    result = host.run(r"printf 'a\377b'; printf '\376' >&2")
    assert result.stdout == "a\ufffdb" and result.stderr == "\ufffd"


@needs_sshd
def test_command_failed_message(host: SSHHost) -> None:
    with pytest.raises(CommandFailed) as info:
        host.run("echo 'RTNETLINK answers: Operation not supported' >&2; exit 2", check=True)
    message = str(info.value)
    assert message.startswith("target: command ")
    assert "exit 2" in message and "rc=2" in message and "RTNETLINK answers: Operation not supported" in message
    assert info.value.result.rc == 2 and info.value.host == "target"


@needs_sshd
def test_put_get_roundtrip(host: SSHHost, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    source = tmp_path / "source.bin"
    source.write_bytes(payload)
    remote = f"/tmp/vdpalab-put-{uuid.uuid4().hex[:10]}.bin"
    try:
        host.put(str(source), remote, mode=0o640)
        assert host.check(["stat", "-c", "%a %s", remote]).stdout.split() == ["640", str(len(payload))]
        host.get(remote, str(tmp_path / "back.bin"))
        assert (tmp_path / "back.bin").read_bytes() == payload
    finally:
        host.run(["rm", "-f", remote])
    with pytest.raises(FileNotFoundError):
        host.get(remote, str(tmp_path / "missing.bin"))


@needs_sshd
def test_transport_failure_mid_command_then_reconnect(sshd: SshdServer, tmp_path: Path) -> None:
    others = set(_connection_pids(sshd))
    with sshd.host("flaky") as h:
        before = _connection(h)
        pid_file = f"/tmp/vdpalab-flaky-{uuid.uuid4().hex[:10]}.pid"
        connection_pids = [p for p in _connection_pids(sshd) if p not in others]
        assert len(connection_pids) == 1

        def cut() -> None:
            time.sleep(0.3)
            os.kill(connection_pids[0], signal.SIGKILL)  # the per-connection sshd, started by our sshd

        cutter = threading.Thread(target=cut)
        cutter.start()
        try:
            with pytest.raises(HostUnreachable) as info:
                h.run(f"echo $$ > {pid_file}; exec sleep 10", timeout=10)
            assert "flaky" in str(info.value)
        finally:
            cutter.join()
            _kill_recorded(pid_file)
        # the dead transport is re-opened once, transparently
        assert h.run("echo back").stdout == "back\n"
        assert _connection(h) != before


@needs_sshd
def test_dead_idle_transport_is_reopened(sshd: SshdServer) -> None:
    others = set(_connection_pids(sshd))
    with sshd.host("idle") as h:
        before = _connection(h)
        for pid in [p for p in _connection_pids(sshd) if p not in others]:
            os.kill(pid, signal.SIGKILL)
            wait_pid_stopped(pid, 5)
        assert h.run("echo again").stdout == "again\n"
        assert _connection(h) != before


@needs_sshd
def test_host_key_policies(sshd: SshdServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    common = {"port": sshd.port, "key_file": str(sshd.client_key), "connect_timeout": 5}
    with pytest.raises(HostKeyRejected, match="host key rejected"):
        SSHHost("strict", "127.0.0.1", known_hosts=str(known), **common).run("true")  # type: ignore[arg-type]
    with SSHHost("new", "127.0.0.1", host_key_policy="accept-new", known_hosts=str(known), **common) as h:
        assert h.run("echo learned").stdout == "learned\n"
    assert sshd.host_public_key in known.read_text()
    with SSHHost("strict2", "127.0.0.1", known_hosts=str(known), **common) as h:  # type: ignore[arg-type]
        assert h.run("true").ok
    # a changed key is rejected even by accept-new
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    known.write_text(f"[127.0.0.1]:{sshd.port} {wrong}\n")
    changed = SSHHost("changed", "127.0.0.1", host_key_policy="accept-new", known_hosts=str(known), **common)
    with pytest.raises(HostKeyRejected, match="host key rejected"):  # a HostUnreachable that retrying cannot cure
        changed.run("true")
    with pytest.raises(HostKeyRejected, match=r"'2 batched commands: true; uname'.*host key rejected"):
        changed.run_sequence(["true", "uname"])
    with SSHHost("ignore", "127.0.0.1", host_key_policy="ignore", known_hosts=str(known), **common) as h:
        assert h.run("true").ok


@needs_sshd
def test_password_from_env_is_redacted(sshd: SshdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("VDPALAB_SELFTEST_PW", secret)
    with sshd.host("pw", password_env="VDPALAB_SELFTEST_PW") as h:
        h.run(f"echo {secret} >/dev/null")
        with pytest.raises(CommandFailed) as info:
            h.run(f"echo {secret} >&2; exit 1", check=True)
        assert secret not in str(info.value)
        assert all(secret not in e.command for e in h.history.entries())
        assert "echo *** >/dev/null" in [e.command for e in h.history.entries()]
    monkeypatch.delenv("VDPALAB_SELFTEST_PW")
    with pytest.raises(HostUnreachable, match="VDPALAB_SELFTEST_PW"):
        sshd.host("nopw", password_env="VDPALAB_SELFTEST_PW").run("true")


@needs_sshd
def test_sudo_only_when_not_root(host: SSHHost, sshd: SshdServer) -> None:
    host.run("id -u", sudo=True)
    assert host.history.entries()[-1].command == "id -u"
    assert SSHHost("alice", "127.0.0.1", user="alice").needs_sudo()
    with sshd.host("all-sudo", sudo=True) as h:
        assert h.run("id -u").stdout == "0\n" and h.history.entries()[-1].command == "id -u"


@needs_sshd
def test_proxy_command(sshd: SshdServer) -> None:
    # OpenSSH as the jump: through the same server to itself
    jump = " ".join(sshd.ssh_command()[:-1]) + f" -W %h:%p {sshd.user}@{sshd.address}"
    with sshd.host("proxied", proxy_command=jump) as h:
        assert h.run("echo via proxy").stdout == "via proxy\n"
        assert h.run("echo $SSH_CONNECTION").stdout.split()[0] == "127.0.0.1"


@needs_sshd
@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_netns_socket(tmp_path: Path) -> None:
    netns = f"vdpalab-selftest-{uuid.uuid4().hex[:8]}"
    own_ns = os.readlink("/proc/self/ns/net")
    run_netns_before = note_run_netns()  # `ip netns add` makes /run/netns a mount point; `del` leaves it
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        with start_sshd(tmp_path / "sshd", netns=netns) as server:
            with server.host("in-ns") as h:
                assert h.run("ip netns identify $$").stdout.strip() == netns
                assert h.run("echo $SSH_CONNECTION").stdout.split()[0] == "127.0.0.1"
            # the caller's namespace was never changed, and the port is not reachable from it
            assert os.readlink("/proc/self/ns/net") == own_ns
            assert os.readlink(f"/proc/self/task/{threading.get_native_id()}/ns/net") == own_ns
            with pytest.raises(HostUnreachable):
                server.host("outside", netns=None, connect_timeout=1, connect_retries=1).run("true")
        assert not pid_running(server.pid)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
        restore_run_netns(run_netns_before)
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not run_netns_left_mounted(run_netns_before), "the test left /run/netns mounted"
    with pytest.raises(HostUnreachable, match="netns"):
        SSHHost("gone", "127.0.0.1", netns=netns, connect_timeout=1, host_key_policy="ignore").run("true")


def _connection_pids(sshd: SshdServer) -> list[int]:
    """The per-connection sshd processes (children of the listener)."""
    return [p for p in descendants(sshd.pid) if _ppid(p) == sshd.pid]


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _kill_recorded(pid_file: str) -> None:
    """Kill a remote-side process the test started (same machine), by the pid it recorded."""
    try:
        pid = int(Path(pid_file).read_text())
    except (OSError, ValueError):
        return
    finally:
        Path(pid_file).unlink(missing_ok=True)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@needs_sshd
def test_a_host_behind_another_is_reached_through_its_ssh_connection(sshd: SshdServer) -> None:
    """``via`` (the lab file's ``ssh.via_lab_host``): the guest's SSH runs inside a direct-tcpip channel of the lab
    host's connection, so a port only the lab host can reach (a nested VM's forward on its loopback) is reachable;
    closing the guest closes its private connection to the lab host; a closed port behind it is unreachable."""
    jump = sshd.host("labhost")
    behind = sshd.host("guest", via=jump)
    try:
        assert behind.check("echo behind").stdout == "behind\n"
        assert jump.connected
        # sshd sees the guest's connection coming from its own forwarding, not from the client's socket
        assert _connection(behind).split()[0] == "127.0.0.1"
        assert repr(behind).endswith("via labhost>")
    finally:
        behind.close()
    assert not jump.connected
    port = free_tcp_port()
    nowhere = sshd.host("nowhere", port=port, via=sshd.host("labhost2"), connect_timeout=3)
    with pytest.raises(HostUnreachable, match=f"127.0.0.1:{port} via labhost2"):
        nowhere.run("true")
    nowhere.close()
    with pytest.raises(ValueError, match="cannot be combined"):
        sshd.host("both", netns="x", via=jump)

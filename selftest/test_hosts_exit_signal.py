"""SSHHost leans on paramiko's private internals in one place only (``vdpalab.hosts.exit_signal``), and
this module fails loudly when a paramiko release changes them; a signal death is 128+N over SSH as in a
shell; and the dropbear path (mkj/dropbear#321: one channel at a time, each closed before the next)
works against a real dropbear 2022.83, which the emulated-qemu guests also run."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator

import paramiko
import pytest
from paramiko.common import MSG_CHANNEL_REQUEST

from vdpalab.emulated.sshd import DROPBEAR, SshdServer, start_dropbear, start_sshd
from vdpalab.hosts import exit_signal
from vdpalab.hosts.ssh import SSHHost
from vdpalab.processes import pid_running

pytestmark = [pytest.mark.selftest, pytest.mark.machine]  # sshd and dropbear: daemons a machine snapshot watches

ROOT_SSHD = os.geteuid() == 0 and os.path.exists("/usr/sbin/sshd") and shutil.which("ssh-keygen") is not None
ROOT_DROPBEAR = os.geteuid() == 0 and os.path.exists(DROPBEAR) and shutil.which("dropbearkey") is not None


def test_paramiko_still_has_the_internals_the_exit_signal_adapter_needs() -> None:
    table = getattr(paramiko.Transport, "_channel_handler_table", None)
    assert isinstance(table, dict), (
        f"paramiko {paramiko.__version__}: Transport._channel_handler_table is gone; "
        "vdpalab.hosts.exit_signal falls back to a plain Transport (signal deaths report rc -1): port the adapter"
    )
    assert table.get(MSG_CHANNEL_REQUEST) is getattr(paramiko.Channel, "_handle_request", None), (
        f"paramiko {paramiko.__version__}: channel requests no longer go to Channel._handle_request: port the adapter"
    )
    assert exit_signal.SUPPORTED and exit_signal.TRANSPORT is not paramiko.Transport
    assert exit_signal.TRANSPORT._channel_handler_table[MSG_CHANNEL_REQUEST] is exit_signal.handle_channel_request


def test_signal_names_map_to_the_shells_status() -> None:
    assert exit_signal.status_of("KILL") == 137
    assert exit_signal.status_of("TERM") == 143
    assert exit_signal.status_of("NOSUCH") == 255


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdServer]:
    if not ROOT_SSHD:
        pytest.skip("needs root, /usr/sbin/sshd and ssh-keygen")
    server = start_sshd()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dropbear() -> Iterator[SshdServer]:
    if not ROOT_DROPBEAR:
        pytest.skip("needs root, /usr/sbin/dropbear and dropbearkey (dropbear-bin)")
    server = start_dropbear()
    try:
        yield server
    finally:
        server.stop()
        assert not pid_running(server.pid)


@pytest.mark.parametrize("server", ["sshd", "dropbear"])
def test_a_command_killed_by_a_signal_reports_128_plus_n(server: str, request: pytest.FixtureRequest) -> None:
    with request.getfixturevalue(server).host("target", command_timeout=20) as host:
        assert host.run("kill -KILL $$").rc == 137
        assert host.run("kill -TERM $$").rc == 143
        assert host.run("exit 3").rc == 3


def test_dropbear_is_served_one_channel_at_a_time_and_keeps_the_connection(dropbear: SshdServer) -> None:
    with dropbear.host("dropbear", command_timeout=20) as host:
        assert host.run("true").ok
        transport = host.connect()
        assert transport.remote_version.startswith("SSH-2.0-dropbear_2022"), transport.remote_version
        assert SSHHost.serial_server(transport)
        outputs = [host.check(f"echo {i}").stdout for i in range(60)]  # back to back: the bug's trigger
        assert outputs == [f"{i}\n" for i in range(60)]
        results: list[str] = []
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(10):
                    results.append(host.check(f"echo {n}-{i}").stdout.strip())
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert sorted(results) == sorted(f"{n}-{i}" for n in range(4) for i in range(10))
        assert host.connect() is transport, "every command ran on the first connection: no reconnect was needed"

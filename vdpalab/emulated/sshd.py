"""Start a private OpenSSH server for the emulated lab and the self-tests (pure library, no pytest).

The server gets its own host key, authorized key, config, pid file and log in a
work directory, listens on a chosen address (127.0.0.1 by default), optionally
inside a network namespace, and is stopped by its pid. Nothing on the machine
is modified except ``/run/sshd`` (sshd's privilege-separation directory) being
created when missing, as the openssh-server package does at boot.

Login shells over SSH source ``~/.bashrc``; on a developer machine that can cost
hundreds of milliseconds per command (pyenv init). The server therefore runs in
a private mount namespace where a clean temporary home is bind-mounted over the
invoking user's home, which leaves the real home untouched.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdpalab.errors import LabStateError
from vdpalab.hosts.netns import free_tcp_port
from vdpalab.processes import (
    descendants,
    pid_running,
    pid_start_time,
    stop_pid,
    wait_pid_stopped,
)

if TYPE_CHECKING:
    from vdpalab.hosts.ssh import SSHHost

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = "/run/sshd"


# ---- processes ----------------------------------------------------------------------


# ---- sshd -----------------------------------------------------------------------------


def known_hosts_name(address: str, port: int) -> str:
    """The host field of a known_hosts line, as OpenSSH writes it."""
    return address if port == 22 else f"[{address}]:{port}"


def pin_host_keys(old: str, pins: dict[str, str]) -> str:
    """``old`` known_hosts text with each host of ``pins`` (host field -> "type base64") pinned to that key alone.

    Lines of other hosts stay; an earlier image's key for a pinned host goes, because a client takes the first
    line that names the host and would reject the new image's key for it.
    """
    kept = [ln for ln in old.splitlines() if not ln.split() or ln.split()[0] not in pins]
    return "\n".join([*kept, *(f"{host} {key}" for host, key in pins.items())]) + "\n"


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _setenv_line(set_env: Mapping[str, str]) -> str:
    parts = []
    for key, value in set_env.items():
        if not key.replace("_", "a").isalnum() or any(c in value for c in '"\n\r'):
            raise ValueError(f"SetEnv {key}={value!r}: names are [A-Za-z0-9_], values without quotes or newlines")
        parts.append(f'"{key}={value}"')
    return "SetEnv " + " ".join(parts)


@dataclass
class SshdServer:
    """A running private sshd; ``stop()`` kills it and every process it started, by pid."""

    address: str
    port: int
    pid: int
    workdir: Path
    client_key: Path
    known_hosts: Path
    host_public_key: str
    netns: str | None
    log_path: Path
    owns_workdir: bool
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stopped: bool = False

    @property
    def user(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name

    def host(self, name: str = "sshd", **kwargs: Any) -> SSHHost:
        """An ``SSHHost`` for this server with strict host-key checking against its own known_hosts."""
        from vdpalab.hosts.ssh import SSHHost  # late: keeps this module importable without paramiko

        options: dict[str, Any] = {
            "port": self.port,
            "user": self.user,
            "key_file": str(self.client_key),
            "netns": self.netns,
            "known_hosts": str(self.known_hosts),
            "host_key_policy": "strict",
            "connect_timeout": 5.0,
        }
        options.update(kwargs)
        return SSHHost(name, self.address, **options)

    def ssh_command(self, *remote: str) -> list[str]:
        """An OpenSSH client command line for this server (for comparisons and debugging)."""
        cmd = [
            "ssh",
            "-i",
            str(self.client_key),
            "-p",
            str(self.port),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{self.user}@{self.address}",
            *remote,
        ]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return cmd

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def running(self) -> bool:
        return not self.stopped and pid_running(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the listener and every process below it (per-connection sshd, remote commands)."""
        if self.stopped:
            return
        # deepest first, while their parents are alive to reap them (an orphan's zombie would
        # otherwise wait for pid 1); the start time guards against a recycled pid
        below = [(pid, pid_start_time(pid)) for pid in descendants(self.pid)]
        for pid, started in reversed(below):
            if started is not None and pid_start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                wait_pid_stopped(pid, timeout)
        stop_pid(self.pid, timeout)
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.stopped = True
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SshdServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sshd(
    workdir: str | Path | None = None,
    *,
    netns: str | None = None,
    address: str = "127.0.0.1",
    port: int | None = None,
    set_env: Mapping[str, str] | None = None,
    max_sessions: int = 30,
    clean_home: bool = True,
    extra_config: Sequence[str] = (),
    startup_timeout: float = 10.0,
) -> SshdServer:
    """Start ``sshd -D -e -f CONFIG`` with fresh keys; returns once it listens.

    ``netns``: run it inside that network namespace (``ip netns exec``, which
    also gives it a private mount namespace). ``set_env``: ``SetEnv`` lines for
    every session (e.g. OVS_RUNDIR). ``clean_home``: bind-mount an empty home
    over the user's home inside sshd's private mount namespace (root only).
    Raises ``LabStateError`` when sshd does not come up.
    """
    if not os.path.exists(SSHD):
        raise LabStateError(f"{SSHD} not found (install openssh-server)")
    owns = workdir is None
    work = Path(tempfile.mkdtemp(prefix="vdpalab-sshd-") if workdir is None else workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _start(
            work, owns, netns, address, port, set_env, max_sessions, clean_home, extra_config, startup_timeout
        )
    except BaseException:
        if owns:
            shutil.rmtree(work, ignore_errors=True)
        raise


def _start(
    work: Path,
    owns: bool,
    netns: str | None,
    address: str,
    port: int | None,
    set_env: Mapping[str, str] | None,
    max_sessions: int,
    clean_home: bool,
    extra_config: Sequence[str],
    startup_timeout: float,
) -> SshdServer:
    if not os.path.isdir(PRIVSEP_DIR):
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
    host_key = work / "ssh_host_ed25519_key"
    client_key = work / "client_ed25519"
    for path, comment in ((host_key, "vdpalab-sshd-host"), (client_key, "vdpalab-sshd-client")):
        if not path.exists():
            _keygen(path, comment)
    (work / "authorized_keys").write_text((work / "client_ed25519.pub").read_text())
    host_public_key = " ".join((work / "ssh_host_ed25519_key.pub").read_text().split()[:2])
    home = work / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    real_home = pwd.getpwuid(os.getuid()).pw_dir
    bind_home = clean_home and os.geteuid() == 0 and os.path.isdir(real_home)
    log_path = work / "sshd.log"
    pid_file = work / "sshd.pid"

    attempts = 3 if port is None else 1
    last_error = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_tcp_port(address, netns=netns)
        config = work / "sshd_config"
        lines = [
            f"Port {chosen}",
            f"ListenAddress {address}",
            f"HostKey {host_key}",
            f"PidFile {pid_file}",
            f"AuthorizedKeysFile {work / 'authorized_keys'}",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            f"MaxSessions {max_sessions}",
            "MaxStartups 100:30:200",
            "UseDNS no",
            "PrintMotd no",
            "X11Forwarding no",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
        ]
        if set_env:
            lines.append(_setenv_line(set_env))
        lines.extend(extra_config)
        config.write_text("\n".join(lines) + "\n")
        pid_file.unlink(missing_ok=True)

        sshd = f"exec {SSHD} -D -e -f {shlex.quote(str(config))}"
        script = f"mount --bind {shlex.quote(str(home))} {shlex.quote(real_home)} && {sshd}" if bind_home else sshd
        if netns:
            argv = ["ip", "netns", "exec", netns, "sh", "-c", script]
        elif bind_home:
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        else:
            argv = ["sh", "-c", script]
        # unshare and ip netns exec exec() their command, so proc.pid ends up being sshd's pid
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )
        server = SshdServer(
            address=address,
            port=chosen,
            pid=proc.pid,
            workdir=work,
            client_key=client_key,
            known_hosts=work / "known_hosts",
            host_public_key=host_public_key,
            netns=netns,
            log_path=log_path,
            owns_workdir=owns,
            proc=proc,
        )
        server.known_hosts.write_text(pin_host_keys("", {known_hosts_name(address, chosen): host_public_key}))
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            # sshd writes its pid file once it listens
            try:
                if int(pid_file.read_text().strip() or 0) == proc.pid:
                    return server
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        if proc.poll() is None:  # never came up in time
            server.owns_workdir = False
            server.stop()
            raise LabStateError(
                f"sshd on {address}:{chosen} did not start within {startup_timeout:g} s: {server.log_tail()}"
            )
        last_error = server.log_tail()
        if "Address already in use" not in last_error:
            break
    where = f" in netns {netns}" if netns else ""
    raise LabStateError(f"sshd on {address}{where} exited at start: {last_error.strip()}")


DROPBEAR = "/usr/sbin/dropbear"


def start_dropbear(*, address: str = "127.0.0.1", startup_timeout: float = 10.0) -> SshdServer:
    """Start a private dropbear (the small guest images' server, mkj/dropbear#321 included) on loopback.

    Root only: dropbear reads ``~/.ssh/authorized_keys`` and has no option to look elsewhere, so it
    runs in a private mount namespace with a clean temporary home bind-mounted over root's.
    """
    if not os.path.exists(DROPBEAR) or shutil.which("dropbearkey") is None:
        raise LabStateError(f"{DROPBEAR} or dropbearkey not found (install dropbear-bin)")
    if os.geteuid() != 0:
        raise LabStateError("a private dropbear needs root (a private mount namespace for its home)")
    work = Path(tempfile.mkdtemp(prefix="vdpalab-dropbear-"))
    try:
        host_key = work / "dropbear_ed25519_host_key"
        subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(host_key)], check=True, capture_output=True)
        public = subprocess.run(["dropbearkey", "-y", "-f", str(host_key)], check=True, capture_output=True, text=True)
        host_public_key = next(" ".join(line.split()[:2]) for line in public.stdout.splitlines()
                               if line.startswith("ssh-"))
        client_key = work / "client_ed25519"
        _keygen(client_key, "vdpalab-dropbear-client")
        home = work / "home"
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        home.chmod(0o700)
        keys = home / ".ssh" / "authorized_keys"
        keys.write_text((work / "client_ed25519.pub").read_text())
        keys.chmod(0o600)
        port = free_tcp_port(address)
        log_path = work / "dropbear.log"
        real_home = pwd.getpwuid(os.getuid()).pw_dir
        script = (f"mount --bind {shlex.quote(str(home))} {shlex.quote(real_home)} && exec {DROPBEAR} -F -E -s -m "
                  f"-r {shlex.quote(str(host_key))} -p {address}:{port} -P {shlex.quote(str(work / 'pid'))}")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
            )
        server = SshdServer(
            address=address, port=port, pid=proc.pid, workdir=work, client_key=client_key,
            known_hosts=work / "known_hosts", host_public_key=host_public_key, netns=None, log_path=log_path,
            owns_workdir=True, proc=proc,
        )
        server.known_hosts.write_text(f"[{address}]:{port} {host_public_key}\n")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    from vdpalab.hosts.netns import connect_tcp

    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            connect_tcp(address, port, 0.5).close()
            return server
        except OSError:
            time.sleep(0.02)
    tail = server.log_tail()
    server.stop()
    raise LabStateError(f"dropbear on {address}:{port} did not start: {tail}")

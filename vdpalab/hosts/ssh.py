"""A remote host over one reused SSH connection (paramiko).

Why one connection: a fresh ``ssh`` process per command costs a TCP and SSH
handshake, key exchange and authentication (tens of milliseconds); a new
channel on an open transport costs one round trip. Layers issue hundreds of
small commands, so this is the difference between seconds and minutes.

Every command is wrapped so that its first stdout line names the remote process
group (sshd makes each session's shell a session leader): on timeout the whole
group is killed over a second channel, so nothing keeps running on the host.

dropbear 2022.83 (the emulated-qemu lab's guests; upstream mkj/dropbear#321, fixed after
2024.85) kills the whole connection when a channel is opened while it is still closing the
previous one: paramiko then says ``Unable to open channel`` or ``Channel closed``. Against a
server whose version string starts with ``SSH-2.0-dropbear`` commands therefore run one at a
time, each waits until the server has closed its channel, and a channel that fails to open
(the command never ran) is retried once on a fresh connection.
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Literal

import paramiko

from vdpalab.errors import CommandTimeout, HostKeyRejected, HostUnreachable
from vdpalab.hosts.base import CommandResult, Host
from vdpalab.hosts.exit_signal import TRANSPORT
from vdpalab.hosts.netns import connect_tcp

# paramiko logs each failed handshake at ERROR with its traceback ("Error reading SSH protocol banner" while a
# guest boots behind a port forward that closes every connection); connect() retries and reports the last failure
# in its HostUnreachable. Without this, Python's last-resort handler prints them on a CLI user's terminal.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

HostKeyPolicy = Literal["strict", "accept-new", "ignore"]
_POLICIES = ("strict", "accept-new", "ignore")

_MARKER = b"vdpalab-pgid "
_CHUNK = 1 << 16
# after the deadline, how long to wait for the pid line before giving up on the kill
_PGID_GRACE = 2.0
_KILL_TIMEOUT = 5.0
# the pid line comes first; past this much output without it, stop looking (login-shell noise)
_PGID_SEARCH_LIMIT = 1 << 20
# free server sessions kept beside the command channels: one SFTP, one kill channel
_AUX_SESSIONS = 2
# servers that need one channel at a time, each fully closed before the next (mkj/dropbear#321)
_SERIAL_SERVERS = ("SSH-2.0-dropbear",)
_CLOSE_WAIT = 5.0


class _HostKeyRejected(paramiko.SSHException):
    """Strict policy met a key that is not in known_hosts: never retried."""


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: str) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _HostKeyRejected(
            f"host key {key.get_name()} {key.fingerprint} for {hostname} is not in {self.known_hosts} "
            "(host_key_policy='strict')"
        )


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: learn unknown keys, still reject changed ones."""

    _lock = threading.Lock()

    def __init__(self, known_hosts: str) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        with self._lock:
            Path(self.known_hosts).parent.mkdir(parents=True, exist_ok=True)
            with open(self.known_hosts, "a", encoding="ascii") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _IgnorePolicy(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        return None


def _decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


class SSHHost(Host):
    """Run commands on a remote host over a single, lazily opened SSH transport.

    ``netns`` opens the TCP socket inside that network namespace (no process is
    started); ``proxy_command`` goes through ``paramiko.ProxyCommand`` (``%h``,
    ``%p``, ``%r`` are substituted). ``connect_timeout`` bounds the whole
    connection attempt, retries included. ``max_sessions`` caps concurrent
    command channels, kept below sshd's MaxSessions (default 10) so that
    concurrent callers queue instead of failing.
    """

    batches_reads = True  # one channel, one shell for a layer's probes (on a TCG VM each costs up to a second)

    def __init__(
        self,
        name: str,
        address: str,
        port: int = 22,
        user: str = "root",
        key_file: str | None = None,
        password_env: str | None = None,
        proxy_command: str | None = None,
        netns: str | None = None,
        connect_timeout: float = 10.0,
        command_timeout: float = 60.0,
        connect_retries: int = 3,
        keepalive: float = 15.0,
        host_key_policy: HostKeyPolicy = "strict",
        known_hosts: str | None = None,
        sudo: bool = False,
        max_sessions: int = 8,
        via: SSHHost | None = None,
    ) -> None:
        super().__init__(name, command_timeout, sudo=sudo)
        if host_key_policy not in _POLICIES:
            raise ValueError(f"{name}: host_key_policy must be one of {_POLICIES}, not {host_key_policy!r}")
        if sum(map(bool, (proxy_command, netns, via))) > 1:
            raise ValueError(f"{name}: proxy_command, netns and via cannot be combined")
        if max_sessions < 1:
            raise ValueError(f"{name}: max_sessions must be >= 1")
        self.address = address
        self.port = port
        self.user = user
        self.key_file = key_file
        self.password_env = password_env
        self.proxy_command = proxy_command
        self.netns = netns
        self.via = via  # another host whose SSH connection carries ours (a direct-tcpip channel, as ssh -J)
        self.connect_timeout = connect_timeout
        self.connect_retries = max(1, connect_retries)
        self.keepalive = keepalive
        self.host_key_policy: HostKeyPolicy = host_key_policy
        self.known_hosts = known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        self.max_sessions = max_sessions
        if password_env and os.environ.get(password_env):
            self.history.add_secret(os.environ[password_env])
        self._client: paramiko.SSHClient | None = None
        self._transport: paramiko.Transport | None = None
        self._connect_lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(max_sessions)
        self._serial = threading.Lock()  # held around each command on a dropbear server
        self._kill_slot = threading.BoundedSemaphore(1)
        self._sftp_lock = threading.Lock()
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_transport: paramiko.Transport | None = None

    def __repr__(self) -> str:
        where = f" netns={self.netns}" if self.netns else (f" via {self.via.name}" if self.via else "")
        return f"<SSHHost {self.name} {self.user}@{self.address}:{self.port}{where}>"

    def needs_sudo(self) -> bool:
        return self.user != "root"

    # ---- connection -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        transport = self._transport
        return transport is not None and transport.is_active()

    def connect(self) -> paramiko.Transport:
        """The live transport, opened (or re-opened after it died) on demand."""
        with self._connect_lock:
            transport = self._transport
            if transport is not None and transport.is_active():
                return transport
            self._drop_locked()
            self._client, self._transport = self._open()
            return self._transport

    def tunnel(self, address: str, port: int, timeout: float) -> paramiko.Channel:
        """A TCP connection from this host to ``address:port`` (its sshd's direct-tcpip), for a host behind it."""
        try:
            return self.connect().open_channel("direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise OSError(f"{self.name} cannot reach {address}:{port}: {exc}") from exc

    def _open_sock(self, timeout: float) -> socket.socket | paramiko.ProxyCommand | paramiko.Channel:
        if self.via is not None:
            return self.via.tunnel(self.address, self.port, timeout)
        if self.proxy_command:
            command = (
                self.proxy_command.replace("%h", self.address)
                .replace("%p", str(self.port))
                .replace("%r", self.user)
                .replace("%%", "%")
            )
            proxy = paramiko.ProxyCommand(command)
            proxy.settimeout(timeout)
            return proxy
        sock = connect_tcp(self.address, self.port, timeout, netns=self.netns)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    def _password(self) -> str | None:
        if not self.password_env:
            return None
        password = os.environ.get(self.password_env)
        if not password:
            raise HostUnreachable(self.name, "", f"environment variable {self.password_env} (password_env) is not set")
        self.history.add_secret(password)
        return password

    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.host_key_policy == "ignore":
            client.set_missing_host_key_policy(_IgnorePolicy())
            return client
        if os.path.exists(self.known_hosts):
            client.load_host_keys(self.known_hosts)
        if self.host_key_policy == "strict":
            client.set_missing_host_key_policy(_StrictPolicy(self.known_hosts))
        else:
            client.set_missing_host_key_policy(_AcceptNewPolicy(self.known_hosts))
        return client

    def _open(self) -> tuple[paramiko.SSHClient, paramiko.Transport]:
        password = self._password()
        where = f"{self.user}@{self.address}:{self.port}" + (f" in netns {self.netns}" if self.netns else "")
        where += f" via {self.via.name}" if self.via else ""
        deadline = time.monotonic() + self.connect_timeout
        last = "no attempt made"
        attempts = 0
        for attempt in range(self.connect_retries):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            attempts += 1
            try:
                sock = self._open_sock(remaining)
            except FileNotFoundError as exc:  # the netns does not exist: retrying will not help
                raise HostUnreachable(self.name, "", f"cannot connect to {where}: {exc}")
            except (OSError, paramiko.SSHException) as exc:
                last = f"{type(exc).__name__}: {exc}"
                self._backoff(attempt, deadline)
                continue
            client = self._new_client()
            remaining = max(0.1, deadline - time.monotonic())
            try:
                client.connect(
                    self.address,
                    port=self.port,
                    username=self.user,
                    key_filename=self.key_file,
                    password=password,
                    sock=sock,
                    timeout=remaining,
                    banner_timeout=remaining,
                    auth_timeout=remaining,
                    channel_timeout=remaining,
                    allow_agent=not (self.key_file or password),
                    look_for_keys=not (self.key_file or password),
                    transport_factory=TRANSPORT,
                )
            except (paramiko.BadHostKeyException, _HostKeyRejected) as exc:
                client.close()
                raise HostKeyRejected(self.name, "", f"host key rejected for {where}: {exc}")
            except paramiko.AuthenticationException as exc:
                client.close()
                raise HostUnreachable(self.name, "", f"authentication failed for {where}: {exc}")
            except (OSError, EOFError, paramiko.SSHException) as exc:
                client.close()
                last = f"{type(exc).__name__}: {exc}"
                self._backoff(attempt, deadline)
                continue
            transport = client.get_transport()
            assert transport is not None
            if self.keepalive:
                transport.set_keepalive(self.keepalive)
            return client, transport
        raise HostUnreachable(
            self.name,
            "",
            f"cannot connect to {where} within {self.connect_timeout:g} s ({attempts} attempt(s)): {last}",
        )

    def _backoff(self, attempt: int, deadline: float) -> None:
        if attempt + 1 < self.connect_retries:  # no pause after the last attempt
            time.sleep(max(0.0, min(0.2 * 2**attempt, deadline - time.monotonic())))

    def _drop_locked(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._client = None
        self._transport = None

    def close(self) -> None:
        with self._sftp_lock:
            if self._sftp is not None:
                try:
                    self._sftp.close()
                except Exception:
                    pass
                self._sftp = None
                self._sftp_transport = None
        with self._connect_lock:
            self._drop_locked()
        if self.via is not None:
            self.via.close()

    @staticmethod
    def serial_server(transport: paramiko.Transport) -> bool:
        """True for a server that must see one channel at a time (dropbear: mkj/dropbear#321)."""
        return str(getattr(transport, "remote_version", "") or "").startswith(_SERIAL_SERVERS)

    def _drop_transport(self, transport: paramiko.Transport) -> None:
        """Close ``transport`` if it is still the current one (the next command connects afresh)."""
        with self._connect_lock:
            if self._transport is transport:
                self._drop_locked()

    def _open_channel(self, command: str, deadline: float) -> paramiko.Channel:
        """A session channel for ``command``.

        A transport found dead, or a dropbear connection whose channel failed to open, is re-opened once
        (the command has not started). A refused channel is retried until ``deadline``: sshd counts a closed
        session until it has reaped it, so under churn it can briefly refuse a new one even below MaxSessions.
        """
        reopened = False
        delay = 0.005
        while True:
            try:
                transport = self.connect()
            except HostUnreachable as exc:  # name the command that could not run (same class: HostKeyRejected stays)
                raise type(exc)(self.name, self.shown(command), exc.reason) from None
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except paramiko.ChannelException as exc:
                if time.monotonic() + delay >= deadline:
                    raise HostUnreachable(
                        self.name,
                        self.shown(command),
                        f"server refused a session channel ({exc.text}); is sshd's MaxSessions below "
                        f"max_sessions={self.max_sessions} + {_AUX_SESSIONS}?",
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if reopened or (transport.is_active() and not self.serial_server(transport)):
                    raise HostUnreachable(self.name, self.shown(command), f"cannot open a channel: {exc}")
                self._drop_transport(transport)
                reopened = True

    # ---- commands -------------------------------------------------------------------

    @staticmethod
    def wrap(command: str) -> str:
        """Shell text sent to sshd: print the session's pgid, then run ``command`` under sh.

        ``exec`` saves a fork per command; a command killed by a signal then
        reaches us as sshd's exit-signal, which ``exit_signal.TRANSPORT`` maps to 128+N.
        """
        return f"echo {_MARKER.decode()}$$; exec sh -c {shlex.quote(command)}"

    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        """Queue for a session slot (at most ``timeout``), then run with ``timeout`` from the channel's start."""
        if not self._sessions.acquire(timeout=max(timeout, 0.001)):
            raise CommandTimeout(
                self.name,
                self.shown(command),
                timeout,
                "",
                f"no free SSH session (max_sessions={self.max_sessions}) within the timeout; command not started",
            )
        serial = None
        try:
            try:
                transport = self.connect()
            except HostUnreachable as exc:  # name the command that could not run (same class: HostKeyRejected stays)
                raise type(exc)(self.name, self.shown(command), exc.reason) from None
            if self.serial_server(transport):
                serial = self._serial
                if not serial.acquire(timeout=max(timeout, 0.001)):
                    serial = None
                    raise CommandTimeout(
                        self.name, self.shown(command), timeout, "",
                        "the previous command on this dropbear connection did not finish within the timeout; "
                        "command not started",
                    )
            for attempt in (1, 2):
                # a lazy (re)connect has its own connect_timeout: the command's clock starts on its channel
                chan = self._open_channel(command, time.monotonic() + timeout)
                started = time.time()
                t0 = time.monotonic()
                deadline = t0 + timeout
                try:
                    try:
                        chan.exec_command(self.wrap(command))
                    except (OSError, EOFError, paramiko.SSHException) as exc:
                        # the exec request was not accepted: the command did not run, so it is safe to retry
                        transport = chan.get_transport()
                        if attempt == 1 and (self.serial_server(transport) or not transport.is_active()):
                            self._drop_transport(transport)
                            continue
                        raise HostUnreachable(self.name, self.shown(command), f"cannot start the command: {exc}")
                    return self._exec(chan, command, timeout, deadline, stdin, started, t0)
                finally:
                    if serial is not None:
                        _await_server_close(chan, _CLOSE_WAIT)
                    chan.close()
            raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
        finally:
            if serial is not None:
                serial.release()
            self._sessions.release()

    def _exec(
        self,
        chan: paramiko.Channel,
        command: str,
        timeout: float,
        deadline: float,
        stdin: str | None,
        started: float,
        t0: float,
    ) -> CommandResult:
        transport = chan.get_transport()
        out = bytearray()
        err = bytearray()
        pgid: int | None = None
        try:
            if stdin:
                # fed from a thread: a command that answers while it reads (cat) would
                # otherwise fill the window both ways and deadlock with us
                threading.Thread(target=_feed, args=(chan, stdin.encode("utf-8")), daemon=True).start()
            else:
                chan.shutdown_write()
            fd = chan.fileno()
            while True:
                eof = chan.eof_received or chan.closed  # read before draining: all data is buffered by then
                while chan.recv_ready():
                    out += chan.recv(_CHUNK)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(_CHUNK)
                if pgid is None and len(out) < _PGID_SEARCH_LIMIT:
                    pgid = _take_pgid(out)
                if eof:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._timeout(chan, command, timeout, pgid, out, err)
                select.select([fd], [], [], min(remaining, 1.0))
            if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
                self._timeout(chan, command, timeout, pgid, out, err)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostUnreachable(self.name, self.shown(command), f"transport failure: {type(exc).__name__}: {exc}")
        rc = chan.exit_status
        if rc == -1 and not transport.is_active():
            raise HostUnreachable(self.name, self.shown(command), "connection lost while the command ran")
        return CommandResult(
            host=self.name,
            command=command,
            rc=rc,
            stdout=_decode(out),
            stderr=_decode(err),
            started=started,
            duration=time.monotonic() - t0,
        )

    def _timeout(
        self,
        chan: paramiko.Channel,
        command: str,
        timeout: float,
        pgid: int | None,
        out: bytearray,
        err: bytearray,
    ) -> None:
        """Kill the remote process group, close the channel, raise CommandTimeout."""
        if pgid is None:  # the pid line may still be on its way (slow login shell)
            grace = time.monotonic() + _PGID_GRACE
            while pgid is None and time.monotonic() < grace and not chan.closed:
                if chan.recv_ready():
                    out += chan.recv(_CHUNK)
                    pgid = _take_pgid(out)
                else:
                    time.sleep(0.01)
        note = self._kill_group(pgid) if pgid is not None else "pid line never arrived: remote process not killed"
        chan.close()
        if note:
            err += f"\n[vdpalab: {note}]".encode()
        raise CommandTimeout(self.name, self.shown(command), timeout, _decode(out), _decode(err))

    def _kill_group(self, pgid: int) -> str:
        """``kill -KILL -- -PGID`` over a separate channel; returns a note when it failed."""
        kill = f"kill -KILL -- -{pgid}"
        if self.needs_sudo():
            kill += f" 2>/dev/null || sudo -n kill -KILL -- -{pgid}"
        if not self._kill_slot.acquire(timeout=_KILL_TIMEOUT):
            return f"no channel free to kill process group {pgid}"
        try:
            transport = self._transport
            if transport is None or not transport.is_active():
                return f"connection lost: process group {pgid} not killed"
            chan = transport.open_session(timeout=_KILL_TIMEOUT)
            try:
                chan.exec_command(kill)
                chan.shutdown_write()
                if not chan.status_event.wait(_KILL_TIMEOUT):
                    return f"kill of process group {pgid} did not answer"
                if chan.exit_status != 0:  # also when the group ended by itself meanwhile
                    return f"kill -KILL -- -{pgid} exited {chan.exit_status} (group already gone?)"
                return ""
            finally:
                chan.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            return f"could not kill process group {pgid}: {exc}"
        finally:
            self._kill_slot.release()

    # ---- files ----------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        """One SFTP session, reused; caller holds ``_sftp_lock``."""
        transport = self.connect()
        if self._sftp is None or self._sftp_transport is not transport or self._sftp.sock.closed:
            if self._sftp is not None:
                try:
                    self._sftp.close()
                except Exception:
                    pass
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise HostUnreachable(self.name, "", "could not open an SFTP session")
            self._sftp, self._sftp_transport = sftp, transport
        return self._sftp

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        with self._sftp_lock:
            try:
                sftp = self._sftp_client()
                sftp.put(str(local_path), str(remote_path))
                if mode is not None:
                    sftp.chmod(str(remote_path), mode)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise  # a file error (no such file, permission), not a transport one
                self._sftp = None
                raise HostUnreachable(self.name, f"put {remote_path}", f"SFTP failed: {exc}")

    def get(self, remote_path: str, local_path: str) -> None:
        with self._sftp_lock:
            try:
                self._sftp_client().get(str(remote_path), str(local_path))
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise
                self._sftp = None
                raise HostUnreachable(self.name, f"get {remote_path}", f"SFTP failed: {exc}")


def _await_server_close(chan: paramiko.Channel, timeout: float) -> None:
    """Wait until the server has closed ``chan`` (paramiko answers its CLOSE and marks the channel closed).

    After a command's exit status the server sends EOF and CLOSE; on dropbear the next channel may
    open only after that (mkj/dropbear#321). A channel we closed ourselves (a timeout) is not
    waited for: if dropbear then drops the connection, the next command reconnects once.
    """
    transport = chan.get_transport()
    deadline = time.monotonic() + timeout
    while not chan.closed and transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.001)


def _feed(chan: paramiko.Channel, data: bytes) -> None:
    try:
        chan.sendall(data)
        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the channel closed (timeout, transport failure): the reader reports it


def _take_pgid(out: bytearray) -> int | None:
    """Find and remove the wrapper's ``vdpalab-pgid N`` line (login-shell noise may precede it)."""
    idx = out.find(_MARKER)
    if idx < 0:
        return None
    end = out.find(b"\n", idx)
    if end < 0:
        return None
    try:
        pgid = int(out[idx + len(_MARKER) : end])
    except ValueError:
        return None
    del out[idx : end + 1]
    return pgid

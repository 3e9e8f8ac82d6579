"""QEMU guests, for hardware and emulated labs alike: a pure argv builder and a small process/QMP controller.

One builder serves both labs. On hardware it renders the seed's command line
(``-netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0 -device virtio-net-pci,netdev=vhost-vdpa0,...``
with a disk image); in the emulated lab the same data NIC is a vhost-user socket served by QEMU
(OVS-DPDK connects as ``dpdkvhostuserclient``), guest memory is a shared memfd (vhost-user needs it), and a second,
management NIC is QEMU user networking restricted to one loopback port forward to the guest's sshd.

Guests are stopped through QMP (``qmp_capabilities`` then ``quit``) and SIGKILLed by pid only if that fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vdpalab.errors import LabStateError
from vdpalab.processes import pid_cmdline, pid_running

UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL
#: console lines after which a guest will not come up (the image's /init failure marker, a kernel panic)
CONSOLE_ERRORS = ("VDPALAB-GUEST-ERROR", "Kernel panic")


@dataclass(frozen=True)
class DataNic:
    """The guest's datapath NIC: a vhost-user socket (emulated lab) or a vhost-vdpa char device (hardware).

    ``device_options`` are appended verbatim to ``-device virtio-net-pci,...``, e.g. the seed's
    ``("page-per-vq=on", "iommu_platform=on", "disable-legacy=on")`` plus ``"vectors=0"`` under TCG.
    """

    kind: Literal["vhost-user", "vhost-vdpa"]
    path: Path
    id: str = "net0"
    mac: str | None = None
    device_options: tuple[str, ...] = ()
    queues: int = 1


@dataclass(frozen=True)
class QemuSpec:
    """Everything that decides a guest's QEMU command line; see :func:`qemu_argv`.

    ``memory_backend``: ``"auto"`` picks a shared memfd when a vhost-user NIC is present (the backend process maps
    guest memory), ``"memfd"``/``"file"`` force one (``"file"`` uses ``mem_path``, e.g. a hugetlbfs mount), ``"none"``
    uses QEMU's private RAM. ``nic_romfile=""`` stops QEMU looking for the iPXE option ROM (not installed here).
    """

    binary: str = "qemu-system-x86_64"
    name: str | None = None
    accel: str = "tcg"
    cpu: str = "max"
    smp: int = 1
    memory_mib: int = 512
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    disk: Path | None = None
    mgmt_ssh_port: int | None = None
    mgmt_mac: str | None = None
    data_nics: tuple[DataNic, ...] = ()
    memory_backend: Literal["auto", "memfd", "file", "none"] = "auto"
    mem_path: Path | None = None
    nic_romfile: str | None = None
    serial_log: Path | None = None
    pidfile: Path | None = None
    qmp_socket: Path | None = None
    nographic: bool = False
    no_reboot: bool = True
    minimal_config: bool = True
    extra_args: tuple[str, ...] = field(default=())


def _size(mib: int) -> str:
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def _opts(*parts: str | None) -> str:
    return ",".join(p for p in parts if p)


def qemu_argv(spec: QemuSpec) -> list[str]:
    """The argv for ``spec``; pure (no I/O), so it can be asserted in self-tests and logged before a run."""
    argv: list[str] = [spec.binary]
    if spec.minimal_config:
        argv += ["-no-user-config", "-nodefaults"]
    if spec.name:
        argv += ["-name", spec.name]
    argv += ["-accel", spec.accel, "-cpu", spec.cpu]
    if spec.smp != 1:
        argv += ["-smp", str(spec.smp)]
    argv += ["-m", _size(spec.memory_mib)]
    backend = spec.memory_backend
    if backend == "auto":
        backend = "memfd" if any(n.kind == "vhost-user" for n in spec.data_nics) else "none"
    if backend == "memfd":
        argv += ["-object", f"memory-backend-memfd,id=mem,size={_size(spec.memory_mib)},share=on"]
        argv += ["-numa", "node,memdev=mem"]
    elif backend == "file":
        if spec.mem_path is None:
            raise ValueError("memory_backend='file' needs mem_path")
        argv += [
            "-object",
            f"memory-backend-file,id=mem,size={_size(spec.memory_mib)},mem-path={spec.mem_path},share=on",
            "-numa",
            "node,memdev=mem",
        ]
    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel)]
    if spec.initrd is not None:
        argv += ["-initrd", str(spec.initrd)]
    if spec.append is not None:
        argv += ["-append", spec.append]
    if spec.disk is not None:
        argv += ["-hda", str(spec.disk)]
    rom = None if spec.nic_romfile is None else f"romfile={spec.nic_romfile}"
    if spec.mgmt_ssh_port is not None:
        argv += ["-netdev", f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{spec.mgmt_ssh_port}-:22"]
        mac = f"mac={spec.mgmt_mac}" if spec.mgmt_mac else None
        argv += ["-device", _opts("virtio-net-pci", "netdev=mgmt", mac, rom)]
    for nic in spec.data_nics:
        mac = f"mac={nic.mac}" if nic.mac else None
        if nic.kind == "vhost-user":
            if len(str(nic.path)) > UNIX_PATH_MAX:
                raise ValueError(f"vhost-user socket path longer than {UNIX_PATH_MAX} bytes: {nic.path}")
            chardev = f"chr-{nic.id}"
            argv += ["-chardev", f"socket,id={chardev},path={nic.path},server=on,wait=off"]
            argv += ["-netdev", f"type=vhost-user,id={nic.id},chardev={chardev},queues={nic.queues}"]
        elif nic.kind == "vhost-vdpa":
            queues = f"queues={nic.queues}" if nic.queues != 1 else None
            argv += ["-netdev", _opts("type=vhost-vdpa", f"vhostdev={nic.path}", f"id={nic.id}", queues)]
        else:  # pragma: no cover - Literal guards it
            raise ValueError(f"unknown data NIC kind {nic.kind!r}")
        argv += ["-device", _opts("virtio-net-pci", f"netdev={nic.id}", mac, *nic.device_options, rom)]
    if spec.serial_log is not None:
        argv += ["-serial", f"file:{spec.serial_log}"]
    if spec.qmp_socket is not None:
        if len(str(spec.qmp_socket)) > UNIX_PATH_MAX:
            raise ValueError(f"QMP socket path longer than {UNIX_PATH_MAX} bytes: {spec.qmp_socket}")
        argv += ["-qmp", f"unix:{spec.qmp_socket},server=on,wait=off"]
    if spec.pidfile is not None:
        argv += ["-pidfile", str(spec.pidfile)]
    if spec.no_reboot:
        argv += ["-no-reboot"]
    argv += ["-nographic"] if spec.nographic else ["-display", "none"]
    argv += list(spec.extra_args)
    return argv


def guest_append(
    nets: Sequence[tuple[str, str]], *, hostname: str | None = None, console: str = "ttyS0", extra: str = ""
) -> str:
    """The kernel command line for a :mod:`vdpalab.emulated.guest_image` guest.

    ``nets`` is ``[(mac, "addr/len"), ...]``; ``panic=-1`` with QEMU's ``-no-reboot`` makes a panicking guest exit
    QEMU instead of hanging; IPv6 is off so no router solicitations or MLD reports skew port counters.
    """
    parts = [f"console={console}", "panic=-1", "ipv6.disable=1"]
    if nets:
        parts.append("vdpalab.net=" + ";".join(f"{mac.lower()},{addr}" for mac, addr in nets))
    if hostname:
        parts.append(f"vdpalab.hostname={hostname}")
    if extra:
        parts.append(extra)
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------- QMP


def qmp_command(path: Path, command: str, arguments: dict | None = None, *, timeout: float = 5.0) -> dict:
    """Open the QMP socket, negotiate capabilities, run one command, return its reply (``{"return": ...}``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        reader = sock.makefile("rb")

        def reply() -> dict:
            while True:
                line = reader.readline()
                if not line:
                    raise LabStateError(f"QMP {path}: connection closed while waiting for a reply to {command}")
                msg = json.loads(line)
                if "return" in msg or "error" in msg:
                    return msg

        greeting = json.loads(reader.readline() or b"{}")
        if "QMP" not in greeting:
            raise LabStateError(f"QMP {path}: unexpected greeting {greeting!r}")
        sock.sendall(b'{"execute": "qmp_capabilities"}\n')
        reply()
        msg: dict = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        sock.sendall(json.dumps(msg).encode() + b"\n")
        try:
            return reply()
        except LabStateError:
            if command == "quit":  # QEMU may close the socket before the reply makes it out
                return {"return": {}}
            raise


# ----------------------------------------------------------------------------------------------- process


class QemuProcess:
    """One guest's QEMU, started in its own session (so Ctrl-C of the suite does not hit it) and stopped by pid.

    The console goes to ``spec.serial_log``; QEMU's own stderr to ``<serial_log>.qemu.log``. ``netns`` runs QEMU
    inside that network namespace (via ``ip netns exec``); the loopback port forward then lives there too.
    """

    def __init__(self, spec: QemuSpec, *, netns: str | None = None) -> None:
        if spec.serial_log is None or spec.pidfile is None or spec.qmp_socket is None:
            raise ValueError("QemuProcess needs serial_log, pidfile and qmp_socket in the spec")
        self.spec = spec
        self.netns = netns
        self.argv = qemu_argv(spec)
        self.serial_log: Path = spec.serial_log
        self.pidfile: Path = spec.pidfile
        self.qmp_socket: Path = spec.qmp_socket
        self.stderr_log = self.serial_log.with_name(self.serial_log.name + ".qemu.log")
        self.popen: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.started_at: float | None = None

    @property
    def label(self) -> str:
        return self.spec.name or str(self.serial_log)

    def start(self) -> None:
        for path in (self.serial_log, self.pidfile, self.qmp_socket):
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        cmd = (["ip", "netns", "exec", self.netns] if self.netns else []) + self.argv
        with open(self.stderr_log, "wb") as err:
            self.popen = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid = self.popen.pid  # ip netns exec execs, so this is QEMU's pid
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and pid_running(self.pid)

    def console_tail(self, lines: int = 25) -> str:
        out = []
        for path in (self.serial_log, self.stderr_log):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            tail = text.splitlines()[-lines:]
            if tail:
                out.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(out) or "(no console output)"

    def wait_for_console(
        self,
        marker: str,
        *,
        timeout: float = 120.0,
        errors: Sequence[str] = CONSOLE_ERRORS,
    ) -> float:
        """Wait until ``marker`` appears on the serial console; return the seconds since start.

        Fails fast (with the console tail) when QEMU exits or the console shows one of ``errors``.
        """
        deadline = time.monotonic() + timeout
        pos = 0
        seen = ""
        while True:
            try:
                with open(self.serial_log, "rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos += len(chunk)
                    seen = (seen + chunk.decode(errors="replace"))[-20000:]
            except FileNotFoundError:
                pass
            if marker in seen:
                return time.monotonic() - (self.started_at or time.monotonic())
            for err in errors:
                if err in seen:
                    raise LabStateError(f"guest {self.label}: console shows {err!r}:\n{self.console_tail()}")
            if not self.alive():
                rc = self.popen.returncode if self.popen else "?"
                raise LabStateError(
                    f"guest {self.label}: QEMU exited (rc={rc}) before {marker!r}:\n{self.console_tail()}"
                )
            if time.monotonic() > deadline:
                raise LabStateError(f"guest {self.label}: no {marker!r} after {timeout:g} s:\n{self.console_tail()}")
            time.sleep(0.05)

    def wait_for_ssh(self, *, host: str = "127.0.0.1", timeout: float = 60.0) -> float:
        """Wait until the forwarded port answers with an SSH banner (slirp accepts before the guest listens)."""
        port = self.spec.mgmt_ssh_port
        if port is None:
            raise ValueError("wait_for_ssh needs mgmt_ssh_port")
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, port), timeout=2.0) as sock:
                    sock.settimeout(2.0)
                    if sock.recv(64).startswith(b"SSH-"):
                        return time.monotonic() - (self.started_at or time.monotonic())
            except OSError:
                pass
            if not self.alive():
                raise LabStateError(f"guest {self.label}: QEMU exited while waiting for SSH:\n{self.console_tail()}")
            if time.monotonic() > deadline:
                raise LabStateError(f"guest {self.label}: no SSH banner on {host}:{port} after {timeout:g} s:\n"
                                    f"{self.console_tail()}")
            time.sleep(0.1)

    def qmp(self, command: str, arguments: dict | None = None, *, timeout: float = 5.0) -> dict:
        return qmp_command(self.qmp_socket, command, arguments, timeout=timeout)

    def stop(self, *, timeout: float = 10.0) -> str:
        """QMP ``quit``, then SIGKILL our pid after ``timeout``; returns how it ended ("qmp", "kill", "exited")."""
        if self.pid is None or not self.alive():
            self._reap()
            self._cleanup_files()
            return "exited"
        how = "qmp"
        try:
            self.qmp("quit", timeout=min(timeout, 5.0))
        except (OSError, ValueError, LabStateError):
            how = "kill"
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            how = "kill"
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5.0
            while self.alive() and time.monotonic() < kill_deadline:
                time.sleep(0.05)
        self._reap()
        self._cleanup_files()
        return how

    def _reap(self) -> None:
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5.0)

    def _cleanup_files(self) -> None:
        for path in (self.pidfile, self.qmp_socket):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @classmethod
    def from_pidfile(cls, spec: QemuSpec) -> QemuProcess | None:
        """Re-attach to a guest started by an earlier run (for ``down``): only if the pid is a QEMU with this pidfile.

        The check on ``/proc/PID/cmdline`` keeps a stale pidfile from making us kill an unrelated process.
        """
        proc = cls(spec)
        try:
            pid = int(proc.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        cmdline = pid_cmdline(pid)
        if not pid_running(pid) or str(proc.pidfile) not in cmdline:
            return None
        proc.pid = pid
        return proc

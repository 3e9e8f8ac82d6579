"""``kind = "qemu"``: a QEMU process the layer starts itself (seed 7-7/7-8).

The seed's command line (built by ``vdpalab.qemu.qemu_argv``) ``-netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,
id=vhost-vdpa0 -device virtio-net-pci,netdev=vhost-vdpa0,page-per-vq=on,iommu_platform=on,disable-legacy=on``, run
in the background with ``-daemonize`` instead of the seed's foreground ``-nographic 2>&1 | tee vm153.log``: the
serial console goes to a log file, plus a pidfile and a QMP socket for a clean shutdown.

The emulated-qemu lab's guests are this kind too, run by the same code: lab.toml gives them a vhost-user data NIC
(OVS-DPDK's ``dpdkvhostuserclient`` connects to it) with the seed's device options plus ``vectors=0``, TCG instead of
KVM, a shared memfd for guest RAM (``memory_backend``), a direct kernel boot of the built image
(``kernel``/``initrd``/``append``), a management NIC with a loopback port forward for SSH (``mgmt_ssh_port``) and
runtime files in the lab's state dir (``runtime_dir``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from vdpalab.guests.base import GuestRun
from vdpalab.guests.vm import VmDriver, console_markers, memory_backend, vhost_vdpa_nics
from vdpalab.qemu import DataNic, QemuSpec, qemu_argv

if TYPE_CHECKING:
    from vdpalab.config import QemuGuest
    from vdpalab.layers.base import PlannedCommand

STOP_WAIT_S = 30


def nic_id(vdpa_device: str) -> str:
    """``/dev/vhost-vdpa-0`` -> ``vhost-vdpa0`` (the seed's netdev id)."""
    m = re.search(r"(\d+)$", vdpa_device)
    return f"vhost-vdpa{m.group(1)}" if m else "vhost-vdpa"


class QemuDriver(VmDriver):
    kind: ClassVar[str] = "qemu"
    runtime_files: ClassVar[str] = "guest runtime files: console logs, pidfiles, QMP sockets"
    guest: QemuGuest

    # --- what the host needs ---
    def backends(self) -> frozenset[str]:
        found = set(super().backends())
        if self.guest.vhost_user_socket:
            found.add("vhost-user")
        return frozenset(found)

    # --- the command line ---
    def spec(self) -> QemuSpec:
        guest = self.guest
        nics: list[DataNic] = []
        # the seed's guests run on QEMU's own RAM (vhost-vdpa pins it through the IOMMU); a vhost-user backend maps
        # guest memory, so it must be shared: hugetlbfs on hardware, a memfd in the emulated-qemu lab
        backend = memory_backend(guest)
        mem_path = self.lab.resolve(self.lab.hugepages.mount) if backend == "file" else None
        if guest.vdpa_device:
            nics.append(
                DataNic(
                    "vhost-vdpa",
                    Path(guest.vdpa_device),
                    id=nic_id(guest.vdpa_device),
                    device_options=tuple(guest.device_options),
                )
            )
        elif guest.vhost_user_socket:
            nics.append(
                DataNic(
                    "vhost-user",
                    self.lab_path(guest.vhost_user_socket) or Path(guest.vhost_user_socket),
                    id="net0",
                    mac=guest.mac,
                    device_options=tuple(guest.device_options),
                )
            )
        return QemuSpec(
            binary=guest.qemu_binary,
            name=guest.name,
            accel=guest.accel,
            cpu=guest.cpu,
            smp=guest.vcpus,
            memory_mib=guest.memory_mib,
            disk=Path(guest.image) if guest.image else None,
            kernel=self.lab_path(guest.kernel),
            initrd=self.lab_path(guest.initrd),
            append=guest.append,
            mgmt_ssh_port=guest.mgmt_ssh_port,
            mgmt_mac=guest.mgmt_mac,
            data_nics=tuple(nics),
            memory_backend=backend,
            mem_path=mem_path,
            serial_log=Path(self.path("console.log")),
            pidfile=Path(self.path("pid")),
            qmp_socket=Path(self.path("qmp")),
            nographic=False,
            no_reboot=False,
            minimal_config=False,
            extra_args=(*guest.extra_qemu_args, "-daemonize"),
        )

    def command(self) -> str:
        return shlex.join(qemu_argv(self.spec()))

    # --- probe and start ---
    def our_cmdline(self, pid: int) -> str | None:
        """/proc/PID/cmdline when the process is alive and ours (it names our pidfile: a stale pidfile never makes
        us touch another pid), else None."""
        result = self.ctx.read(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
        return result.stdout if result.ok and self.path("pid") in result.stdout.split() else None

    def alive(self, pid: int) -> bool:
        return self.our_cmdline(pid) is not None

    def probe(self) -> GuestRun:
        pid_text = self.ctx.read(["cat", self.path("pid")])
        pid = pid_text.stdout.strip()
        if not pid_text.ok or not pid.isdigit():
            return GuestRun(False)
        cmdline = self.our_cmdline(int(pid))
        if cmdline is not None:
            return GuestRun(True, int(pid), cmdline=cmdline)
        return GuestRun(False)

    def datapath_evidence(self, run: GuestRun) -> tuple[list[str], list[str]]:
        """The running QEMU's own command line has the seed's vhost-vdpa netdev on the lab's device."""
        device = self.guest.vdpa_device
        if not device or run.cmdline is None:
            return [], []
        nics = vhost_vdpa_nics(run.cmdline)
        lines = [f"{self.guest.name}: QEMU pid {run.pid} {nic}" for nic in nics]
        if not any(f"vhostdev={device}," in nic for nic in nics):
            return lines, [f"{self.guest.name}: QEMU pid {run.pid} has no vhost-vdpa netdev on {device}"]
        return lines, []

    def start_plan(self, run: GuestRun) -> list[PlannedCommand]:
        if run.running:
            return []
        return [self.ctx.planned(self.command(), f"guest {self.guest.name} (seed 7-7/7-8, in the background)")]

    def start(self, run: GuestRun) -> bool:
        if not super().start(run):
            return False
        name = self.guest.name
        pid = self.ctx.read_ok(["cat", self.path("pid")], what=f"reading {name}'s pidfile").strip()
        self.ctx.journal.record(f"qemu:{name}", int(pid) if pid.isdigit() else None)
        return True

    def pid(self) -> int | None:
        return self.ctx.journal.get(f"qemu:{self.guest.name}")

    def poll_s(self) -> float:
        return 0.5 if self.pid() else 2.0

    def watches_boot(self) -> bool:
        return bool(self.pid())  # a QEMU this layer started: fail at once when it died or its kernel panicked

    def boot_problem(self) -> str | None:
        """QEMU exited, or the console shows a fatal boot error."""
        pid = self.pid()
        if pid is None:
            return None
        if not self.alive(pid):
            return f"QEMU (pid {pid}) exited before SSH answered"
        return console_markers(self.ctx, self.console_log())

    # --- stop ---
    def started_here(self) -> bool:
        return bool(self.pid())

    def qmp_quit(self) -> PlannedCommand:
        qmp = shlex.quote(f"UNIX-CONNECT:{self.path('qmp')}")
        return self.ctx.planned(
            'printf \'%s\\n\' \'{"execute":"qmp_capabilities"}\' \'{"execute":"quit"}\' | socat - ' + qmp,
            "QMP quit (a clean shutdown)",
            check=False,
        )

    def wait_gone(self, pid: int) -> PlannedCommand:
        return self.ctx.planned(
            f"for i in $(seq 1 {STOP_WAIT_S}); do kill -0 {pid} 2>/dev/null || exit 0; sleep 1; done; exit 1",
            f"wait up to {STOP_WAIT_S} s for QEMU to exit",
            check=False,
        )

    def remove_files(self) -> PlannedCommand:
        return self.ctx.planned(["rm", "-f", self.path("pid"), self.path("qmp")])

    def stop_plan(self) -> list[PlannedCommand]:
        pid = self.pid()
        return [self.qmp_quit(), self.wait_gone(pid), self.remove_files()] if pid else []

    def stop(self) -> None:
        pid = self.pid()
        if not pid:
            return
        ctx = self.ctx
        if self.alive(pid):
            # no socat, or QMP not answering: SIGTERM is the other way, unless QEMU exited anyway (socat reports
            # an error when QEMU closes the socket on its way out of an early boot)
            if not ctx.execute([self.qmp_quit()])[0].ok and self.alive(pid):
                ctx.execute([ctx.planned(["kill", "-TERM", str(pid)], "QMP failed: SIGTERM")])
            if not ctx.execute([self.wait_gone(pid)])[0].ok and self.alive(pid):
                ctx.execute([ctx.planned(["kill", "-KILL", str(pid)], "QEMU did not exit")])
        ctx.execute([self.remove_files()])

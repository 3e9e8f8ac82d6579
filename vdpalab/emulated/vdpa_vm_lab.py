"""The emulated-vdpa lab (flavour ``vdpa-vm``): the lab host is a QEMU VM running the kernel's real vDPA framework.

This machine's kernel has no vDPA, so the seed's c83g155 is a VM (TCG, ``-cpu max``) booted from Debian's 6.12
kernel with a trixie user land (OVS 3.5 + DPDK 24.11), built and cached by :mod:`vdpalab.emulated.vm_image`.
This builder makes only what a real lab host has before the seed's procedure: the machine running (the VM,
booted with ``snapshot=on`` so its disk image never changes), its sshd, the OVS daemons and the vdpa management
device's module (``vduse``, as ``mlx5_vdpa`` comes with ``mlx5_core``). Hugepages, other_config and the OVS
restart, the bridges with their af_packet uplinks on the "DAC" veth pair and ``dpdkvhostuserclient`` ports on
``/dev/vduse/NAME``, ``vdpa dev add``, the bus driver and the guests are the bring-up layers' work over SSH,
exactly as on hardware.

On the machine the lab creates one network namespace (``emulated.host_netns``) in which QEMU runs: its user-mode
NIC forwards 127.0.0.1:``host.port`` (the VM's sshd) and each vdpa-netns guest's ``ssh.port`` (to its
``sshd_port`` in the VM) on that namespace's loopback only. ``down`` stops QEMU by its pid (QMP ``quit``
first), kills whatever else still runs in the namespace and removes it; nothing else on the machine changed.
"""

from __future__ import annotations

import json
import os
import posixpath
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock
from pyroute2 import netns as pr_netns

from vdpalab.config import Lab, LibvirtGuest, VdpaNetnsGuest, VmGuest
from vdpalab.emulated.daemons import kill_and_wait, netns_inode, pids_in_netns
from vdpalab.emulated.guest_image import generate_ssh_keypair
from vdpalab.emulated.netns_lab import ipr_in, restore_run_netns, run_netns_state
from vdpalab.emulated.sshd import known_hosts_name, pin_host_keys
from vdpalab.emulated.vm_image import DEFAULT_CACHE, ERROR_MARKER, READY_MARKER, VmImage, authkey_arg, build_vm_image
from vdpalab.errors import LabStateError
from vdpalab.hosts.netns import connect_tcp
from vdpalab.qemu import QemuProcess, QemuSpec

RECORD = "vdpa-vm.json"
#: what libvirt's maintainer scripts would have done in the lab VM (its packages are only unpacked)
LIBVIRTD_SETUP = """set -e
grep -q '^libvirt-qemu:' /etc/passwd ||\
  echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >> /etc/passwd
grep -q '^libvirt-qemu:' /etc/group || echo 'libvirt-qemu:x:64055:' >> /etc/group
grep -q '^libvirt:' /etc/group || echo 'libvirt:x:64056:' >> /etc/group
grep -q '^kvm:' /etc/group || echo 'kvm:x:64057:' >> /etc/group
cat > /etc/libvirt/qemu.conf <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
EOF
mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu /run/libvirt
[ -e /var/run/libvirt ] || ln -s /run/libvirt /var/run/libvirt
export LIBVIRT_LOG_OUTPUTS="1:file:/var/log/libvirt/libvirtd.log"
set +e"""
Log = Callable[[str], None]


def _quiet(message: str) -> None:
    return None


@dataclass
class Probe:
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class BuildReport:
    changed: list[str] = field(default_factory=list)
    probe: Probe | None = None
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # image_s, boot_to_ssh_s


class VdpaVmLab:
    """Build, probe and remove one emulated-vdpa lab (root only): a ``vdpalab.infra.Infrastructure``."""

    provides_guests = False  # the vdpa-netns guests exist once the guests layer made them

    def __init__(self, lab: Lab, log: Log | None = None) -> None:
        em = lab.emulated
        if em is None or em.flavour != "vdpa-vm" or em.vm is None:
            raise LabStateError(f"lab {lab.lab.name!r}: the vdpa-vm builder builds emulated labs of flavour 'vdpa-vm'")
        self.lab, self.vm, self.log = lab, em.vm, log or _quiet
        self.prefix = em.prefix
        self.state_dir = lab.state_dir
        self.netns = em.host_netns or ""
        self.image_cache = Path(os.path.abspath(lab.resolve(em.image_cache) or DEFAULT_CACHE))
        problems = []
        if not self.netns.startswith(em.prefix + "-"):
            problems.append(f"emulated.host_netns must start with {em.prefix}- (everything the lab makes carries it)")
        if lab.host.address != "127.0.0.1" or lab.host.netns != self.netns:
            problems.append(f"host: address 127.0.0.1 in netns {self.netns} (QEMU's port forward listens there)")
        if not lab.host.key_file or not lab.host.known_hosts:
            problems.append("host: key_file and known_hosts are needed (the VM takes the key's public half at boot)")
        for g, guest in enumerate(lab.guest):
            if isinstance(guest, VdpaNetnsGuest) and (guest.ssh.address, guest.ssh.netns) != ("127.0.0.1", self.netns):
                problems.append(f"guest[{g}].ssh: address 127.0.0.1 in netns {self.netns} (forwarded to sshd_port)")
        if problems:
            raise LabStateError(f"lab {lab.lab.name!r}: " + "; ".join(problems))
        self.client_key = Path(os.path.abspath(lab.resolve(lab.host.key_file) or ""))
        self.known_hosts = Path(os.path.abspath(lab.resolve(lab.host.known_hosts) or ""))
        self.vm_dir = self.state_dir / "vm"
        self._lock: FileLock | None = None

    # -- locking --

    @contextmanager
    def lock(self, timeout: float = 300.0) -> Iterator[None]:
        if self._lock is None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(self.state_dir / ".lab.lock"), timeout=timeout)
        with self._lock:
            yield

    # -- the VM --

    def forwards(self) -> list[tuple[int, int]]:
        """(port on 127.0.0.1 in the lab namespace, port in the VM): the VM's sshd and each guest's sshd."""
        out = [(self.lab.host.port, 22)]
        for guest in self.lab.guest:
            if isinstance(guest, VdpaNetnsGuest):
                out.append((guest.ssh.port, guest.sshd_port))
        return out

    def image(self) -> VmImage:
        return build_vm_image(self.image_cache, extra_packages=self.vm.extra_packages, suite=self.vm.suite,
                              mirror=self.vm.mirror, log=self.log)  # fmt: skip

    def spec(self, image: VmImage | None) -> QemuSpec:
        """The VM's QEMU command line (``image`` None: enough to find and stop a running VM)."""
        fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{outer}-:{inner}" for outer, inner in self.forwards())
        extra: tuple[str, ...] = ()
        kernel = initrd = append = None
        if image is not None:
            pub = Path(f"{self.client_key}.pub").read_text()
            append = f"console=ttyS0 panic=-1 ipv6.disable=1 vdpalab.hostname={self.lab.host.name} {authkey_arg(pub)}"
            kernel, initrd = image.kernel, image.initrd
            extra = (
                "-drive", f"file={image.root},if=virtio,format=raw,snapshot=on",
                "-netdev", f"user,id=mgmt,restrict=on,{fwd}", "-device", "virtio-net-pci,netdev=mgmt,romfile=",
            )  # fmt: skip
        return QemuSpec(
            binary=self.vm.qemu_binary, name=f"{self.prefix}-{self.lab.lab.name}-vm",
            accel=self.vm.accel, cpu=self.vm.cpu, smp=self.vm.vcpus, memory_mib=self.vm.memory_mib,
            kernel=kernel, initrd=initrd, append=append, serial_log=self.vm_dir / "console.log",
            pidfile=self.vm_dir / "qemu.pid", qmp_socket=self.vm_dir / "qmp.sock", extra_args=extra,
        )  # fmt: skip

    def running_vm(self) -> QemuProcess | None:
        return QemuProcess.from_pidfile(self.spec(None))

    def ssh_answers(self, timeout: float = 2.0) -> bool:
        try:
            with connect_tcp("127.0.0.1", self.lab.host.port, timeout, netns=self.netns) as sock:
                sock.settimeout(timeout)
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def host_state_lost(self) -> bool:
        """The VM is not running: its disk was a snapshot, so every change the layers made is gone with it."""
        return self.running_vm() is None

    # -- probe / status --

    def probe(self) -> Probe:
        probe = Probe()
        probe.facts["netns"] = netns_inode(self.netns) is not None
        if not probe.facts["netns"]:
            probe.problems.append(f"namespace {self.netns} is missing")
        vm = self.running_vm()
        probe.facts["vm_pid"] = vm.pid if vm else None
        if vm is None:
            probe.problems.append("the lab VM is not running")
        elif not self.ssh_answers():
            probe.problems.append(f"the lab VM's sshd does not answer on 127.0.0.1:{self.lab.host.port}")
        return probe

    def status(self) -> dict[str, Any]:
        probe = self.probe()
        present = probe.facts["netns"] or probe.facts["vm_pid"] is not None
        return {
            "lab": self.lab.lab.name,
            "state": "up" if probe.ok else ("partial" if present else "down"),
            "up": probe.ok,
            "problems": probe.problems,
            "state_dir": str(self.state_dir),
            "namespaces": {self.netns: probe.facts["netns"]},
            "daemons": {"qemu (lab VM)": probe.facts["vm_pid"]},
            "vm_pid": probe.facts["vm_pid"],
            "netns": self.netns,
            "ssh": f"127.0.0.1:{self.lab.host.port} in {self.netns}",
            "console": str(self.vm_dir / "console.log"),
            "image_cache": str(self.image_cache),
        }

    # -- up --

    def up(self) -> BuildReport:
        if os.geteuid() != 0:
            raise LabStateError("the emulated-vdpa lab needs root (a network namespace, QEMU)")
        t0 = time.monotonic()
        report = BuildReport()
        with self.lock():
            self._write_record()
            generate_ssh_keypair(self.client_key, comment=f"vdpalab-{self.lab.lab.name}")
            t1 = time.monotonic()
            image = self.image()
            report.timings["image_s"] = time.monotonic() - t1
            report.changed += self._ensure_netns()
            self._write_known_hosts(image)
            vm = self.running_vm()
            if vm is not None and not self.ssh_answers(timeout=5.0):
                report.changed.append(f"stopped the lab VM pid {vm.pid} ({vm.stop()}): its sshd did not answer")
                vm = None
            if vm is None:
                report.changed += self._drop_journals()
                report.changed.append(self._boot(image, report))
            report.changed += self._ensure_cable()
            report.changed += self._ensure_guest_image()
            report.changed += self._ensure_libvirtd()
            report.probe = self.probe()
            if not report.probe.ok:
                raise LabStateError(f"lab {self.lab.lab.name}: " + "; ".join(report.probe.problems))
        report.duration_s = time.monotonic() - t0
        return report

    def _boot(self, image: VmImage, report: BuildReport) -> str:
        self.vm_dir.mkdir(parents=True, exist_ok=True)
        vm = QemuProcess(self.spec(image), netns=self.netns)
        self.log(f"lab {self.lab.lab.name}: booting the lab VM ({image.kernel_release}, {self.vm.memory_mib} MiB, "
                 f"{self.vm.vcpus} vCPUs, {self.vm.accel})")  # fmt: skip
        vm.start()
        try:
            vm.wait_for_console(READY_MARKER, timeout=self.vm.boot_timeout_s, errors=(ERROR_MARKER, "Kernel panic"))
            deadline = time.monotonic() + 30
            while not self.ssh_answers():
                if time.monotonic() > deadline or not vm.alive():
                    raise LabStateError(f"the lab VM's sshd does not answer:\n{vm.console_tail()}")
                time.sleep(0.2)
        except Exception:
            vm.stop()
            raise
        started = vm.started_at or time.monotonic()
        report.timings["boot_to_ssh_s"] = time.monotonic() - started
        return f"booted the lab VM (pid {vm.pid}) to SSH in {report.timings['boot_to_ssh_s']:.1f} s"

    def _drop_journals(self) -> list[str]:
        """A freshly booted VM has none of the layers' changes (its disk is a snapshot): their journals are void."""
        journals = sorted((self.state_dir / "journal").glob("*.json"))
        for path in journals:
            path.unlink()
        if not journals:
            return []
        return [f"dropped the layer journals of the previous VM ({', '.join(p.stem for p in journals)})"]

    def _ensure_cable(self) -> list[str]:
        """The "DAC cable" between the first two PFs: a veth pair inside the VM (the NIC ports of a real host)."""
        if len(self.lab.pf) < 2:
            return []
        a, b = self.lab.pf[0].name, self.lab.pf[1].name
        from vdpalab.hosts.factory import open_host

        host = open_host(self.lab)
        try:
            if host.run(["ip", "link", "show", "dev", a], timeout=30).ok:
                return []
            script = f"ip link add {a} type veth peer name {b} && ip link set {a} up && ip link set {b} up"
            result = host.run(["sh", "-c", script], timeout=30)
            if not result.ok:
                raise LabStateError(f"lab VM: {script!r} exited with rc={result.rc}: {result.stderr.strip()[-200:]}")
        finally:
            host.close()
        return [f"connected {a} == {b} (veth) in the lab VM"]

    def vm_guests(self) -> list[VmGuest]:
        """The seed's VMs (kind qemu/libvirt) that run inside the lab VM from the guest image."""
        return [g for g in self.lab.guest if isinstance(g, VmGuest) and g.kernel]

    def _ensure_guest_image(self) -> list[str]:
        """The nested VMs' disk, as a real host has its guests' images: the small guest image (built from Debian
        packages, cached) copied into the lab VM at each guest's ``kernel``/``initrd``; its host key pinned in the
        guests' known_hosts."""
        guests = self.vm_guests()
        if not guests:
            return []
        from vdpalab.emulated.guest_image import build_guest_image
        from vdpalab.hosts.factory import open_host

        changed: list[str] = []
        pubkey = " ".join(Path(f"{self.client_key}.pub").read_text().split())
        image = build_guest_image(self.image_cache / "guest", pubkey=pubkey)
        if image.built_now:
            changed.append(f"built the guest image {image.key_hash[:12]} in {self.image_cache / 'guest'}")
        files = {(g.kernel, image.kernel) for g in guests} | {(g.initrd, image.initrd) for g in guests if g.initrd}
        host = open_host(self.lab)
        try:
            for remote, local in sorted((str(r), loc) for r, loc in files):
                stamp = f"{remote}.vdpalab-image"
                have = host.run(["cat", stamp], timeout=30)
                if have.ok and have.stdout.strip() == image.key_hash:
                    continue
                host.run(["mkdir", "-p", posixpath.dirname(remote)], timeout=30)
                host.put(str(local), remote)
                host.run(["sh", "-c", f"echo {image.key_hash} > {shlex.quote(stamp)}"], timeout=30)
                changed.append(f"copied the guest image's {posixpath.basename(remote)} into the lab VM: {remote}")
        finally:
            host.close()
        pins: dict[Path, dict[str, str]] = {}
        for guest in guests:
            path = self.lab.resolve(guest.ssh.known_hosts)
            if path is not None:
                pins.setdefault(path, {})[known_hosts_name(guest.ssh.address, guest.ssh.port)] = image.host_key
        for path, hosts in pins.items():
            old = path.read_text() if path.is_file() else ""
            new = pin_host_keys(old, hosts)
            if new != old:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(new)
                changed.append(f"pinned the guest image's host key in {path}")
        return changed

    def _ensure_libvirtd(self, timeout_s: float = 120.0) -> list[str]:
        """libvirtd running in the lab VM when a guest is a libvirt domain (a real host runs it as a service).

        The packages are unpacked, not configured, so this does what their maintainer scripts would: the users
        and groups libvirt's QEMU driver resolves at start (``libvirt-qemu``), a ``qemu.conf`` for a VM without
        cgroups, namespaces or a security driver, ``/var/run/libvirt`` (virsh's path) on ``/run/libvirt``."""
        if not any(isinstance(g, LibvirtGuest) for g in self.lab.guest):
            return []
        from vdpalab.hosts.factory import open_host

        host = open_host(self.lab)
        try:
            if host.run(["virsh", "-c", "qemu:///system", "version"], timeout=60).ok:
                return []
            script = LIBVIRTD_SETUP + f"""
(/usr/sbin/libvirtd > /var/log/libvirt/libvirtd.out 2>&1 &)
for i in $(seq {int(timeout_s)}); do virsh -c qemu:///system version >/dev/null 2>&1 && exit 0; sleep 1; done
tail -n 20 /var/log/libvirt/libvirtd.log /var/log/libvirt/libvirtd.out; exit 1
"""
            result = host.run(["sh", "-c", script], timeout=timeout_s + 60)
            if not result.ok:
                raise LabStateError(
                    f"lab VM: libvirtd did not answer `virsh version` within {timeout_s:g} s; its log:\n"
                    + result.stdout[-2000:]
                )
        finally:
            host.close()
        return ["started libvirtd in the lab VM"]

    def _write_record(self) -> None:
        path = self.state_dir / RECORD
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run_netns": run_netns_state(), "created": time.time()}, indent=2) + "\n")

    def _ensure_netns(self) -> list[str]:
        if netns_inode(self.netns) is not None:
            return []
        pr_netns.create(self.netns)
        with ipr_in(self.netns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        return [f"created namespace {self.netns}"]

    def _write_known_hosts(self, image: VmImage) -> None:
        text = pin_host_keys("", {known_hosts_name("127.0.0.1", outer): image.host_key for outer, _ in self.forwards()})
        for guest in self.lab.guest:
            path = self.lab.resolve(guest.ssh.known_hosts)
            if not isinstance(guest, VdpaNetnsGuest):
                continue  # a nested VM has its own host key (_ensure_guest_image)
            if path is not None and path != self.known_hosts:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        if not self.known_hosts.is_file() or self.known_hosts.read_text() != text:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            self.known_hosts.write_text(text)

    # -- down --

    def down(self) -> list[str]:
        removed: list[str] = []
        with self.lock():
            vm = self.running_vm()
            if vm is not None:
                removed.append(f"stopped the lab VM pid {vm.pid} ({vm.stop()})")
            for path in (self.vm_dir / "qemu.pid", self.vm_dir / "qmp.sock"):
                path.unlink(missing_ok=True)
            inode = netns_inode(self.netns)
            if inode is not None:
                leftovers = pids_in_netns({inode})
                if leftovers:
                    kill_and_wait(leftovers)
                    removed.append(f"killed {len(leftovers)} leftover process(es) in {self.netns}")
                pr_netns.remove(self.netns)
                removed.append(f"removed namespace {self.netns}")
            record_path = self.state_dir / RECORD
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                record = {}
            removed += restore_run_netns(record.get("run_netns"))
            record_path.unlink(missing_ok=True)
        return removed

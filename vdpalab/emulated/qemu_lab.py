"""The emulated lab with real QEMU guests (flavour ``qemu``): what a real host has before the seed's procedure.

The netns lab's builder (:class:`vdpalab.emulated.netns_lab.EmulatedLab`) does the host part unchanged: the
host namespace with its sshd (in the machine's mount namespace), the "DAC cable" veth pair ``ens2f0 ==
ens2f1`` (tx checksum offload and IPv6 off), ``ovsdb-server`` and ``ovs-vswitchd`` with the lab's private
rundir, and the SSH keys. This flavour adds only what a real host with QEMU guests and OVS-DPDK also has:

* ``ovs-vswitchd`` is the DPDK build (``openvswitch-switch-dpdk``); the lab's ``ovs.restart_command`` is a
  script the builder writes (``STATE/bin/ovs-ctl start|stop|restart``) that restarts this private daemon, as
  ``systemctl restart openvswitch`` does on the seed's host;
* the guest image (a disk image on the seed's host): built from Debian packages by
  :func:`vdpalab.emulated.guest_image.build_guest_image`, cached (a second run rebuilds nothing), and linked
  where the lab's ``[[guest]] kernel``/``initrd`` say, with the image's dropbear host key written to the
  guests' known_hosts;
* the DPDK prerequisites are checked (the af_packet and vdev plugins, ``missing_dpdk_drivers``).

The guests are *not* infrastructure: they are QEMU processes the guests layer starts over SSH, inside the
host namespace (their vhost-user sockets are files; the management NIC's ``hostfwd`` binds 127.0.0.1:PORT in
that namespace). Hugepages, other_config, the restart, the bridges with their ``dpdk`` and
``dpdkvhostuserclient`` ports and the guests are the bring-up layers' work, exactly as on hardware.

``down`` stops QEMU processes a crashed run left (QMP ``quit``, by pidfile, only when the pid is ours), then
does the netns builder's down, removes the guests' sockets and pidfiles and DPDK's runtime directory of the
lab's ``--file-prefix`` (``/var/run/dpdk/<prefix>``, and ``/var/run/dpdk`` when the lab created it).

``python -m vdpalab.emulated.qemu_lab ovs-ctl LAB.toml start|stop|restart|status`` is what the ovs-ctl script
runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vdpalab.config import GuestSettings, Lab, QemuGuest, load_lab
from vdpalab.emulated import netns_lab
from vdpalab.emulated.daemons import read_pidfile, stop_ours
from vdpalab.emulated.dpdk import (
    DPDK_RUNTIME_ROOT,
    cleanup_dpdk_runtime,
    dpdk_runtime_dir,
    find_vswitchd_dpdk,
    missing_dpdk_drivers,
)
from vdpalab.emulated.netns_lab import BuildReport, EmulatedLab, Probe
from vdpalab.emulated.ovs import OVS_VSWITCHD, PrivateOvs
from vdpalab.emulated.sshd import known_hosts_name, pin_host_keys
from vdpalab.errors import LabStateError
from vdpalab.guests.vm import guest_path
from vdpalab.qemu import QemuProcess, QemuSpec

RECORD = "qemu-lab.json"
OVS_CTL = "ovs-ctl"
DPDK_START_TIMEOUT_S = 60.0
DEFAULT_FILE_PREFIX = "rte"  # EAL's prefix when dpdk-extra has none

def _host_only(lab: Lab) -> Lab:
    """The lab as the netns builder sees it: the host part only (no guest namespaces, no guest sshd)."""
    assert lab.emulated is not None
    return lab.model_copy(update={"emulated": lab.emulated.model_copy(update={"flavour": "netns"}), "guest": []})


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        return False
    return True


def dpdk_file_prefix(lab: Lab) -> str | None:
    """The ``--file-prefix`` of the lab's dpdk-extra (DPDK's runtime directory is ``/var/run/dpdk/<it>``)."""
    args = [w for arg in lab.ovs.dpdk_extra_args for w in shlex.split(arg)]
    for i, word in enumerate(args):
        if word.startswith("--file-prefix="):
            return word.split("=", 1)[1]
        if word == "--file-prefix" and i + 1 < len(args):
            return args[i + 1]
    return None


def guest_runtime_files(lab: Lab, guest: QemuGuest) -> dict[str, Path]:
    """Where the guests layer keeps this guest's files on the lab host (the same paths, computed alike)."""
    return {suffix: Path(guest_path(lab, guest, suffix)) for suffix in ("pid", "qmp", "console.log")}


class QemuLab(EmulatedLab):
    """Build, probe and remove one emulated-qemu lab (root only); the guests are left to the guests layer."""

    provides_guests = False  # QEMU guests exist only once the guests layer booted them

    def __init__(self, lab: Lab) -> None:
        if lab.lab.kind != "emulated" or lab.emulated is None or lab.emulated.flavour != "qemu":
            raise LabStateError(f"lab {lab.lab.name!r}: the qemu builder builds emulated labs of flavour 'qemu'")
        super().__init__(_host_only(lab))
        self.full_lab = lab
        lay = self.layout
        self.vswitchd_binary = lab.ovs.vswitchd_binary or ""
        self.ovs = PrivateOvs(lay.host_netns, lay.ovs, lay.marker, vswitchd_binary=self.vswitchd_binary or "?")
        self.image_cache = Path(os.path.abspath(lab.resolve(lab.emulated.image_cache) or lay.state_dir / "images"))
        self.record_path = lay.state_dir / RECORD
        self.ovs_ctl = lay.state_dir / "bin" / OVS_CTL
        self.file_prefix = dpdk_file_prefix(lab)
        self._check(lab)
        #: the lab's guests, every one a qemu guest (``_check`` refused any other kind)
        self.guests = [g for g in lab.guest if isinstance(g, QemuGuest)]

    # -- what the lab file must say for this builder --

    def _check(self, lab: Lab) -> None:
        lay = self.layout
        problems: list[str] = []
        if not lab.ovs.dpdk:
            problems.append("ovs.dpdk must be true (the qemu flavour runs OVS-DPDK with vhost-user ports)")
        restart = shlex.split(lab.ovs.restart_command or "")
        if not restart or Path(os.path.abspath(lab.resolve(restart[0]) or "")) != self.ovs_ctl:
            problems.append(f"ovs.restart_command must run the builder's {self.ovs_ctl} (e.g. '<state_dir>/bin/"
                            f"{OVS_CTL} restart'), got {lab.ovs.restart_command!r}")
        if self.file_prefix is None or not self.file_prefix.startswith(lay.prefix + "-"):
            problems.append(f"ovs.dpdk_extra_args needs --file-prefix=<{lay.prefix}-...> (DPDK's runtime directory "
                            f"must carry the lab's prefix), got {self.file_prefix!r}")
        for guest in lab.guest:
            where = f"guest {guest.name}"
            if guest.kind != "qemu":
                problems.append(f"{where} is a {guest.kind} guest: the qemu builder's guests are qemu guests")
                continue
            if not guest.vhost_user_socket:
                problems.append(f"{where} needs vhost_user_socket (OVS-DPDK connects to it as dpdkvhostuserclient)")
            if guest.mgmt_ssh_port is None or guest.mgmt_ssh_port != guest.ssh.port:
                problems.append(f"{where}: mgmt_ssh_port ({guest.mgmt_ssh_port}) must equal ssh.port "
                                f"({guest.ssh.port}): SSH goes through QEMU's port forward")
            if guest.ssh.netns != lay.host_netns or guest.ssh.address != "127.0.0.1":
                problems.append(f"{where}: ssh must be address 127.0.0.1 in netns {lay.host_netns} (QEMU runs there "
                                f"and its port forward listens there), got {guest.ssh.address} in {guest.ssh.netns}")
            key = lab.resolve(guest.ssh.key_file)
            if key is None or Path(os.path.abspath(key)) != lay.client_key:
                problems.append(f"{where}: ssh.key_file must be the lab's client key {lay.client_key} (its public "
                                "half is built into the guest image)")
            for field in ("kernel", "initrd"):
                value = lab.resolve(getattr(guest, field))
                if value is None:
                    problems.append(f"{where}: {field} is missing (the guest boots the built image directly)")
        if problems:
            raise LabStateError(f"lab {lab.lab.name!r}: " + "; ".join(problems))

    @property
    def managed_boot_files(self) -> dict[Path, str]:
        """kernel/initrd paths inside the state dir that the builder links to the built image: path -> which."""
        files: dict[Path, str] = {}
        for guest in self.full_lab.guest:
            for field in ("kernel", "initrd"):
                value = self.full_lab.resolve(getattr(guest, field))
                if value is not None and _inside(value, self.layout.state_dir):
                    files[Path(os.path.abspath(value))] = field
        return files

    def guest_known_hosts(self) -> dict[Path, list[GuestSettings]]:
        files: dict[Path, list[GuestSettings]] = {}
        for guest in self.full_lab.guest:
            value = self.full_lab.resolve(guest.ssh.known_hosts)
            if value is not None and _inside(value, self.layout.state_dir):
                files.setdefault(Path(os.path.abspath(value)), []).append(guest)
        return files

    # -- probe --

    def probe(self) -> Probe:
        probe = super().probe()
        t0 = time.monotonic()
        for path, field in self.managed_boot_files.items():
            if not path.is_file():
                probe.problems.append(f"guest {field} {path} is missing (the guest image is not linked)")
        for path in self.guest_known_hosts():
            if not path.is_file():
                probe.problems.append(f"{path} (the guests' host key) is missing")
        current = self.ovs_ctl.read_text() if self.ovs_ctl.is_file() else ""
        if current != self._ovs_ctl_text():
            probe.problems.append(f"{self.ovs_ctl} (ovs.restart_command) is missing or outdated")
        probe.duration_s += time.monotonic() - t0
        return probe

    def status(self) -> dict[str, Any]:
        status = super().status()
        status["guests"] = {
            g.name: {"pidfile": str(guest_runtime_files(self.full_lab, g)["pid"]),
                     "ssh": f"127.0.0.1:{g.ssh.port} in {g.ssh.netns}"}
            for g in self.guests
        }
        status["dpdk_file_prefix"] = self.file_prefix
        return status

    # -- up --

    def up(self) -> BuildReport:
        """The host part (the netns builder's), preceded by the guest image, its links and the ovs-ctl script."""
        t0 = time.monotonic()
        netns_lab._preflight()
        self._preflight_qemu()
        with self.lock():
            changed: list[str] = []
            self._write_qemu_record()
            changed += self._ensure_keys()
            changed += self._ensure_guest_image()
            changed += self._ensure_ovs_ctl()
            report = super().up()
            report.changed[:0] = changed
        report.duration_s = time.monotonic() - t0
        return report

    def _preflight_qemu(self) -> None:
        problems = []
        binaries = {g.qemu_binary for g in self.guests}
        problems += [f"{b} not found (install qemu-system-x86)" for b in sorted(binaries) if not shutil.which(b)]
        if not self.vswitchd_binary:
            try:
                self.vswitchd_binary = find_vswitchd_dpdk()
            except LabStateError as exc:
                problems.append(str(exc))
        elif not os.access(self.vswitchd_binary, os.X_OK):
            problems.append(f"ovs.vswitchd_binary {self.vswitchd_binary} is not executable "
                            "(install openvswitch-switch-dpdk)")
        self.ovs.vswitchd_binary = self.vswitchd_binary
        missing = missing_dpdk_drivers()
        if missing:
            problems.append(f"DPDK plugins missing: install {' '.join(missing)} (without them OVS says only "
                            "'EAL: failed to parse device')")
        if problems:
            raise LabStateError(f"emulated-qemu lab {self.layout.name}: " + "; ".join(problems))

    def _write_qemu_record(self) -> None:
        """Whether /var/run/dpdk existed before this lab (down removes it only if the lab created it)."""
        if self.record_path.exists():
            return
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "dpdk_root_existed": DPDK_RUNTIME_ROOT.exists(),
            "dpdk_default_existed": dpdk_runtime_dir(DEFAULT_FILE_PREFIX).exists(),
            "created": time.time(),
        }
        self.record_path.write_text(json.dumps(record, indent=2) + "\n")

    def _read_qemu_record(self) -> dict[str, Any]:
        try:
            data = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _ensure_guest_image(self) -> list[str]:
        """Build (or find cached) the guest image for the lab's client key; link it; write the guests' known_hosts."""
        from vdpalab.emulated.guest_image import build_guest_image

        changed: list[str] = []
        pubkey = " ".join((self.layout.client_key.parent / f"{self.layout.client_key.name}.pub").read_text().split())
        image = build_guest_image(self.image_cache, pubkey=pubkey)
        if image.built_now:
            changed.append(f"built the guest image {image.key_hash[:12]} in {self.image_cache}")
        for path, field in self.managed_boot_files.items():
            target = image.kernel if field == "kernel" else image.initrd
            if path.is_symlink() and Path(os.readlink(path)) == target:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            tmp.replace(path)
            changed.append(f"linked guest {field} {path} -> {target}")
        for path, guests in self.guest_known_hosts().items():  # files of the lab's state dir: the lab owns them
            text = pin_host_keys("", {known_hosts_name(g.ssh.address, g.ssh.port): image.host_key for g in guests})
            if not path.is_file() or path.read_text() != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                changed.append(f"wrote the guests' host key to {path}")
        return changed

    def _ovs_ctl_text(self) -> str:
        # the environment's interpreter by a stable name (python and python3 are the same venv; a console script
        # and `python -m pytest` report different sys.executable)
        python = Path(sys.prefix) / "bin" / "python"
        if not os.access(python, os.X_OK):
            python = Path(sys.executable)
        return (
            "#!/bin/sh\n"
            f"# vdpalab emulated-qemu lab {self.layout.name}: start|stop|restart|status of the lab's private\n"
            "# ovs-vswitchd (the DPDK build); this lab's ovs.restart_command, as systemctl is on a real host.\n"
            f"exec {shlex.quote(str(python))} -m vdpalab.emulated.qemu_lab {OVS_CTL} "
            f"{shlex.quote(self.full_lab.source)} \"$@\"\n"
        )

    def _ensure_ovs_ctl(self) -> list[str]:
        text = self._ovs_ctl_text()
        if self.ovs_ctl.is_file() and self.ovs_ctl.read_text() == text:
            return []
        self.ovs_ctl.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ovs_ctl.with_name(OVS_CTL + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(self.ovs_ctl)
        return [f"wrote {self.ovs_ctl} (ovs.restart_command)"]

    # -- the private vswitchd, for ovs-ctl --

    def _vsctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ovs-vsctl", f"--db=unix:{self.layout.ovs.db_sock}", "--timeout=10", *args],
            capture_output=True, text=True, timeout=20, check=False,
        )

    def stop_vswitchd(self) -> bool:
        """Stop ovs-vswitchd (only ours) and wait until it is gone: its hugepages are free when this returns."""
        pidfile = self.layout.ovs.pidfile(OVS_VSWITCHD)
        stopped = stop_ours(read_pidfile(pidfile), self.layout.marker, timeout=10.0)
        pidfile.unlink(missing_ok=True)
        self._cleanup_default_prefix()
        return stopped

    def _cleanup_default_prefix(self) -> list[Path]:
        """Remove ``/var/run/dpdk/rte`` when this lab's vswitchd made it, once that vswitchd is gone.

        OVS initialises DPDK at runtime as soon as ``dpdk-init=true`` is set, before the seed's later keys
        (dpdk-extra with its --file-prefix) and the restart: that first EAL runs with the default prefix. The
        directory goes only when it did not exist when the lab came up, the lab's vswitchd log shows an EAL
        started without --file-prefix, and the lab's vswitchd is not running.
        """
        record = self._read_qemu_record()
        path = dpdk_runtime_dir(DEFAULT_FILE_PREFIX)
        if record.get("dpdk_default_existed", True) or not path.exists() or self.ovs.pid(OVS_VSWITCHD) is not None:
            return []
        log = self.layout.ovs.log / "ovs-vswitchd.log"
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        if not any("EAL ARGS:" in line and "--file-prefix" not in line for line in lines):
            return []
        shutil.rmtree(path, ignore_errors=True)
        return [path]

    def start_vswitchd(self) -> list[str]:
        """Start the daemons that are not running; with dpdk-init=true wait for DPDK (else raise, with the log)."""
        if not self.vswitchd_binary:
            self.vswitchd_binary = find_vswitchd_dpdk()
            self.ovs.vswitchd_binary = self.vswitchd_binary
        started = self.ovs.start()
        wants_dpdk = self._vsctl("get", "Open_vSwitch", ".", "other_config:dpdk-init")
        if wants_dpdk.returncode == 0 and wants_dpdk.stdout.strip().strip('"') == "true":
            deadline = time.monotonic() + DPDK_START_TIMEOUT_S
            while self._vsctl("get", "Open_vSwitch", ".", "dpdk_initialized").stdout.strip() != "true":
                if time.monotonic() > deadline or self.ovs.pid(OVS_VSWITCHD) is None:
                    log = self.layout.ovs.log / "ovs-vswitchd.log"
                    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
                    raise LabStateError("ovs-vswitchd did not initialise DPDK:\n" + "\n".join(tail))
                time.sleep(0.1)
        return started

    def ovs_ctl_action(self, action: str) -> str:
        if action == "status":
            return json.dumps(self.ovs.running())
        done = []
        if action in ("stop", "restart") and self.stop_vswitchd():
            done.append(f"stopped {OVS_VSWITCHD}")
        if action in ("start", "restart"):
            done += [f"started {d} ({self.vswitchd_binary})" for d in self.start_vswitchd()]
        return "; ".join(done) or "nothing to do"

    # -- down --

    def down(self) -> list[str]:
        """QEMU left by a crash (QMP quit), the netns builder's down, guest runtime files, DPDK's runtime dir."""
        removed: list[str] = []
        with self.lock():
            removed += self._stop_guests()
            removed += super().down()
            removed += self._remove_guest_files()
            removed += [f"removed {p} (the runtime dir of the EAL OVS started at dpdk-init)"
                        for p in self._cleanup_default_prefix()]
            if self.file_prefix:
                existed = self._read_qemu_record().get("dpdk_root_existed", True)
                for path in cleanup_dpdk_runtime(self.file_prefix, remove_root=not existed):
                    removed.append(f"removed {path}")
            self.record_path.unlink(missing_ok=True)
        return removed

    def _stop_guests(self) -> list[str]:
        stopped = []
        for guest in self.guests:
            files = guest_runtime_files(self.full_lab, guest)
            proc = QemuProcess.from_pidfile(QemuSpec(name=guest.name, serial_log=files["console.log"],
                                                     pidfile=files["pid"], qmp_socket=files["qmp"]))
            if proc is not None:
                stopped.append(f"stopped guest {guest.name} (pid {proc.pid}, {proc.stop()})")
        return stopped

    def _remove_guest_files(self) -> list[str]:
        """Sockets and pidfiles the guests left inside the state dir (console logs stay for post-mortems)."""
        removed = []
        for guest in self.guests:
            paths = [guest_runtime_files(self.full_lab, guest)[s] for s in ("pid", "qmp")]
            socket = self.full_lab.resolve(guest.vhost_user_socket)
            if socket is not None:
                paths.append(Path(os.path.abspath(socket)))
            for path in paths:
                if _inside(path, self.layout.state_dir) and (path.is_socket() or path.is_file()):
                    path.unlink(missing_ok=True)
                    removed.append(f"removed {path}")
        return removed


def relabeled_qemu_lab(
    source: str | Path, dest_dir: str | Path, name: str, *, replace: dict[str, str] | None = None
) -> Path:
    """A renamed copy of a qemu lab file (self-tests, benchmarks) that reuses the source's cached guest image.

    Like :func:`vdpalab.emulated.relabel.relabel_lab_file` (state under ``dest_dir/s``), plus: the image cache
    stays the source's (made absolute), and the copy's client key is one shared test key kept in that cache, so
    every copy boots the same cached image instead of building one per key. ``replace`` edits the copy's text
    (e.g. a broken kernel command line). Returns the new lab file.
    """
    from vdpalab.emulated.guest_image import generate_ssh_keypair
    from vdpalab.emulated.relabel import relabel_lab_file

    original = load_lab(source)
    if original.emulated is None or original.emulated.flavour != "qemu":
        raise LabStateError(f"{source}: not an emulated lab of flavour 'qemu'")
    dest = Path(dest_dir)
    path = relabel_lab_file(source, dest, name, state_dir=dest / "s")
    text = path.read_text()
    cache = Path(os.path.abspath(original.resolve(original.emulated.image_cache) or original.resolve(
        original.emulated.state_dir) / "images"))
    if original.emulated.image_cache:
        text = text.replace(f'"{original.emulated.image_cache}"', f'"{cache}"')
    for old, new in (replace or {}).items():
        if old not in text:
            raise LabStateError(f"{source}: {old!r} not found in the lab file")
        text = text.replace(old, new)
    path.write_text(text)
    copy = QemuLab(load_lab(path))
    key = generate_ssh_keypair(cache / "test-key" / "id_ed25519", comment="vdpalab-test")
    client = copy.layout.client_key
    client.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(key.private_key, client)
    client.chmod(0o600)
    client.with_name(client.name + ".pub").write_text(key.public_key + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdpalab.emulated.qemu_lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ctl = sub.add_parser(OVS_CTL, help="start|stop|restart|status the lab's private ovs-vswitchd (DPDK build)")
    ctl.add_argument("lab", help="the lab file")
    ctl.add_argument("action", choices=("start", "stop", "restart", "status"))
    args = parser.parse_args(argv)
    try:
        builder = QemuLab(load_lab(args.lab))
        print(builder.ovs_ctl_action(args.action))
    except LabStateError as exc:
        print(f"{OVS_CTL}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

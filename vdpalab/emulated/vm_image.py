"""Build the vDPA lab VM (kernel + tiny initramfs + ext4 root file system) from Debian packages, cached.

The machine's kernel has no vDPA, so the emulated-vdpa lab's host is a QEMU VM booted from Debian's
``linux-image-6.12.*-amd64`` (VDPA, VDPA_USER/VDUSE, VIRTIO_VDPA, VHOST_VDPA as modules). Its user land
comes from Debian trixie: OVS 3.5 with DPDK 24.11 is the first Debian OVS-DPDK that creates VDUSE devices.

Nothing is installed on the machine. A private apt configuration (its own sources list, lists, cache and an
empty dpkg status under ``<cache>/apt``) resolves and downloads the packages' dependency closure; each
``.deb`` is unpacked (``dpkg-deb --fsys-tarfile | tar -x --keep-directory-symlink``) into a tree that becomes
an ext4 image (``mkfs.ext4 -d``, no mount). The VM boots it with ``snapshot=on``, so the cached image never
changes. A small initramfs (busybox + the modules needed to mount ``/dev/vda``) switches to it; PID 1 is
busybox init running :data:`BOOT_SCRIPT`, which configures the management NIC, installs the lab's public key
(kernel command line ``vdpalab.authkey=<base64>``; the cache is shared between clones, keys are not),
mounts hugetlbfs at /dev/hugepages, starts sshd and ovsdb-server + the DPDK ``ovs-vswitchd`` (the daemons a
real lab host already runs) and prints :data:`READY_MARKER` on the serial console.

The cache key is the hash of :data:`BUILDER_VERSION`, the suite and the package list (base + the lab's
``extra_packages``). Changing the package list builds a new image beside the old one; a second call with the
same inputs only reads a manifest. Adding packages for nested guests (QEMU, libvirt on vhost_vdpa): put them
in the lab's ``[emulated.vm] extra_packages``; they are unpacked (not configured: no maintainer scripts run),
so anything they need at run time beyond their files is started by the guest driver that uses them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vdpalab.emulated.guest_image import (
    _Cpio,
    _index_modules,
    _locked,
    _read_module,
    modinfo_depends,
    publish_build,
    read_manifest,
)
from vdpalab.errors import LabStateError

BUILDER_VERSION = "2"
READY_MARKER = "VDPALAB-VM-READY"
ERROR_MARKER = "VDPALAB-VM-ERROR"
DEFAULT_CACHE = "/var/cache/vdpalab"
DEFAULT_SUITE = "trixie"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KERNEL_META_PACKAGE = "linux-image-amd64"
#: The user land every vDPA lab VM gets (trixie names). The lab adds ``extra_packages``.
BASE_PACKAGES = (
    "base-files", "base-passwd", "bash", "coreutils", "dash", "libc-bin", "util-linux", "mount", "procps",
    "findutils", "grep", "sed", "gawk", "diffutils", "hostname", "busybox-static", "kmod", "iproute2",
    "ethtool", "iputils-ping", "iperf3", "openssh-server", "python3-minimal", "openvswitch-switch-dpdk",
    "pciutils",
    # DPDK's drivers are plugins: the vdev bus and af_packet PMD (the "DAC" uplinks), the ring mempool (mbufs)
    "librte-bus-vdev25", "librte-net-af-packet25", "librte-mempool-ring25",
)  # fmt: skip
#: Modules the initramfs loads to mount the root disk (``virtio-blk``, ext4); dependencies are added.
ROOT_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
BOOT_SCRIPT = "usr/local/sbin/vdpalab-boot"
OVS_SCRIPT = "usr/local/sbin/vdpalab-ovs"
MGMT_ADDRESS = "10.0.2.15/24"  # QEMU user networking's default guest address

Log = Callable[[str], None]


@dataclass(frozen=True)
class VmImage:
    """A built lab VM: boot ``kernel`` + ``initrd`` with ``root`` as a virtio disk (``snapshot=on``).

    ``host_key`` is the VM's sshd ed25519 host key (OpenSSH public form) for a strict known_hosts file;
    ``versions`` maps package name -> version for everything unpacked (the fingerprint reads OVS/DPDK from it).
    """

    directory: Path
    kernel: Path
    initrd: Path
    root: Path
    key_hash: str
    kernel_release: str
    host_key: str
    versions: dict[str, str]


def build_vm_image(
    cache_dir: str | Path = DEFAULT_CACHE,
    *,
    extra_packages: Sequence[str] = (),
    suite: str = DEFAULT_SUITE,
    mirror: str = DEFAULT_MIRROR,
    log: Log = print,
    force: bool = False,
) -> VmImage:
    """Return the cached VM image for this package list, building it first when needed."""
    cache = Path(cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    packages = tuple(sorted(set(BASE_PACKAGES) | set(extra_packages)))
    key_hash = input_hash(suite, mirror, packages)
    image_dir = cache / "images" / key_hash[:20]
    with _locked(cache / ".vm-image.lock"):
        if not force:
            image = load_vm_image(image_dir)
            if image is not None and image.key_hash == key_hash:
                return image
        started = time.monotonic()
        apt = PrivateApt(cache / "apt" / suite, suite, mirror, log)
        apt.update()
        kernel_pkg = apt.kernel_package()
        debs = apt.download([*packages, kernel_pkg])
        work = Path(tempfile.mkdtemp(prefix="vm-image-", dir=cache))
        try:
            image = _build(work, image_dir, debs, kernel_pkg, key_hash, packages, log)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"vm image {key_hash[:12]} built in {time.monotonic() - started:.0f} s: {image_dir}")
        return image


def input_hash(suite: str, mirror: str, packages: Sequence[str]) -> str:
    """What decides the image: builder version, suite, mirror, packages, boot and OVS scripts."""
    h = hashlib.sha256()
    h.update(f"builder={BUILDER_VERSION}\nsuite={suite}\nmirror={mirror}\n".encode())
    h.update(("packages=" + " ".join(sorted(packages)) + "\n").encode())
    h.update(boot_script().encode() + ovs_script().encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- apt


def _run(cmd: Sequence[str], *, what: str, timeout: float = 900, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    except FileNotFoundError:
        raise LabStateError(f"vm image: {what}: {cmd[0]} is not installed")
    except subprocess.TimeoutExpired:
        raise LabStateError(f"vm image: {what}: {' '.join(cmd)} timed out after {timeout:g} s")
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-800:]
        raise LabStateError(f"vm image: {what}: {' '.join(cmd[:6])} ... exited with rc={proc.returncode}: {tail}")
    return proc.stdout


class PrivateApt:
    """apt-get with its own sources, lists, archives and an empty dpkg status: the machine's apt is untouched."""

    def __init__(self, root: Path, suite: str, mirror: str, log: Log) -> None:
        self.root, self.suite, self.mirror, self.log = root, suite, mirror, log
        for sub in ("lists/partial", "archives/partial", "etc/preferences.d", "etc/apt.conf.d"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "archives" / "partial", 0o755)
        os.chmod(root / "lists" / "partial", 0o755)
        sources = root / "etc" / "sources.list"
        want = f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {suite} main\n"
        if not sources.is_file() or sources.read_text() != want:
            sources.write_text(want)
            for stale in (root / "lists").glob("*_Packages*"):
                stale.unlink()
        status = root / "status"
        if not status.exists():
            status.write_text("")

    def _opts(self) -> list[str]:
        r = str(self.root)
        return [
            "-o", "APT::Architecture=amd64", "-o", "APT::Architectures::=amd64",
            "-o", f"Dir::Etc::SourceList={r}/etc/sources.list", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::Etc::Preferences={r}/etc/preferences",
            "-o", f"Dir::Etc::PreferencesParts={r}/etc/preferences.d",
            "-o", f"Dir::Etc::Parts={r}/etc/apt.conf.d",
            "-o", f"Dir::State::Lists={r}/lists", "-o", f"Dir::State::status={r}/status",
            "-o", f"Dir::Cache={r}", "-o", f"Dir::Cache::archives={r}/archives",
            "-o", "APT::Install-Recommends=false", "-o", "APT::Get::AllowUnauthenticated=false",
            "-o", "Debug::NoLocking=true",
        ]  # fmt: skip

    def _apt(self, *args: str) -> list[str]:
        return ["apt-get", "-q", "-y", *self._opts(), *args]

    def update(self, max_age_s: float = 7 * 86400) -> None:
        """``apt-get update`` when the lists are missing or older than a week."""
        lists = list((self.root / "lists").glob("*_Packages*"))
        if lists and time.time() - min(p.stat().st_mtime for p in lists) < max_age_s:
            return
        self.log(f"vm image: apt-get update ({self.suite}, private lists in {self.root})")
        _run(self._apt("update"), what="apt-get update")

    def kernel_package(self) -> str:
        """The exact ``linux-image-<release>-amd64`` that ``linux-image-amd64`` names in this suite."""
        cmd = ["apt-cache", *self._opts(), "depends", KERNEL_META_PACKAGE]
        out = _run(cmd, what=f"apt-cache depends {KERNEL_META_PACKAGE}")
        found = re.findall(r"Depends:\s+(linux-image-[0-9]\S*-amd64)\b", out)
        if not found:
            raise LabStateError(f"vm image: {KERNEL_META_PACKAGE} depends on no linux-image-*-amd64: {out[:300]!r}")
        return found[0]

    def download(self, packages: Sequence[str]) -> list[Path]:
        """The dependency closure of ``packages`` (as on an empty system) as local ``.deb`` files."""
        out = _run(self._apt("-s", "install", *packages), what="resolving the package closure")
        wanted = re.findall(r"^Inst (\S+) \((\S+) .*\[(\S+)\]\)", out, re.M)
        if not wanted:
            raise LabStateError(f"vm image: apt-get -s install names no packages: {out[-300:]!r}")
        archives = self.root / "archives"
        debs = [archives / f"{name}_{version.replace(':', '%3a')}_{arch}.deb" for name, version, arch in wanted]
        missing = [d for d in debs if not d.is_file()]
        if missing:
            self.log(f"vm image: downloading {len(missing)} of {len(debs)} packages")
            _run(self._apt("-d", "install", *packages), what="apt-get -d install", timeout=1800)
        absent = [d.name for d in debs if not d.is_file()]
        if absent:
            raise LabStateError(f"vm image: apt-get -d install left out {', '.join(absent[:5])}")
        return debs


# ----------------------------------------------------------------------------------------------- build


def _unpack(deb: Path, tree: Path) -> None:
    """dpkg-deb's data into ``tree``, keeping the merged-/usr directory symlinks."""
    data = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(
        ["tar", "-x", "--keep-directory-symlink", "--no-same-owner" if os.geteuid() else "--same-owner", "-C",
         str(tree)], stdin=data.stdout, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert data.stdout is not None
    data.stdout.close()
    if data.wait() != 0 or tar.returncode != 0:
        raise LabStateError(f"vm image: unpacking {deb.name} failed: {tar.stderr.strip()[-300:]}")


def _deb_field(deb: Path, name: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), name], what=f"reading {deb.name}").strip()


def _build(
    work: Path, image_dir: Path, debs: list[Path], kernel_pkg: str, key_hash: str, packages: Sequence[str], log: Log
) -> VmImage:
    tree = work / "root"
    tree.mkdir()
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
        (tree / d).mkdir(parents=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        (tree / link).symlink_to(f"usr/{link}")
    versions: dict[str, str] = {}
    log(f"vm image: unpacking {len(debs)} packages")
    for deb in debs:
        _unpack(deb, tree)
        versions[_deb_field(deb, "Package")] = _deb_field(deb, "Version")
    releases = sorted(p.name for p in (tree / "usr/lib/modules").iterdir() if p.is_dir())
    if len(releases) != 1:
        raise LabStateError(f"vm image: expected one kernel in /usr/lib/modules, found {releases}")
    release = releases[0]
    out = work / "out"
    out.mkdir()
    shutil.copy2(tree / "boot" / f"vmlinuz-{release}", out / "vmlinuz")
    _configure(tree, release)
    host_key = _host_key(tree)
    _run(["depmod", "-b", str(tree), release], what="depmod")
    _run(["chroot", str(tree), "/sbin/ldconfig"], what="ldconfig in the image")
    (out / "initrd.img").write_bytes(_initramfs(tree, release))
    size_mb = int(_run(["du", "-sm", str(tree)], what="du").split()[0])
    image_mb = size_mb + max(256, size_mb // 3)
    log(f"vm image: root file system {size_mb} MB -> ext4 of {image_mb} MB")
    _run(["mkfs.ext4", "-q", "-F", "-L", "vdpalab-root", "-d", str(tree), str(out / "root.ext4"), f"{image_mb}M"],
         what="mkfs.ext4 -d", timeout=1800)  # fmt: skip
    manifest = {
        "key_hash": key_hash,
        "builder": BUILDER_VERSION,
        "kernel_package": kernel_pkg,
        "kernel_release": release,
        "packages": list(packages),
        "versions": versions,
        "host_key": host_key,
        "root_mb": size_mb,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    publish_build(out, image_dir)
    image = load_vm_image(image_dir)
    if image is None:
        raise LabStateError(f"vm image: {image_dir} is incomplete right after the build")
    return image


def load_vm_image(image_dir: Path) -> VmImage | None:
    """The image in ``image_dir``, or None when it is absent or incomplete."""
    data = read_manifest(image_dir)
    if data is None:
        return None
    kernel, initrd, root = files = [image_dir / n for n in ("vmlinuz", "initrd.img", "root.ext4")]
    if not all(f.is_file() for f in files):
        return None
    return VmImage(image_dir, kernel, initrd, root, data["key_hash"], data["kernel_release"], data["host_key"],
                   data["versions"])


def _configure(tree: Path, release: str) -> None:
    """The few files a package's maintainer scripts would have written, plus the lab's boot scripts."""
    etc = tree / "etc"
    shutil.copy(tree / "usr/share/base-passwd/passwd.master", etc / "passwd")
    shutil.copy(tree / "usr/share/base-passwd/group.master", etc / "group")
    with open(etc / "passwd", "a") as fh:
        fh.write("sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n")
    (etc / "shadow").write_text(
        "".join(f"{line.split(':')[0]}:*:20000:0:99999:7:::\n" for line in (etc / "passwd").read_text().splitlines())
    )
    os.chmod(etc / "shadow", 0o640)
    (etc / "hostname").write_text("c83g155\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    (etc / "resolv.conf").write_text("")  # no DNS: OVS only warns when the file is missing
    (etc / "fstab").write_text("")
    (etc / "inittab").write_text(
        f"::sysinit:/{BOOT_SCRIPT}\n::ctrlaltdel:/bin/busybox poweroff -f\n::shutdown:/bin/busybox umount -a -r\n"
    )
    ssh = etc / "ssh"
    ssh.mkdir(exist_ok=True)
    (ssh / "sshd_config").write_text(
        "Port 22\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nAllowTcpForwarding yes\nUseDNS no\nPrintMotd no\nMaxSessions 64\nMaxStartups 64\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\nSubsystem sftp /usr/lib/openssh/sftp-server\nAcceptEnv LANG LC_*\n"
    )
    (tree / "root/.ssh").mkdir(parents=True, exist_ok=True)
    os.chmod(tree / "root/.ssh", 0o700)
    for rel, text in ((BOOT_SCRIPT, boot_script()), (OVS_SCRIPT, ovs_script())):
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o755)
    (tree / "sbin/init").unlink(missing_ok=True)
    (tree / "sbin/init").symlink_to("/bin/busybox")
    for d in ("etc/openvswitch", "var/log/openvswitch", "var/lib/openvswitch", "dev/hugepages"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    urandom = tree / "dev/urandom"  # ovsdb-tool reads it; devtmpfs covers /dev at boot
    urandom.parent.mkdir(exist_ok=True)
    os.mknod(urandom, stat.S_IFCHR | 0o666, os.makedev(1, 9))
    try:
        _run(["chroot", str(tree), "ovsdb-tool", "create", "/etc/openvswitch/conf.db",
              "/usr/share/openvswitch/vswitch.ovsschema"], what="ovsdb-tool create")  # fmt: skip
    finally:
        urandom.unlink()


def _host_key(tree: Path) -> str:
    key = tree / "etc/ssh/ssh_host_ed25519_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vdpalab-vm", "-f", str(key)], what="ssh-keygen")
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def _initramfs(tree: Path, release: str) -> bytes:
    """busybox + the modules that mount the root disk, and an /init that switches to it."""
    import gzip

    moddir = tree / "usr/lib/modules" / release
    index = _index_modules(moddir)
    builtin = {
        Path(line.strip()).name.split(".ko")[0].replace("-", "_")
        for line in (moddir / "modules.builtin").read_text().splitlines()
    }
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name in builtin:
            return
        if name not in index:
            raise LabStateError(f"vm image: module {name} is neither in the kernel package nor built in")
        for dep in modinfo_depends(_read_module(index[name])):
            visit(dep)
        order.append(name)

    for name in ROOT_MODULES:
        visit(name)
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "lib/modules"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", (tree / "usr/bin/busybox").read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    for name in order:
        cpio.file(f"lib/modules/{name}.ko", _read_module(index[name]))
    mods = " ".join(order)
    init = f"""#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in {mods}; do insmod /lib/modules/$m.ko || echo "{ERROR_MARKER}: insmod $m"; done
n=0; while [ ! -b /dev/vda ] && [ $n -lt 200 ]; do n=$((n+1)); sleep 0.05; done
mount -t ext4 /dev/vda /newroot || {{ echo "{ERROR_MARKER}: cannot mount /dev/vda"; poweroff -f; }}
umount /proc /sys; mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""
    cpio.file("init", init.encode(), 0o755)
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def boot_script() -> str:
    """PID 1's sysinit: what a lab host has before the suite's layers run (sshd, OVS daemons, hugetlbfs)."""
    return f"""#!/bin/bash
# written by vdpalab.emulated.vm_image (builder {BUILDER_VERSION}); run by busybox init as sysinit
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
fail() {{ echo "{ERROR_MARKER}: $*" > /dev/console; }}
mount -t proc proc /proc; mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/hugepages
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run; mkdir -p /run/sshd /run/netns /var/run/openvswitch
ln -sfn /run /var/run 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t hugetlbfs -o pagesize=2M none /dev/hugepages
mount -o remount,rw / 2>/dev/null
hostname "$(sed -n 's/.*vdpalab\\.hostname=\\([^ ]*\\).*/\\1/p' /proc/cmdline)"
ip link set lo up
modprobe virtio_net || fail "modprobe virtio_net"
modprobe tun || fail "modprobe tun"   # OVS's netdev datapath opens /dev/net/tun for its internal ports
modprobe vduse || fail "modprobe vduse"   # the vdpa management device (as mlx5_core loads mlx5_vdpa on a NIC)
for d in /sys/class/net/*; do
  n=${{d##*/}}; [ "$n" = lo ] && continue
  ip link set "$n" up && ip addr add {MGMT_ADDRESS} dev "$n" && break
done
key=$(sed -n 's/.*vdpalab\\.authkey=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
[ -n "$key" ] && echo "$key" | base64 -d > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
/usr/sbin/sshd -E /var/log/sshd.log || fail "sshd did not start"
/{OVS_SCRIPT} start || fail "OVS did not start"
echo "{READY_MARKER} $(hostname) $(uname -r) $(cut -d' ' -f1 /proc/uptime)" > /dev/console
"""


def ovs_script() -> str:
    """start/stop/restart of ovsdb-server and the DPDK ovs-vswitchd (the lab's ``ovs.restart_command``)."""
    return """#!/bin/bash
# written by vdpalab.emulated.vm_image: the VM's OVS service (Debian's ovs-ctl needs systemd and alternatives)
set -u
RUN=/var/run/openvswitch
VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
start_db() {
  [ -S $RUN/db.sock ] && return 0
  ovsdb-server /etc/openvswitch/conf.db --remote=punix:$RUN/db.sock --pidfile=$RUN/ovsdb-server.pid \\
    --detach --log-file=/var/log/openvswitch/ovsdb-server.log --unixctl=$RUN/ovsdb-server.ctl || return 1
  ovs-vsctl --no-wait init
}
start_vswitchd() {
  [ -f $RUN/ovs-vswitchd.pid ] && kill -0 "$(cat $RUN/ovs-vswitchd.pid)" 2>/dev/null && return 0
  $VSWITCHD unix:$RUN/db.sock --pidfile=$RUN/ovs-vswitchd.pid --detach --log-file=/var/log/openvswitch/ovs-vswitchd.log
}
stop_vswitchd() {
  [ -f $RUN/ovs-vswitchd.pid ] || return 0
  pid=$(cat $RUN/ovs-vswitchd.pid)
  ovs-appctl -t ovs-vswitchd exit --cleanup 2>/dev/null || kill "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null; rm -f $RUN/ovs-vswitchd.pid
}
case "${1:-}" in
  start) start_db && start_vswitchd ;;
  restart) stop_vswitchd; start_db && start_vswitchd ;;
  stop) stop_vswitchd; ovs-appctl -t $RUN/ovsdb-server.ctl exit 2>/dev/null; true ;;
  *) echo "usage: $0 start|restart|stop" >&2; exit 2 ;;
esac
"""


def authkey_arg(public_key: str) -> str:
    """The kernel command line word that hands the lab's public key to the VM's boot script."""
    return "vdpalab.authkey=" + base64.b64encode((public_key.strip() + "\n").encode()).decode()

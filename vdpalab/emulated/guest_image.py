"""Build a tiny bootable guest (kernel + initramfs) from Debian packages, cached by a hash of its inputs.

The emulated-qemu lab boots real QEMU guests without a disk image: the kernel is Debian's cloud kernel
(``apt-get download linux-image-<ver>-cloud-amd64``), the initramfs is written here (cpio newc, uncompressed) and
holds busybox-static, dropbear, iperf3, iputils ``ping`` and iproute2 ``ip``/``ss`` (with their ldd-resolved
libraries), the virtio modules (``virtio_pci``, ``virtio_net`` and what they depend on) and an ``/init`` that
configures each NIC by MAC from the kernel command line, starts dropbear (public-key only) and prints
:data:`READY_MARKER`.

Kernel command line understood by ``/init``::

    vdpalab.net=MAC,ADDR/LEN;MAC,ADDR/LEN   one entry per NIC, matched against /sys/class/net/*/address
    vdpalab.hostname=NAME

Everything is cached under ``cache_dir``: the downloaded ``.deb``, the extracted kernel and modules, and one
directory per input hash holding ``vmlinuz`` and ``initrd.img``. A second call with the same inputs only
stats a handful of files and returns (well under 0.1 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vdpalab.errors import LabStateError

BUILDER_VERSION = "4"  # bump when the initramfs layout or /init changes: it is part of the cache key
READY_MARKER = "VDPALAB-GUEST-READY"
ERROR_MARKER = "VDPALAB-GUEST-ERROR"
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
#: Modules the guest needs; their dependencies are found from each ``.ko``'s ``.modinfo`` section.
GUEST_MODULES = ("virtio_pci", "virtio_net")
#: Host binaries copied into the initramfs: (host path, path inside the guest).
GUEST_TOOLS = (
    ("/usr/bin/busybox", "bin/busybox"),
    # dash as /bin/sh (root's login shell and `sh -c`): Debian's busybox ash prefers its own applets to PATH
    # (FEATURE_SH_STANDALONE), so under it `ping` would be busybox ping (no -f) whatever /usr/bin holds
    ("/usr/bin/dash", "bin/sh"),
    ("/usr/sbin/dropbear", "usr/sbin/dropbear"),
    ("/usr/bin/iperf3", "usr/bin/iperf3"),
    ("/usr/bin/ping", "usr/bin/ping"),
    # iproute2: the layers and tests read `ip link`/`ip -4 -o addr` and `ss -Hltn` as on any Linux guest
    ("/usr/bin/ip", "usr/bin/ip"),
    ("/usr/bin/ss", "usr/bin/ss"),
)
#: Busybox applets not linked because a real tool takes the name (iputils ping has ``-f``).
SKIPPED_APPLETS = frozenset({"ping", "ping6", "ip", "sh"})
#: Key types dropbear 2022.83 accepts for public-key login.
SUPPORTED_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
HOST_KEY_GUEST_PATH = "etc/dropbear/dropbear_ed25519_host_key"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuestImage:
    """A built guest: boot it with ``-kernel kernel -initrd initrd``.

    ``key_hash`` is the hash of every input (builder version, kernel package, tools, public key) and names the
    cache directory; ``host_key`` is the guest's dropbear host key in OpenSSH public form (``ssh-ed25519 AAAA..``)
    so that a client can pin it instead of trusting any key.
    """

    kernel: Path
    initrd: Path
    key_hash: str
    host_key: str
    kernel_package: str
    kernel_version: str
    modules: tuple[str, ...]
    built_now: bool = field(default=False, compare=False)  # this call built it (False: found in the cache)


@dataclass(frozen=True)
class SshKeyPair:
    """The lab's SSH identity: a private key file (OpenSSH format) and its public line."""

    private_key: Path
    public_key: str


def generate_ssh_keypair(private_key: Path, *, comment: str = "vdpalab") -> SshKeyPair:
    """Create an ed25519 key pair at ``private_key`` (+ ``.pub``) unless it exists; return it.

    Uses ``cryptography`` (a paramiko dependency) so no ``ssh-keygen`` is needed. Idempotent: an existing key is
    loaded and its public line re-derived, so the result is stable across runs.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private_key = Path(private_key)
    if private_key.exists():
        key = serialization.load_ssh_private_key(private_key.read_bytes(), password=None)
    else:
        private_key.parent.mkdir(parents=True, exist_ok=True)
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} {comment}".strip()
    pub_path = private_key.with_name(private_key.name + ".pub")
    if not pub_path.exists() or pub_path.read_text().strip() != line:
        pub_path.write_text(line + "\n")
    return SshKeyPair(private_key=private_key, public_key=line)


def build_guest_image(
    cache_dir: Path,
    *,
    pubkey: str,
    kernel_package: str | None = None,
    refresh_kernel: bool = False,
    force: bool = False,
) -> GuestImage:
    """Return the cached guest image for these inputs, building it first if needed.

    ``kernel_package`` pins an exact package (``linux-image-6.1.0-56-cloud-amd64``); by default the package that
    ``linux-image-cloud-amd64`` depends on is resolved once with ``apt-cache`` and remembered in the cache
    (``refresh_kernel=True`` resolves again, picking up a newer kernel). ``force`` rebuilds the initramfs.
    Raises :class:`LabStateError` with the failing command and its output.
    """
    cache_dir = Path(cache_dir).resolve()
    pubkey = _check_pubkey(pubkey)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        kpkg = _kernel_package(cache_dir, kernel_package, refresh_kernel)
        key_hash = _input_hash(kpkg, pubkey)
        image_dir = cache_dir / "images" / key_hash[:20]
        manifest = image_dir / "manifest.json"
        if manifest.is_file() and not force:
            image = _load_manifest(image_dir)
            if image is not None and image.key_hash == key_hash:
                return image
        started = time.monotonic()
        log.info("guest image %s: building (kernel %s %s)", key_hash[:12], kpkg.name, kpkg.version)
        kernel_dir = _prepare_kernel(cache_dir, kpkg)
        image = _build_image(cache_dir, image_dir, kernel_dir, kpkg, pubkey, key_hash)
        log.info("guest image %s built in %.1f s: %s", key_hash[:12], time.monotonic() - started, image.initrd)
        return replace(image, built_now=True)


# ----------------------------------------------------------------------------------------------- inputs


def _check_pubkey(pubkey: str) -> str:
    line = pubkey.strip()
    if "\n" in line or not line:
        raise LabStateError(f"guest image: the public key must be one OpenSSH line, got {pubkey[:60]!r}")
    kind = line.split()[0]
    if kind not in SUPPORTED_KEY_TYPES:
        raise LabStateError(
            f"guest image: key type {kind!r} is not accepted by dropbear 2022.83; use one of {SUPPORTED_KEY_TYPES}"
        )
    return line


@dataclass(frozen=True)
class _KernelPackage:
    name: str
    version: str


def _run(cmd: list[str], *, what: str, cwd: Path | None = None, timeout: float = 300) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise LabStateError(f"guest image: {what}: {cmd[0]} is not installed")
    except subprocess.TimeoutExpired:
        raise LabStateError(f"guest image: {what}: {' '.join(cmd)} timed out after {timeout:g} s")
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-800:]
        raise LabStateError(f"guest image: {what}: {' '.join(cmd)} exited with rc={proc.returncode}: {tail}")
    return proc.stdout


def _kernel_package(cache_dir: Path, pinned: str | None, refresh: bool) -> _KernelPackage:
    """Resolve the kernel package name and version; remembered in ``kernel-package.json`` (apt-cache is slow)."""
    memo = cache_dir / "kernel-package.json"
    if not refresh and memo.is_file():
        data = json.loads(memo.read_text())
        if pinned is None or data.get("name") == pinned:
            return _KernelPackage(data["name"], data["version"])
    name = pinned
    if name is None:
        out = _run(["apt-cache", "depends", KERNEL_META_PACKAGE], what=f"resolving {KERNEL_META_PACKAGE}")
        found = re.findall(r"Depends:\s+(linux-image-\S+-cloud-amd64)\b", out)
        if not found:
            raise LabStateError(
                f"guest image: apt-cache depends {KERNEL_META_PACKAGE} names no linux-image-*-cloud-amd64 "
                f"(run apt-get update?): {out.strip()[:300]!r}"
            )
        name = found[0]
    policy = _run(["apt-cache", "policy", name], what=f"looking up {name}")
    m = re.search(r"Candidate:\s+(\S+)", policy)
    if not m or m.group(1) == "(none)":
        raise LabStateError(f"guest image: no installable candidate for {name} (run apt-get update?)")
    kpkg = _KernelPackage(name, m.group(1))
    memo.write_text(json.dumps({"name": kpkg.name, "version": kpkg.version}) + "\n")
    log.info("guest image: kernel package %s %s", kpkg.name, kpkg.version)
    return kpkg


def _input_hash(kpkg: _KernelPackage, pubkey: str) -> str:
    """Hash of what decides the image's content; only stats files, so the warm path stays fast."""
    h = hashlib.sha256()
    h.update(f"builder={BUILDER_VERSION}\nkernel={kpkg.name}={kpkg.version}\nmodules={GUEST_MODULES}\n".encode())
    h.update(f"pubkey={pubkey}\n".encode())
    h.update(_init_script(()).encode())
    for host_path, guest_path in GUEST_TOOLS:
        try:
            st = os.stat(host_path)
        except FileNotFoundError:
            raise LabStateError(f"guest image: {host_path} is missing (install its Debian package)")
        h.update(f"{host_path}>{guest_path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- kernel


def _prepare_kernel(cache_dir: Path, kpkg: _KernelPackage) -> Path:
    """Download and unpack the kernel package once; keep only vmlinuz and the guest's modules (decompressed)."""
    kernel_dir = cache_dir / "kernels" / f"{kpkg.name}_{kpkg.version}"
    if (kernel_dir / "kernel.json").is_file():
        return kernel_dir
    deb = _download_deb(cache_dir, kpkg)
    work = Path(tempfile.mkdtemp(prefix="kernel-", dir=cache_dir))
    try:
        tree = work / "tree"
        _run(["dpkg-deb", "-x", str(deb), str(tree)], what=f"unpacking {deb.name}", timeout=600)
        vmlinuz = sorted((tree / "boot").glob("vmlinuz-*"))
        module_roots = sorted(p for p in (tree / "lib" / "modules").glob("*") if p.is_dir())
        if not vmlinuz or not module_roots:
            raise LabStateError(f"guest image: {deb.name} holds no /boot/vmlinuz-* or /lib/modules/<version>")
        release = module_roots[0].name
        index = _index_modules(module_roots[0])
        order = _module_load_order(GUEST_MODULES, index)
        out = work / "out"
        (out / "modules").mkdir(parents=True)
        shutil.copy2(vmlinuz[0], out / "vmlinuz")
        for name in order:
            (out / "modules" / f"{name}.ko").write_bytes(_read_module(index[name]))
        (out / "kernel.json").write_text(
            json.dumps({"package": kpkg.name, "version": kpkg.version, "release": release, "modules": order}) + "\n"
        )
        publish_build(out, kernel_dir)
        log.debug("guest image: kernel %s, modules %s", release, " ".join(order))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return kernel_dir


def _download_deb(cache_dir: Path, kpkg: _KernelPackage) -> Path:
    debs = cache_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    arch_version = kpkg.version.replace(":", "%3a")
    cached = sorted(debs.glob(f"{kpkg.name}_{arch_version}_*.deb"))
    if cached:
        return cached[0]
    work = Path(tempfile.mkdtemp(prefix="download-", dir=debs))
    try:
        os.chmod(work, 0o755)  # apt's _apt sandbox user must be able to write here
        log.info("guest image: apt-get download %s=%s", kpkg.name, kpkg.version)
        _run(["apt-get", "download", f"{kpkg.name}={kpkg.version}"], cwd=work, what="downloading the kernel")
        got = sorted(work.glob("*.deb"))
        if not got:
            raise LabStateError(f"guest image: apt-get download {kpkg.name} succeeded but left no .deb in {work}")
        target = debs / got[0].name
        os.replace(got[0], target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def _index_modules(root: Path) -> dict[str, Path]:
    """Map module name (``-`` normalised to ``_``) to its file, whatever its compression."""
    index: dict[str, Path] = {}
    for path in root.rglob("*.ko*"):
        for suffix in _MODULE_SUFFIXES:
            if path.name.endswith(suffix):
                index[path.name[: -len(suffix)].replace("-", "_")] = path
                break
    return index


def _read_module(path: Path) -> bytes:
    """The module's ELF bytes: busybox insmod cannot decompress, so xz/zstd/gzip are undone here."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        proc = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=False)
        if proc.returncode != 0:
            raise LabStateError(f"guest image: zstd -dc {path.name} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout
    return data


def modinfo_depends(elf: bytes) -> list[str]:
    """The ``depends=`` list of a kernel module, read from its ``.modinfo`` ELF section (no kmod needed)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise LabStateError("guest image: not a little-endian ELF64 kernel module")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    sections = []
    for i in range(shnum):
        name_off, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
        sections.append((name_off, offset, size))
    str_off = sections[shstrndx][1]
    for name_off, offset, size in sections:
        end = elf.index(b"\0", str_off + name_off)
        if elf[str_off + name_off : end] == b".modinfo":
            for field in elf[offset : offset + size].split(b"\0"):
                if field.startswith(b"depends="):
                    value = field[len(b"depends=") :].decode()
                    return [d.replace("-", "_") for d in value.split(",") if d]
            return []
    return []


def _module_load_order(wanted: Iterable[str], index: dict[str, Path]) -> list[str]:
    """Dependencies first (depth-first post-order), each module once."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise LabStateError(f"guest image: module dependency cycle at {name}")
        if name not in index:
            raise LabStateError(f"guest image: module {name} is not in the kernel package (built in? renamed?)")
        visiting.add(name)
        for dep in modinfo_depends(_read_module(index[name])):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


# ----------------------------------------------------------------------------------------------- initramfs


def _init_script(modules: Iterable[str]) -> str:
    mods = " ".join(modules)
    return f"""#!/bin/sh
# vdpalab guest /init, written by vdpalab.emulated.guest_image (builder {BUILDER_VERSION})
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
say() {{ echo "vdpalab-init: $*"; }}
fail() {{ echo "{ERROR_MARKER}: $*"; }}
for m in {mods}; do insmod /lib/modules/vdpalab/$m.ko || fail "insmod $m"; done
NET=""
NAME=""
for w in $(cat /proc/cmdline); do
  case "$w" in
    vdpalab.net=*) NET="${{w#vdpalab.net=}}" ;;
    vdpalab.hostname=*) NAME="${{w#vdpalab.hostname=}}" ;;
  esac
done
[ -n "$NAME" ] && hostname "$NAME"
# busybox's ip, not iproute2's: one static binary instead of a dynamic one with a dozen libraries to map and
# relocate, which a guest nested in a TCG VM pays for with seconds per exec (iproute2 stays for the suite)
busybox ip link set lo up
find_if() {{
  for d in /sys/class/net/*; do
    if [ "$(cat "$d/address" 2>/dev/null)" = "$1" ]; then echo "${{d##*/}}"; return 0; fi
  done
  return 1
}}
OLDIFS="$IFS"
IFS=';'
set -- $NET
IFS="$OLDIFS"
for e in "$@"; do
  mac=$(echo "${{e%%,*}}" | tr A-F a-f)
  addr="${{e#*,}}"
  ifc=""
  n=0
  while [ $n -lt 100 ]; do ifc=$(find_if "$mac") && break; n=$((n + 1)); sleep 0.1; done
  if [ -z "$ifc" ]; then fail "no NIC with MAC $mac"; continue; fi
  busybox ip link set "$ifc" up || fail "ip link set $ifc up"
  [ "$addr" = "$e" ] || busybox ip addr add "$addr" dev "$ifc" || fail "ip addr add $addr dev $ifc"
  say "$ifc $mac $addr"
done
dropbear -F -E -s -j -k -p 22 -r /{HOST_KEY_GUEST_PATH} -P /run/dropbear.pid &
n=0
until grep -q ':0016 00000000:0000 0A' /proc/net/tcp 2>/dev/null; do
  n=$((n + 1))
  if [ $n -gt 100 ]; then fail "dropbear is not listening on port 22"; break; fi
  sleep 0.1
done
echo "{READY_MARKER} $(hostname) $(cat /proc/uptime)"
exec /sbin/init
"""


_INITTAB = """# busybox init: reaps orphans and handles poweroff/reboot; /init already did the setup
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
"""


class _Cpio:
    """A deterministic cpio "newc" archive writer (root-owned entries, mtime 0), as the kernel unpacks it."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 0
        self._seen: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._buf.write(header + encoded)
        self._buf.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self._buf.write(data)
        self._buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str, perm: int = 0o755) -> None:
        parent = name.rpartition("/")[0]
        if parent and parent not in self._seen:
            self.dir(parent)
        if name not in self._seen:
            self._seen.add(name)
            self._entry(name, stat.S_IFDIR | perm)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._parents(name)
        if name in self._seen:
            raise LabStateError(f"guest image: {name} added twice to the initramfs")
        self._seen.add(name)
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._parents(name)
        if name not in self._seen:
            self._seen.add(name)
            self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._parents(name)
        self._seen.add(name)
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def has(self, name: str) -> bool:
        return name in self._seen

    def _parents(self, name: str) -> None:
        parent = name.rpartition("/")[0]
        if parent:
            self.dir(parent)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._buf.getvalue()


def _shared_libraries(binary: str) -> list[str]:
    """Absolute paths of the libraries (and the loader) ``ldd`` resolves for ``binary``."""
    proc = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False, timeout=60)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and "not a dynamic executable" not in out:
        raise LabStateError(f"guest image: ldd {binary} exited with rc={proc.returncode}: {out.strip()[-300:]}")
    libs: list[str] = []
    for line in out.splitlines():
        line = line.strip()
        if "not a dynamic executable" in line or "statically linked" in line:
            return []
        if "=> not found" in line:
            raise LabStateError(f"guest image: ldd {binary}: {line}")
        m = re.search(r"(?:=>\s+)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def _guest_lib_path(host_path: str) -> str:
    """Where a library goes in the guest: its path without glibc-hwcaps subdirectories (the guest CPU differs)."""
    return re.sub(r"/glibc-hwcaps/[^/]+", "", host_path).lstrip("/")


def _busybox_applets(busybox: str) -> list[str]:
    out = _run([busybox, "--list-full"], what="listing busybox applets")
    return [line.strip() for line in out.splitlines() if line.strip()]


def _dropbear_host_key(work: Path) -> tuple[bytes, str]:
    key = work / "dropbear_ed25519_host_key"
    _run(["dropbearkey", "-t", "ed25519", "-f", str(key)], what="generating the guest's dropbear host key")
    out = _run(["dropbearkey", "-y", "-f", str(key)], what="reading the guest's dropbear host key")
    for line in out.splitlines():
        if line.startswith("ssh-ed25519 "):
            return key.read_bytes(), " ".join(line.split()[:2])
    raise LabStateError(f"guest image: dropbearkey -y printed no ssh-ed25519 line: {out[:300]!r}")


def build_initramfs(
    kernel_dir: Path, pubkey: str, host_key: bytes, modules: list[str]
) -> tuple[bytes, list[str]]:
    """The initramfs (uncompressed) and the list of its paths (for the manifest).

    Not gzip'd, because a guest nested in the TCG lab VM runs every instruction of its boot 50-70 times slower
    than single-level TCG, where the kernel unpacks it in 0.14 s instead of 0.35 s gzip'd (nested, one run each:
    19.1 s gzip'd, 21.2 s plain in a run whose early boot was 1.44 times slower). Copying 19 MB instead of 8 MB
    into the lab VM costs 2 s more.
    """
    cpio = _Cpio()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "lib/x86_64-linux-gnu", "lib64", "etc/dropbear", "proc", "sys",
              "dev", "run", "var", "lib/modules/vdpalab", "etc/vdpalab"):
        cpio.dir(d)
    cpio.dir("tmp", 0o1777)
    cpio.dir("root", 0o700)
    cpio.dir("root/.ssh", 0o700)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    cpio.symlink("var/run", "../run")
    cpio.file("init", _init_script(modules).encode(), 0o755)
    libs: dict[str, str] = {}
    for host_path, guest_path in GUEST_TOOLS:
        cpio.file(guest_path, Path(host_path).read_bytes(), 0o755)
        for lib in _shared_libraries(host_path):
            libs.setdefault(_guest_lib_path(lib), lib)
    for guest_path, host_path in sorted(libs.items()):
        cpio.file(guest_path, Path(host_path).read_bytes(), 0o755)
    for applet in _busybox_applets("/usr/bin/busybox"):
        if applet.rpartition("/")[2] in SKIPPED_APPLETS or cpio.has(applet):
            continue
        cpio.symlink(applet, os.path.relpath("bin/busybox", os.path.dirname(applet) or "."))
    for name in modules:
        cpio.file(f"lib/modules/vdpalab/{name}.ko", (kernel_dir / "modules" / f"{name}.ko").read_bytes())
    cpio.file("etc/passwd", b"root:*:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\ntty:x:5:\n")
    cpio.file("etc/shells", b"/bin/sh\n/bin/ash\n")
    cpio.file("etc/inittab", _INITTAB.encode())
    cpio.file("etc/hosts", b"127.0.0.1 localhost\n")
    cpio.file(HOST_KEY_GUEST_PATH, host_key, 0o600)
    cpio.file("root/.ssh/authorized_keys", (pubkey + "\n").encode(), 0o600)
    paths = sorted(cpio._seen)
    raw = cpio.finish()
    log.debug("guest image: initramfs %d entries, %.1f MB", len(paths), len(raw) / 1e6)
    return raw, paths


def _build_image(
    cache_dir: Path,
    image_dir: Path,
    kernel_dir: Path,
    kpkg: _KernelPackage,
    pubkey: str,
    key_hash: str,
) -> GuestImage:
    kinfo = json.loads((kernel_dir / "kernel.json").read_text())
    modules = list(kinfo["modules"])
    work = Path(tempfile.mkdtemp(prefix="image-", dir=cache_dir))
    try:
        host_key, host_pub = _dropbear_host_key(work)
        initrd, paths = build_initramfs(kernel_dir, pubkey, host_key, modules)
        out = work / "out"
        out.mkdir()
        shutil.copy2(kernel_dir / "vmlinuz", out / "vmlinuz")
        (out / "initrd.img").write_bytes(initrd)
        (out / "ssh_host_ed25519_key.pub").write_text(host_pub + "\n")
        manifest = {
            "key_hash": key_hash,
            "builder": BUILDER_VERSION,
            "kernel_package": kpkg.name,
            "kernel_version": kpkg.version,
            "kernel_release": kinfo["release"],
            "modules": modules,
            "host_key": host_pub,
            "pubkey": pubkey,
            "initrd_sha256": hashlib.sha256(initrd).hexdigest(),
            "paths": paths,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        publish_build(out, image_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    image = _load_manifest(image_dir)
    assert image is not None
    return image


def publish_build(out: Path, final: Path) -> None:
    """Put a finished build in place of ``final`` (a rename: a reader never sees half a build)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(out, final)


def read_manifest(image_dir: Path) -> dict[str, Any] | None:
    """The ``manifest.json`` of a built image, or None when there is none (or half of one)."""
    try:
        data = json.loads((image_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _load_manifest(image_dir: Path) -> GuestImage | None:
    data = read_manifest(image_dir)
    if data is None:
        return None
    kernel, initrd = image_dir / "vmlinuz", image_dir / "initrd.img"
    if not (kernel.is_file() and initrd.is_file()):
        return None
    return GuestImage(
        kernel=kernel,
        initrd=initrd,
        key_hash=data["key_hash"],
        host_key=data["host_key"],
        kernel_package=data["kernel_package"],
        kernel_version=data["kernel_version"],
        modules=tuple(data["modules"]),
    )


def image_manifest(image: GuestImage) -> dict:
    """The manifest written beside the image (paths in the initramfs, hashes, kernel release)."""
    return json.loads((image.initrd.parent / "manifest.json").read_text())


def list_initramfs(initrd: Path) -> Iterator[tuple[str, int, bytes]]:
    """Yield (name, mode, data) for each entry of a newc initramfs, plain or gzip'd: lets tests look inside."""
    raw = Path(initrd).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    pos = 0
    while pos + 110 <= len(raw):
        if raw[pos : pos + 6] != b"070701":
            raise LabStateError(f"initramfs {initrd}: bad cpio magic at offset {pos}")
        fields = [int(raw[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = raw[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        data = raw[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            return
        yield name, mode, data


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per cache directory (parallel test workers share it)."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

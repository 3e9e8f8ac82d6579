"""The guest image builder: pure pieces (cpio, modinfo, module order, keys) and a real cached build (slow)."""

from __future__ import annotations

import logging
import re
import shutil
import socket
import stat
import struct
import time
from pathlib import Path

import pytest

from vdpalab.emulated import guest_image as gi
from vdpalab.emulated.guest_image import (
    READY_MARKER,
    build_guest_image,
    generate_ssh_keypair,
    image_manifest,
    list_initramfs,
    modinfo_depends,
)
from vdpalab.emulated.sshd import known_hosts_name, pin_host_keys
from vdpalab.errors import LabStateError

pytestmark = pytest.mark.selftest

REPO = Path(__file__).resolve().parent.parent


def _fake_module(depends: str) -> bytes:
    """A minimal little-endian ELF64 with a section-name table and a .modinfo section."""
    shstr = b"\0.shstrtab\0.modinfo\0"
    modinfo = b"license=GPL\0" + f"depends={depends}\0".encode() + b"vermagic=6.1\0"
    header_size, shentsize = 64, 64
    data = shstr + modinfo
    shoff = header_size + len(data)
    sections = [
        (0, 0, 0, 0, 0, 0),
        (1, 3, 0, 0, header_size, len(shstr)),  # .shstrtab
        (11, 1, 0, 0, header_size + len(shstr), len(modinfo)),  # .modinfo
    ]
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, shentsize, 3, 1)
    table = b"".join(struct.pack("<IIQQQQIIQQ", n, t, f, a, o, s, 0, 0, 1, 0) for n, t, f, a, o, s in sections)
    return header + data + table


def test_modinfo_depends_reads_the_elf_section() -> None:
    assert modinfo_depends(_fake_module("virtio_ring,virtio_pci_modern_dev,virtio")) == [
        "virtio_ring", "virtio_pci_modern_dev", "virtio"
    ]  # fmt: skip
    assert modinfo_depends(_fake_module("")) == []
    assert modinfo_depends(_fake_module("net-failover")) == ["net_failover"]
    with pytest.raises(LabStateError):
        modinfo_depends(b"not an elf")


def test_module_load_order_puts_dependencies_first(tmp_path: Path) -> None:
    deps = {
        "virtio_ring": "",
        "virtio": "virtio_ring",
        "virtio_pci_modern_dev": "",
        "virtio_pci": "virtio_ring,virtio_pci_modern_dev,virtio",
        "failover": "",
        "net_failover": "failover",
        "virtio_net": "virtio_ring,virtio,net_failover",
    }
    index = {}
    for name, dep in deps.items():
        path = tmp_path / f"{name}.ko"
        path.write_bytes(_fake_module(dep))
        index[name] = path
    order = gi._module_load_order(("virtio_pci", "virtio_net"), index)
    assert sorted(order) == sorted(deps)
    for name, dep in deps.items():
        for d in filter(None, dep.split(",")):
            assert order.index(d) < order.index(name)
    with pytest.raises(LabStateError, match="not in the kernel package"):
        gi._module_load_order(("virtio_blk",), index)


def test_xz_modules_are_decompressed(tmp_path: Path) -> None:
    import lzma

    elf = _fake_module("virtio_ring")
    (tmp_path / "virtio.ko.xz").write_bytes(lzma.compress(elf))
    index = gi._index_modules(tmp_path)
    assert index == {"virtio": tmp_path / "virtio.ko.xz"}
    assert gi._read_module(index["virtio"]) == elf


def test_cpio_round_trip() -> None:
    cpio = gi._Cpio()
    cpio.file("usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.chardev("dev/console", 5, 1)
    cpio.dir("root", 0o700)
    import gzip
    import tempfile

    raw = cpio.finish()
    for blob in (raw, gzip.compress(raw)):  # the builder writes it plain; older images (builder < 4) gzip'd
        with tempfile.NamedTemporaryFile(suffix=".img") as fh:
            fh.write(blob)
            fh.flush()
            entries = {name: (mode, data) for name, mode, data in list_initramfs(Path(fh.name))}
        assert entries["usr/bin/tool"] == (stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n")
        assert stat.S_ISDIR(entries["usr"][0]) and stat.S_ISDIR(entries["usr/bin"][0])  # parents come first
        assert entries["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox")
        assert stat.S_ISCHR(entries["dev/console"][0])
        assert entries["root"][0] == stat.S_IFDIR | 0o700


def test_a_rebuilt_images_host_key_replaces_the_old_pin() -> None:
    old = (
        "[127.0.0.1]:2153 ssh-ed25519 OLDKEY\n"
        "[127.0.0.1]:2159 ssh-ed25519 OLDKEY\n"
        "[127.0.0.1]:2256 ssh-ed25519 LABVM\n"
        "# a comment\n"
    )
    pins = {known_hosts_name("127.0.0.1", port): "ssh-ed25519 NEW" for port in (2153, 2159)}
    new = pin_host_keys(old, pins)
    assert new == (
        "[127.0.0.1]:2256 ssh-ed25519 LABVM\n# a comment\n"
        "[127.0.0.1]:2153 ssh-ed25519 NEW\n[127.0.0.1]:2159 ssh-ed25519 NEW\n"
    )
    assert pin_host_keys(new, pins) == new  # idempotent: a second lab up writes nothing
    assert pin_host_keys("", {known_hosts_name("10.0.0.5", 22): "ssh-ed25519 K"}) == "10.0.0.5 ssh-ed25519 K\n"


def test_ssh_keypair_is_generated_once(tmp_path: Path) -> None:
    paramiko = pytest.importorskip("paramiko")
    key = tmp_path / "keys" / "id_ed25519"
    first = generate_ssh_keypair(key)
    assert first.public_key.startswith("ssh-ed25519 ") and first.public_key.endswith(" vdpalab")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "id_ed25519.pub").read_text().strip() == first.public_key
    assert generate_ssh_keypair(key) == first
    loaded = paramiko.Ed25519Key.from_private_key_file(str(key))
    assert first.public_key.split()[1] == loaded.get_base64()


def test_unsupported_key_types_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabStateError, match="ssh-dss"):
        build_guest_image(tmp_path, pubkey="ssh-dss AAAAB3NzaC1kc3M= old")
    with pytest.raises(LabStateError, match="one OpenSSH line"):
        build_guest_image(tmp_path, pubkey="ssh-ed25519 AAAA\nssh-ed25519 BBBB")


def test_init_script_shape() -> None:
    script = gi._init_script(["virtio_ring", "virtio", "virtio_pci"])
    assert script.startswith("#!/bin/sh\n")
    assert "for m in virtio_ring virtio virtio_pci; do insmod /lib/modules/vdpalab/$m.ko" in script
    assert "mount -t devtmpfs devtmpfs /dev" in script and "mount -t devpts" in script
    assert "vdpalab.net=*" in script and "/sys/class/net/*" in script
    assert "dropbear -F -E -s" in script  # -s: no password logins
    assert f'echo "{READY_MARKER}' in script
    assert script.rstrip().endswith("exec /sbin/init")


# ----------------------------------------------------------------------------------------------- real build


def _tools_missing() -> list[str]:
    need = ["apt-get", "apt-cache", "dpkg-deb", "dropbearkey", "ldd"]
    missing = [t for t in need if shutil.which(t) is None]
    missing += [host for host, _ in gi.GUEST_TOOLS if not Path(host).exists()]
    return missing


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    missing = _tools_missing()
    if missing:
        pytest.skip(f"cannot build a guest image here: missing {', '.join(missing)}")
    cache = tmp_path_factory.mktemp("image-cache")
    # reuse a kernel .deb the lab already downloaded (same bytes apt-get download would fetch)
    lab_debs = REPO / ".state" / "images" / "debs"
    if lab_debs.is_dir():
        (cache / "debs").mkdir()
        for deb in lab_debs.glob("*.deb"):
            shutil.copy2(deb, cache / "debs" / deb.name)
    key = generate_ssh_keypair(cache / "id_ed25519")
    started = time.monotonic()
    try:
        image = build_guest_image(cache, pubkey=key.public_key)
    except LabStateError as exc:
        if "apt-get download" in str(exc) or "apt-cache" in str(exc) or "downloading" in str(exc):
            pytest.skip(f"the kernel package cannot be fetched here: {exc}")
        raise
    return cache, key, image, time.monotonic() - started


@pytest.mark.slow
def test_build_is_cached(built, caplog: pytest.LogCaptureFixture) -> None:
    cache, key, image, _cold = built
    initrd_before = image.initrd.read_bytes()
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="vdpalab.emulated.guest_image"):
        again = build_guest_image(cache, pubkey=key.public_key)
    warm = time.monotonic() - started
    assert [r.getMessage() for r in caplog.records if r.name.startswith("vdpalab.emulated")] == []  # logs nothing
    assert image.built_now and not again.built_now
    assert again == image
    assert warm < 0.1, f"warm call took {warm:.3f} s"
    assert image.initrd.read_bytes() == initrd_before
    assert image.kernel.stat().st_size > 1_000_000
    assert image.kernel_package.startswith("linux-image-") and image.kernel_package.endswith("-cloud-amd64")
    # another key gives another image; the kernel and the .deb are reused
    other = generate_ssh_keypair(cache / "id_other")
    image2 = build_guest_image(cache, pubkey=other.public_key)
    assert image2.key_hash != image.key_hash and image2.initrd != image.initrd
    assert len(list((cache / "debs").glob("*.deb"))) == 1


@pytest.mark.slow
def test_initramfs_contents(built) -> None:
    _cache, key, image, _cold = built
    entries = {name: (mode, data) for name, mode, data in list_initramfs(image.initrd)}
    for path in ("init", "bin/busybox", "usr/sbin/dropbear", "usr/bin/iperf3", "usr/bin/ping", "sbin/init",
                 "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6", "etc/passwd", "etc/shells",
                 "dev/console", gi.HOST_KEY_GUEST_PATH, "root/.ssh/authorized_keys"):
        assert path in entries, path
    assert entries["init"][0] & 0o111 and entries["init"][1].startswith(b"#!/bin/sh")
    # uncompressed (no gunzip in a nested guest's boot); /init configures NICs with the static busybox ip
    assert image.initrd.read_bytes()[:6] == b"070701"
    init_lines = entries["init"][1].decode().splitlines()
    assert [ln for ln in init_lines if re.match(r"\s*(\[.*\] \|\| )?ip ", ln)] == [], "iproute2 ip in /init"
    assert sum("busybox ip " in ln for ln in init_lines) == 3
    # dash, not busybox ash: ash would run its own applets (busybox ping, ip) before anything on PATH
    assert not stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][1] == Path("/usr/bin/dash").read_bytes()
    assert stat.S_ISLNK(entries["bin/ash"][0]) and entries["bin/ash"][1] == b"busybox"
    assert entries["usr/sbin/udhcpd"][1] == b"../../bin/busybox"
    assert not stat.S_ISLNK(entries["usr/bin/ping"][0])  # iputils ping (has -f), not the busybox applet
    for tool in ("usr/bin/ip", "usr/bin/ss"):  # iproute2, as the layers and the iperf3 runner expect
        assert not stat.S_ISLNK(entries[tool][0]), tool
    assert "sbin/ip" not in entries and "bin/ip" not in entries
    assert entries["root/.ssh/authorized_keys"][1].decode().strip() == key.public_key
    assert stat.S_IMODE(entries["root/.ssh/authorized_keys"][0]) == 0o600
    assert b"root:" in entries["etc/passwd"][1] and b"/bin/sh" in entries["etc/shells"][1]
    modules = [n for n in entries if n.startswith("lib/modules/vdpalab/")]
    names = {Path(n).name.removesuffix(".ko") for n in modules}
    assert {"virtio", "virtio_ring", "virtio_pci", "virtio_net", "net_failover", "failover"} <= names
    for m in modules:
        assert entries[m][1][:4] == b"\x7fELF", f"{m} is not an uncompressed module"
    # /init loads them in dependency order
    order = list(image.modules)
    assert order.index("virtio_ring") < order.index("virtio") < order.index("virtio_pci")
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    manifest = image_manifest(image)
    assert manifest["host_key"] == image.host_key and image.host_key.startswith("ssh-ed25519 ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.qemu
def test_image_boots_and_accepts_the_lab_key(built, tmp_path: Path) -> None:
    """Boot under TCG with only the management NIC: marker on the console, SSH with the pinned host key."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    paramiko = pytest.importorskip("paramiko")
    from vdpalab.qemu import QemuProcess, QemuSpec, guest_append

    _cache, key, image, _cold = built
    port = _free_port()
    spec = QemuSpec(
        name="selftest", kernel=image.kernel, initrd=image.initrd,
        append=guest_append([("52:54:00:aa:00:01", "10.0.2.15/24")], hostname="selftest"),
        mgmt_ssh_port=port, mgmt_mac="52:54:00:aa:00:01", nic_romfile="",
        serial_log=tmp_path / "console.log", pidfile=tmp_path / "qemu.pid", qmp_socket=tmp_path / "qmp.sock",
    )  # fmt: skip
    proc = QemuProcess(spec)
    proc.start()
    try:
        assert proc.wait_for_console(READY_MARKER, timeout=120) < 120
        proc.wait_for_ssh(timeout=60)
        client = paramiko.SSHClient()
        kind, blob = image.host_key.split()[:2]
        import base64

        pinned = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
        client.get_host_keys().add(f"[127.0.0.1]:{port}", kind, pinned)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("127.0.0.1", port=port, username="root", key_filename=str(key.private_key),
                       look_for_keys=False, allow_agent=False, timeout=20)
        try:
            _in, out, _err = client.exec_command("hostname; /usr/bin/iperf3 --version | head -1; cat /proc/modules")
            text = out.read().decode()
            assert out.channel.recv_exit_status() == 0
        finally:
            client.close()
        assert text.startswith("selftest\n") and "iperf 3" in text and "virtio_net" in text
    finally:
        assert proc.stop(timeout=10) in ("qmp", "kill")
    assert not proc.alive()

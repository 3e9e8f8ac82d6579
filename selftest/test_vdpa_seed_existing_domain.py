"""The seed's own libvirt way for real (issue 16, 2a): a domain the user already defined in the vDPA lab VM, named
in the lab file (``libvirt.domain = "existing"``), gets ``<interface type='vdpa'>`` on /dev/vhost-vdpa-1 for the
run, boots on it beside the seed's QEMU guest on /dev/vhost-vdpa-0 and pings it through VDUSE and OVS-DPDK; after
the layers went down, ``virsh dumpxml`` prints the user's definition byte for byte again and the domain is shut
off; the machine is left as found.

Nested TCG (the lab VM, and two guests inside it): about ten minutes, so marked ``nested`` and run by
``make seed-tests``, not by ``make test``.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from vdpalab import control
from vdpalab.bringup import BringUp
from vdpalab.config import LIBVIRT_DEFINE_ONLY, Lab, LibvirtGuest, load_lab
from vdpalab.emulated.daemons import netns_inode
from vdpalab.emulated.relabel import relabel_lab_file
from vdpalab.emulated.vdpa_vm_lab import VdpaVmLab
from vdpalab.guests.libvirt_domain import QEMU_NS, quoteattr
from vdpalab.layers import LayerStatus
from vdpalab.testing.machine import Machine

pytestmark = pytest.mark.selftest

LAB = Path(__file__).resolve().parent.parent / "labs" / "emulated-vdpa-seed-libvirt.toml"
NAME = "vx"
CONSOLE = "/var/log/libvirt/qemu/c77g159-console.log"


def existing_way(text: str) -> str:
    """The lab file with its last guest (c77g159, a domain the suite defines) turned into the seed's way: only the
    domain's name in the lab file, every field the domain's own XML decides dropped (the schema refuses them)."""
    start = text.rindex("[[guest]]")
    end_match = re.compile(r"^(#|\[(?!\[guest))", re.MULTILINE).search(text, start)
    end = end_match.start() if end_match else len(text)
    kept = [
        line
        for line in text[start:end].splitlines(keepends=True)
        if line.split("=", 1)[0].strip() not in LIBVIRT_DEFINE_ONLY
    ]
    block = "".join(kept).replace('libvirt = { domain = "define" }', 'libvirt = { domain = "existing" }')
    assert 'domain = "existing"' in block
    return text[:start] + block + text[end:]


def users_domain(guest: LibvirtGuest) -> str:
    """c77g159 as its user defined it (virt-manager's kind of XML, libosinfo metadata included): the guest image
    booted directly, RAM a shared memfd (VDUSE maps it), a serial log, a management NIC forwarding the lab VM's
    loopback port to its sshd, and no vDPA interface: the suite adds that for the run."""
    assert guest.kernel and guest.initrd and guest.append and guest.mgmt_ssh_port and guest.mgmt_mac
    args = [
        "-netdev", f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{guest.mgmt_ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=mgmt,mac={guest.mgmt_mac},romfile=,addr=0x10",
    ]  # fmt: skip
    qemu_args = "\n".join(f"    <qemu:arg value={quoteattr(a)}/>" for a in args)
    return f"""<domain type='qemu' xmlns:qemu={quoteattr(QEMU_NS)}>
  <name>{guest.name}</name>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/13"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='MiB'>{guest.memory_mib}</memory>
  <vcpu placement='static'>1</vcpu>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(guest.kernel)}</kernel>
    <initrd>{escape(guest.initrd)}</initrd>
    <cmdline>{escape(guest.append)}</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='maximum' check='none'/>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>{escape(guest.qemu_binary)}</emulator>
    <serial type='pty'>
      <log file='{CONSOLE}' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
{qemu_args}
  </qemu:commandline>
</domain>
"""


@pytest.fixture
def labs() -> Iterator[tuple[Lab, Lab]]:
    """(the lab with c77g159 as an existing domain, the lab file's own c77g159 for the user's domain's fields)."""
    if os.geteuid() != 0:
        pytest.skip("the emu-vdpa-seed lab needs root")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    work = Path(tempfile.mkdtemp(prefix=f"vdpalab-{NAME}-"))
    try:
        relabelled = relabel_lab_file(LAB, work, NAME, state_dir=work / "s")
        original = load_lab(relabelled)
        variant = work / "existing.toml"
        variant.write_text(existing_way(relabelled.read_text()))
        yield load_lab(variant), original
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_variant_names_an_existing_domain() -> None:
    """The lab file edit this module relies on: only c77g159 changes, to the seed's way, and the schema takes it."""
    text = LAB.read_text()
    lab = load_lab(LAB)
    tmp = Path(tempfile.mkdtemp(prefix="vdpalab-vx-file-"))
    try:
        path = tmp / "lab.toml"
        path.write_text(existing_way(text))
        variant = load_lab(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    guest = variant.guest[1]
    assert isinstance(guest, LibvirtGuest) and guest.libvirt is not None and guest.libvirt.domain == "existing"
    assert guest.kernel is None and guest.mgmt_ssh_port is None and guest.vdpa_device == "/dev/vhost-vdpa-1"
    assert variant.guest[0] == lab.guest[0] and variant.traffic == lab.traffic


def _virsh(handle: control.LabHandle, *args: str) -> str:
    result = handle.hosts["host"].run(["virsh", *args], timeout=120)
    assert result.ok, f"virsh {' '.join(args)}: rc {result.rc}: {result.stderr}"
    return result.stdout


def _pin_guest_key(lab: Lab, copy_from: int, to: int) -> None:
    """The user's domain boots the same guest image: its host key is the one the infrastructure pinned for c77g153
    (a user has their guest's key in known_hosts)."""
    path = lab.resolve(lab.guest[1].ssh.known_hosts)
    assert path is not None and path.is_file()
    lines = path.read_text().splitlines()
    keys = [line.split(" ", 1)[1] for line in lines if line.startswith(f"[127.0.0.1]:{copy_from} ")]
    assert keys, f"no host key for port {copy_from} in {path}"
    path.write_text("\n".join([*lines, f"[127.0.0.1]:{to} {keys[0]}"]) + "\n")


@pytest.mark.emulated
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.nested
@pytest.mark.timeout(1800)
def test_an_existing_domain_runs_on_vhost_vdpa_and_gets_its_xml_back(labs: tuple[Lab, Lab]) -> None:
    lab, defined = labs
    machine = Machine([f"vdpalab-{NAME}-"], [str(lab.state_dir)])
    builder = VdpaVmLab(lab)
    inodes: set[int] = set()
    guest = lab.guest[1]
    assert isinstance(guest, LibvirtGuest) and isinstance(defined.guest[1], LibvirtGuest)
    try:
        with control.lab_up(lab, layers=False) as handle:
            inode = netns_inode(builder.netns)
            assert inode is not None
            inodes.add(inode)
            # the user's domain, defined as a user does, before the suite runs
            handle.hosts["host"].run(
                ["sh", "-c", "cat > /root/c77g159.xml"], stdin=users_domain(defined.guest[1]), timeout=60
            )
            _virsh(handle, "define", "/root/c77g159.xml")
            original = _virsh(handle, "dumpxml", "--inactive", "--security-info", guest.name)
            assert "type='vdpa'" not in original
            assert _virsh(handle, "domstate", guest.name).strip() == "shut off"
            port = defined.guest[1].mgmt_ssh_port
            assert port is not None
            _pin_guest_key(lab, lab.guest[0].ssh.port, port)

            bringup = BringUp(lab, handle.hosts, lab.state_dir)
            outcomes = bringup.up()
            try:
                broken = {n: o.reason for n, o in outcomes.items() if o.status is LayerStatus.BROKEN}
                assert not broken, broken
                live = _virsh(handle, "dumpxml", guest.name)
                assert "<interface type='vdpa'>" in live and f"<source dev='{guest.vdpa_device}'/>" in live
                assert "libosinfo:os" in _virsh(handle, "dumpxml", "--inactive", guest.name)  # the rest kept
                a, b = lab.guest
                ping = handle.hosts[a.name].run(["ping", "-c", "5", "-i", "0.5", "-W", "5", b.address], timeout=120)
                assert ping.ok and re.search(r"\b0% packet loss", ping.stdout), ping.stdout + ping.stderr
            finally:
                errors = bringup.down()
            assert errors == {}, errors
            restored = _virsh(handle, "dumpxml", "--inactive", "--security-info", guest.name)
            assert restored == original, "".join(
                difflib.unified_diff(original.splitlines(True), restored.splitlines(True), "original", "restored")
            )
            assert _virsh(handle, "domstate", guest.name).strip() == "shut off"
            _virsh(handle, "undefine", guest.name)  # the user's domain goes with the test's VM
    finally:
        control.lab_down(lab)
    assert builder.running_vm() is None and netns_inode(builder.netns) is None
    left = machine.leftovers(inodes)
    assert left == [], left

"""libvirt guests on vhost_vdpa, the seed's section 7 "B. libvirtd": both ways a domain gets its vDPA interface.

* ``libvirt.domain = "existing"`` (the seed's own way): the domain exists (the seed made it with virt-manager).
  For the run the suite adds ``<interface type='vdpa'><source dev='/dev/vhost-vdpa-N'/></interface>`` as
  ``virsh edit`` does: ``virsh dumpxml --inactive --security-info``, the interface inserted as text before
  ``</devices>`` (everything else stays byte for byte), ``virsh define``. The original XML goes into the journal
  first; ``down`` defines it again and checks ``dumpxml`` shows it back.
* ``libvirt.domain = "define"``: the suite writes a whole domain from the guest's fields, defines it and undefines
  it afterwards.

Either way the suite starts the domain only when it is shut off and destroys only what it started. The XML edits
are pure functions (tested on real ``virsh`` outputs); :class:`LibvirtDomain` runs ``virsh`` through a layer, so
every changing command is a planned command and ``vdpalab plan`` shows it.
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from vdpalab.config import LIBVIRT_DEVICE_OPTIONS, LibvirtGuest, defines_libvirt_domain
from vdpalab.errors import LayerError, ParseError
from vdpalab.guests.vm import vhost_vdpa_nics
from vdpalab.parsers.libvirt import LIBVIRT_XML, parse_libvirt_xml

if TYPE_CHECKING:
    from vdpalab.guests.base import GuestContext
    from vdpalab.layers.base import PlannedCommand

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
#: where libvirt's QEMU driver keeps a running domain's pidfile and QEMU's own log
LIBVIRT_RUN_DIR = "/run/libvirt/qemu"
LIBVIRT_LOG_DIR = "/var/log/libvirt/qemu"
#: the management NIC's PCI slot in a domain the suite defines (after libvirt's own devices)
MGMT_PCI_SLOT = "0x10"


def quoteattr(value: str) -> str:
    """An XML attribute in single quotes, as libvirt and the seed write ``<source dev='/dev/vhost-vdpa-0'/>``."""
    return "'" + escape(value, {"'": "&apos;", '"': "&quot;"}) + "'"


def domain_name(guest: LibvirtGuest) -> str:
    return guest.libvirt.name if guest.libvirt and guest.libvirt.name else guest.name


def virsh(guest: LibvirtGuest, *args: str) -> list[str]:
    """``virsh [-c URI] ARGS``: the URI only when the lab names one (the seed ran plain ``virsh``)."""
    uri = guest.libvirt.uri if guest.libvirt else None
    return ["virsh", *(["-c", uri] if uri else []), *args]


# ------------------------------------------------------------------------------------------------ pure XML


def vdpa_interface_xml(
    device: str, mac: str | None = None, device_options: tuple[str, ...] | list[str] = (), indent: str = "    "
) -> str:
    """``<interface type='vdpa'>`` with the lab's MAC and the seed's device options in libvirt's words.

    ``page-per-vq=on``/``iommu_platform=on`` become ``<driver page_per_vq='on' iommu='on'/>``, ``disable-legacy=on``
    becomes ``<model type='virtio-non-transitional'/>`` (see ``LIBVIRT_DEVICE_OPTIONS``).
    """
    model: str | None = None
    driver: dict[str, str] = {}
    for option in device_options:
        element, attribute, value = LIBVIRT_DEVICE_OPTIONS[option]
        if element == "model":
            model = value
        else:
            driver[attribute] = value
    inner = indent + "  "
    lines = [f"{indent}<interface type='vdpa'>"]
    if mac:
        lines.append(f"{inner}<mac address={quoteattr(mac)}/>")
    lines.append(f"{inner}<source dev={quoteattr(device)}/>")
    if model:
        lines.append(f"{inner}<model type={quoteattr(model)}/>")
    if driver:
        lines.append(f"{inner}<driver " + " ".join(f"{k}={quoteattr(v)}" for k, v in driver.items()) + "/>")
    lines.append(f"{indent}</interface>")
    return "\n".join(lines)


def has_vdpa_interface(domain_xml: str, device: str) -> bool:
    return any(i.type == "vdpa" and i.source_dev == device for i in parse_libvirt_xml(domain_xml).interfaces)


def add_vdpa_interface(domain_xml: str, device: str, mac: str | None = None) -> str:
    """The domain with ``<interface type='vdpa'>`` inserted before ``</devices>``, as one would in ``virsh edit``.

    A text insertion, not a re-serialisation: namespaces (``libosinfo:``, ``qemu:``), quoting and comments of the
    original stay exactly as they were. Only the seed's element (plus the lab's MAC) is added: the existing domain's
    model and driver stay libvirt's defaults, as in the seed.
    """
    domain = parse_libvirt_xml(domain_xml)
    if domain.name is None:
        raise ParseError(LIBVIRT_XML, "not a whole <domain> (virsh dumpxml prints one)")
    if has_vdpa_interface(domain_xml, device):
        return domain_xml
    closing = list(re.finditer(r"^([ \t]*)</devices>", domain_xml, re.MULTILINE))
    if closing:
        m = closing[-1]
        child = m.group(1) + "  "
        return domain_xml[: m.start()] + vdpa_interface_xml(device, mac, indent=child) + "\n" + domain_xml[m.start() :]
    empty = re.search(r"^([ \t]*)<devices\s*/>", domain_xml, re.MULTILINE)
    if empty is None:
        raise ParseError(LIBVIRT_XML, "the domain has no <devices> element to add the interface to")
    outer = empty.group(1)
    block = f"{outer}<devices>\n{vdpa_interface_xml(device, mac, indent=outer + '  ')}\n{outer}</devices>"
    return domain_xml[: empty.start()] + block + domain_xml[empty.end() :]


def same_definition(a: str, b: str) -> bool:
    """Two domain XMLs that say the same (canonical XML, whitespace between elements ignored)."""
    try:
        return ET.canonicalize(a, strip_text=True) == ET.canonicalize(b, strip_text=True)
    except ET.ParseError:
        return False


def serial_log_file(domain_xml: str) -> str | None:
    """Where the domain's serial console is written: ``<serial><log file=.../>`` or a ``type='file'`` serial."""
    try:
        root = ET.fromstring(domain_xml)
    except ET.ParseError:
        return None
    for serial in root.iterfind("devices/serial"):
        log = serial.find("log")
        if log is not None and log.get("file"):
            return log.get("file")
        source = serial.find("source")
        if serial.get("type") == "file" and source is not None and source.get("path"):
            return source.get("path")
    return None


@dataclass(frozen=True)
class DomainFiles:
    """Paths on the lab host for a domain the suite writes: its XML, its console log, a direct-boot kernel."""

    xml: str
    console_log: str
    kernel: str | None = None
    initrd: str | None = None


def _cpu_xml(cpu: str) -> str:
    if cpu == "host":
        return "<cpu mode='host-passthrough'/>"
    if cpu == "max":
        return "<cpu mode='maximum' check='none'/>"
    return f"<cpu mode='custom' match='exact'><model>{escape(cpu)}</model></cpu>"


def suite_domain_xml(guest: LibvirtGuest, files: DomainFiles) -> str:
    """A whole domain around the seed's ``<interface type='vdpa'>`` (``libvirt.domain = "define"``).

    The guest's fields decide it as they decide a QEMU guest's command line: accel (``kvm``/``qemu`` domain type),
    CPU, memory (a shared memfd when ``memory_backend = "memfd"``: VDUSE's userspace must map guest memory), a disk
    image or a direct kernel boot, the serial console logged to a file; a management NIC with a loopback port
    forward (``mgmt_ssh_port``) and ``extra_qemu_args`` go through ``<qemu:commandline>``.
    """
    qemu_args: list[str] = []
    if guest.mgmt_ssh_port is not None:
        mac = f",mac={guest.mgmt_mac}" if guest.mgmt_mac else ""
        qemu_args += [
            "-netdev",
            f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{guest.mgmt_ssh_port}-:22",
            "-device",
            # a fixed slot: left to QEMU, it takes slot 2, which libvirt has given the vdpa interface
            f"virtio-net-pci,netdev=mgmt{mac},romfile=,addr={MGMT_PCI_SLOT}",
        ]
    qemu_args += guest.extra_qemu_args
    ns = f" xmlns:qemu={quoteattr(QEMU_NS)}" if qemu_args else ""
    dom_type = "kvm" if guest.accel == "kvm" else "qemu"
    out = [f"<domain type='{dom_type}'{ns}>", f"  <name>{escape(domain_name(guest))}</name>"]
    out.append(f"  <memory unit='MiB'>{guest.memory_mib}</memory>")
    out.append(f"  <vcpu>{guest.vcpus}</vcpu>")
    if guest.memory_backend == "memfd":
        out.append("  <memoryBacking>\n    <source type='memfd'/>\n    <access mode='shared'/>\n  </memoryBacking>")
    elif guest.memory_backend == "file":
        out.append("  <memoryBacking>\n    <hugepages/>\n    <access mode='shared'/>\n  </memoryBacking>")
    out.append("  <os>\n    <type arch='x86_64'>hvm</type>")
    if files.kernel:
        out.append(f"    <kernel>{escape(files.kernel)}</kernel>")
        if files.initrd:
            out.append(f"    <initrd>{escape(files.initrd)}</initrd>")
        if guest.append:
            out.append(f"    <cmdline>{escape(guest.append)}</cmdline>")
    else:
        out.append("    <boot dev='hd'/>")
    out.append("  </os>")
    out.append("  <features>\n    <acpi/>\n    <apic/>\n  </features>")
    out.append(f"  {_cpu_xml(guest.cpu)}")
    out.append("  <on_reboot>destroy</on_reboot>")
    out.append("  <devices>")
    out.append(f"    <emulator>{escape(guest.qemu_binary)}</emulator>")
    if guest.image:
        out.append(
            "    <disk type='file' device='disk'>\n"
            "      <driver name='qemu' type='qcow2'/>\n"
            f"      <source file={quoteattr(guest.image)}/>\n"
            "      <target dev='hda' bus='ide'/>\n"
            "    </disk>"
        )
    assert guest.vdpa_device is not None  # the lab schema requires it for libvirt guests
    out.append(vdpa_interface_xml(guest.vdpa_device, guest.mac, guest.device_options))
    out.append(
        "    <serial type='pty'>\n"
        f"      <log file={quoteattr(files.console_log)} append='off'/>\n"
        "      <target port='0'/>\n"
        "    </serial>\n"
        "    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>"
    )
    out.append("    <memballoon model='none'/>")
    out.append("  </devices>")
    if qemu_args:
        out.append("  <qemu:commandline>")
        out += [f"    <qemu:arg value={quoteattr(arg)}/>" for arg in qemu_args]
        out.append("  </qemu:commandline>")
    out.append("</domain>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------ on a host


@dataclass(frozen=True)
class DomainState:
    """A domain as ``virsh domstate`` / ``dumpxml --inactive`` show it; ``xml`` is the inactive definition."""

    defined: bool
    running: bool = False
    has_vdpa: bool = False
    xml: str | None = None


class LibvirtDomain:
    """One libvirt guest's domain on the lab host, driven through ``layer`` (the guests layer: host, journal, plan).

    Journal keys (per domain): ``libvirt-original:NAME`` the XML before the suite added its interface (existing
    way), ``libvirt-defined:NAME`` the suite defined it, ``libvirt-started:NAME`` the suite started it.
    """

    def __init__(self, layer: GuestContext, guest: LibvirtGuest, files: DomainFiles) -> None:
        self.layer = layer
        self.guest = guest
        self.files = files
        self.name = domain_name(guest)
        self.existing = not defines_libvirt_domain(guest)
        assert guest.vdpa_device is not None
        self.device: str = guest.vdpa_device

    # --- journal ---
    def _key(self, what: str) -> str:
        return f"libvirt-{what}:{self.name}"

    @property
    def original(self) -> str | None:
        value = self.layer.journal.get(self._key("original"))
        return value if isinstance(value, str) else None

    def started_here(self) -> bool:
        return bool(self.layer.journal.get(self._key("started")))

    def defined_here(self) -> bool:
        return bool(self.layer.journal.get(self._key("defined")))

    def virsh(self, *args: str) -> list[str]:
        return virsh(self.guest, *args)

    # --- probe ---
    def probe(self) -> DomainState:
        state = self.layer.read(self.virsh("domstate", self.name))
        if not state.ok:
            return DomainState(defined=False)
        xml = self.layer.read_ok(
            self.virsh("dumpxml", "--inactive", "--security-info", self.name), what=f"virsh dumpxml {self.name}"
        )
        return DomainState(
            defined=True,
            running=state.stdout.strip() == "running",
            has_vdpa=has_vdpa_interface(xml, self.device),
            xml=xml,
        )

    def refusal(self, state: DomainState) -> str | None:
        """Why the suite must not touch this domain (None when it may)."""
        if self.existing:
            if not state.defined:
                return f'libvirt domain {self.name} does not exist (libvirt.domain = "existing" names one to use)'
            if state.running and not state.has_vdpa and not self.started_here():
                return (
                    f"libvirt domain {self.name} is running without <interface type='vdpa'> on {self.device}; "
                    "shut it off first: the suite adds the interface to a shut-off domain, as virsh edit"
                )
            return None
        if state.defined and not state.has_vdpa and not self.defined_here():
            return (
                f"libvirt domain {self.name} exists without <interface type='vdpa'> on {self.device}; "
                'the suite does not redefine a domain it did not create (use libvirt.domain = "existing")'
            )
        return None

    # --- plan / up ---
    def plan(self, state: DomainState) -> list[PlannedCommand]:
        problem = self.refusal(state)
        if problem:
            raise LayerError(self.layer.name, problem)
        out = []
        if self.existing and not state.has_vdpa:
            out.append(
                self.layer.planned(
                    self.virsh("define", self.files.xml),
                    f"domain {self.name} plus <interface type='vdpa'><source dev='{self.device}'/> (as virsh edit; "
                    "the original XML is journalled and defined again by down)",
                )
            )
        elif not self.existing and not state.defined:
            out.append(
                self.layer.planned(
                    self.virsh("define", self.files.xml), f"domain {self.name} (its XML is put to the host first)"
                )
            )
        if not state.running:
            out.append(self.layer.planned(self.virsh("start", self.name), f"guest {self.name}"))
        return out

    def up(self, state: DomainState | None = None) -> bool:
        """Edit or define the domain, then start it; returns True when anything changed."""
        state = self.probe() if state is None else state
        planned = self.plan(state)
        for cmd in planned:
            words = shlex.split(cmd.command)
            if "define" in words:
                if self.existing:
                    assert state.xml is not None
                    self.layer.journal.record(self._key("original"), state.xml)
                    text = add_vdpa_interface(state.xml, self.device, self.guest.mac)
                else:
                    self.layer.journal.record(self._key("defined"), True)
                    text = suite_domain_xml(self.guest, self.files)
                self.layer.put_text(text, self.files.xml, mode=0o600)
            elif "start" in words:
                self.layer.journal.record(self._key("started"), True)
            self.layer.execute([cmd])
        return bool(planned)

    # --- down ---
    def down_plan(self) -> list[PlannedCommand]:
        """From the journal alone: destroy what up started, then restore or undefine what up defined."""
        out = []
        if self.started_here():
            out.append(self.layer.planned(self.virsh("destroy", self.name), "stop the guest up started"))
        if self.original is not None:
            out.append(
                self.layer.planned(
                    self.virsh("define", self.files.xml), f"domain {self.name}'s original XML again (from the journal)"
                )
            )
            out.append(self.layer.planned(["rm", "-f", self.files.xml]))
        if self.defined_here():
            out.append(self.layer.planned(self.virsh("undefine", self.name), "remove the domain up defined"))
            out.append(self.layer.planned(["rm", "-f", self.files.xml]))
        return out

    def down(self) -> None:
        """Run :meth:`down_plan`; a domain that already died is not destroyed again, and the restore is checked."""
        planned = self.down_plan()
        if planned and self.started_here() and not self.running():
            planned = planned[1:]  # the guest died (or the VM under it): nothing to destroy
        original = self.original
        for cmd in planned:
            if original is not None and shlex.split(cmd.command)[-2:] == ["define", self.files.xml]:
                self.layer.put_text(original, self.files.xml, mode=0o600)
            self.layer.execute([cmd])
        if original is not None:
            now = self.layer.read_ok(
                self.virsh("dumpxml", "--inactive", "--security-info", self.name), what=f"virsh dumpxml {self.name}"
            )
            if not same_definition(now, original):
                raise LayerError(
                    self.layer.name, f"libvirt domain {self.name}: dumpxml after the restore differs from the original"
                )

    # --- runtime ---
    def running(self) -> bool:
        state = self.layer.read(self.virsh("domstate", self.name))
        return state.ok and state.stdout.strip() == "running"

    def console_log(self, state_xml: str | None = None) -> str:
        """The file holding the guest's console: the suite's serial log, the domain's own, else QEMU's libvirt log."""
        if not self.existing:
            return self.files.console_log
        xml = state_xml if state_xml is not None else (self.original or "")
        return serial_log_file(xml) or f"{LIBVIRT_LOG_DIR}/{self.name}.log"

    def evidence(self) -> tuple[list[str], list[str]]:
        """(lines, problems): the live XML has ``<interface type='vdpa'>`` on the lab's device, and the running
        QEMU's command line the ``vhost-vdpa`` netdev.

        libvirt opens ``/dev/vhost-vdpa-N`` itself and hands QEMU the fd (``-add-fd``, ``vhostdev=/dev/fdset/N``),
        so the device path is in the live XML and the command line shows the netdev with the fd set.
        """
        lines: list[str] = []
        problems: list[str] = []
        live = parse_libvirt_xml(
            self.layer.read_ok(self.virsh("dumpxml", self.name), what=f"virsh dumpxml {self.name}")
        )
        ours = [i for i in live.interfaces if i.type == "vdpa" and i.source_dev == self.device]
        for iface in ours:
            lines.append(
                f"{self.name}: <interface type='vdpa'> source {iface.source_dev} mac {iface.mac}"
                + (f" alias {iface.alias}" if iface.alias else "")
            )
        if not ours:
            problems.append(f"{self.name}: the running domain has no <interface type='vdpa'> on {self.device}")
        pid = self.layer.read(["cat", f"{LIBVIRT_RUN_DIR}/{self.name}.pid"]).stdout.strip()
        cmdline = self.layer.read(f"tr '\\0' ' ' < /proc/{pid}/cmdline") if pid.isdigit() else None
        if cmdline is None or not cmdline.ok:
            problems.append(f"{self.name}: QEMU's command line is unreadable ({LIBVIRT_RUN_DIR}/{self.name}.pid)")
            return lines, problems
        nics = vhost_vdpa_nics(cmdline.stdout)
        lines += [f"{self.name}: QEMU pid {pid} {nic}" for nic in nics]
        if not nics:
            problems.append(f"{self.name}: QEMU pid {pid} runs without a vhost-vdpa netdev")
        return lines, problems

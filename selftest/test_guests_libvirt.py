"""The libvirt guest's two ways on vhost_vdpa, against real virsh outputs (libvirt 9.0 test driver) and scripted hosts.

Proves: (a) the seed's way adds exactly ``<interface type='vdpa'>`` to an existing domain's ``dumpxml`` (the rest
byte for byte), libvirt accepts it, and ``down`` defines the journalled original again and fails when ``dumpxml``
does not show it back; (b) the suite's own domain is one libvirt parses to the intended interface, memory and
boot, and ``down`` destroys and undefines only what ``up`` made; the lab schema rejects what a way cannot mean.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vdpalab.config import Lab, load_lab
from vdpalab.errors import LayerError, ParseError
from vdpalab.guests.libvirt_domain import (
    DomainFiles,
    LibvirtDomain,
    add_vdpa_interface,
    has_vdpa_interface,
    same_definition,
    serial_log_file,
    suite_domain_xml,
    vdpa_interface_xml,
)
from vdpalab.layers import Guests, LayerContext
from vdpalab.parsers.libvirt import parse_libvirt_xml
from vdpalab.testing.scripted import ScriptedHost, ScriptStep

pytestmark = pytest.mark.selftest

DATA = Path(__file__).parent / "data"
VIRSH = DATA / "recorded" / "12_virsh_test_driver"
LIBVIRT_TESTS = DATA / "recorded" / "10_libvirt_qemu"
LAB = DATA / "labs" / "libvirt-both-ways.toml"
NO_JSON = 'Option "-j" is unknown, try "ip -help".\n'  # iproute2 before 4.14 (ip.c)
XML_153 = "/run/vdpalab/libvirt-both/c77g153.xml"
XML_159 = "/run/vdpalab/libvirt-both/c77g159.xml"


def recorded(name: str) -> str:
    return (VIRSH / name).read_text()


ORIGINAL = recorded("virsh-dumpxml-inactive-c77g153-xml.txt")
WITH_VDPA = recorded("virsh-dumpxml-inactive-c77g153-with-vdpa-xml.txt")
RESTORED = recorded("virsh-dumpxml-inactive-c77g153-restored-xml.txt")
MISSING = ScriptStep(
    "virsh domstate c77g153", rc=1, stderr=recorded("virsh-domstate-missing-stderr.txt").split("\n", 1)[1]
)


MISSING_159 = ScriptStep(
    "virsh domstate c77g159",
    rc=1,
    stderr=recorded("virsh-domstate-missing-stderr.txt").split("\n", 1)[1].replace("c77g153", "c77g159"),
)


@pytest.fixture()
def lab() -> Lab:
    return load_lab(LAB)


def files(name: str) -> DomainFiles:
    return DomainFiles(
        xml=f"/run/vdpalab/libvirt-both/{name}.xml",
        console_log=f"/run/vdpalab/libvirt-both/{name}.console.log",
        kernel="/var/cache/vdpalab/guest/vmlinuz",
        initrd="/var/cache/vdpalab/guest/initrd.img",
    )


def domain(lab: Lab, tmp_path: Path, host: ScriptedHost, index: int) -> LibvirtDomain:
    layer = Guests(LayerContext(lab=lab, hosts={"host": host}, state_dir=tmp_path))
    guest = lab.guest[index]
    return LibvirtDomain(layer, guest, files(guest.name))


# --- (a) the seed's way: the XML edit -----------------------------------------------------------------


def test_dumpxml_is_libvirts_own_form_of_the_domain() -> None:
    """What the suite journals and restores is libvirt's dumpxml, not the file the domain was made from."""
    given = parse_libvirt_xml(recorded("c77g153-virt-manager-input-xml.txt"))
    dumped = parse_libvirt_xml(ORIGINAL)
    assert (dumped.name, dumped.uuid, dumped.memory_kib) == (given.name, given.uuid, given.memory_kib)
    assert "<on_crash>destroy</on_crash>" in ORIGINAL  # libvirt's defaults are spelled out
    assert not same_definition(recorded("c77g153-virt-manager-input-xml.txt"), ORIGINAL)
    assert recorded("virsh-domstate-missing-stderr.txt").startswith("rc=1\n")


def test_the_edit_adds_only_the_seeds_interface_to_a_real_dumpxml() -> None:
    edited = add_vdpa_interface(ORIGINAL, "/dev/vhost-vdpa-0", "00:11:22:33:44:00")
    block = vdpa_interface_xml("/dev/vhost-vdpa-0", "00:11:22:33:44:00", indent="    ") + "\n"
    assert block in edited
    assert edited.replace(block, "") == ORIGINAL  # everything else byte for byte (namespaces, quoting, order)
    assert "<libosinfo:os id=" in edited
    ours = [i for i in parse_libvirt_xml(edited).interfaces if i.type == "vdpa"]
    assert [(i.source_dev, i.mac) for i in ours] == [("/dev/vhost-vdpa-0", "00:11:22:33:44:00")]


def test_libvirt_accepted_the_edit_with_the_same_interface() -> None:
    """What virsh dumpxml printed after `virsh define` of our edit (libvirt re-formats and re-orders devices)."""
    theirs = [i for i in parse_libvirt_xml(WITH_VDPA).interfaces if i.type == "vdpa"]
    assert [(i.source_dev, i.mac) for i in theirs] == [("/dev/vhost-vdpa-0", "00:11:22:33:44:00")]
    assert has_vdpa_interface(WITH_VDPA, "/dev/vhost-vdpa-0")
    assert not has_vdpa_interface(WITH_VDPA, "/dev/vhost-vdpa-1")
    assert not has_vdpa_interface(ORIGINAL, "/dev/vhost-vdpa-0")


def test_the_edit_is_idempotent_and_keeps_libvirts_own_vdpa_domain() -> None:
    edited = add_vdpa_interface(ORIGINAL, "/dev/vhost-vdpa-0", "00:11:22:33:44:00")
    assert add_vdpa_interface(edited, "/dev/vhost-vdpa-0", "00:11:22:33:44:00") == edited
    libvirt_test = (LIBVIRT_TESTS / "libvirt-tests-net-vdpa-domain-xml.txt").read_text()
    assert add_vdpa_interface(libvirt_test, "/dev/vhost-vdpa-0") == libvirt_test


def test_the_edit_fills_an_empty_devices_element_and_refuses_fragments() -> None:
    empty = "<domain type='kvm'>\n  <name>x</name>\n  <devices/>\n</domain>\n"
    edited = add_vdpa_interface(empty, "/dev/vhost-vdpa-3")
    assert "  <devices>\n    <interface type='vdpa'>\n      <source dev='/dev/vhost-vdpa-3'/>" in edited
    assert has_vdpa_interface(edited, "/dev/vhost-vdpa-3")
    with pytest.raises(ParseError, match="not a whole <domain>"):
        add_vdpa_interface((DATA / "seed" / "libvirt-interface-vdpa-0-fragment.txt").read_text(), "/dev/vhost-vdpa-0")
    with pytest.raises(ParseError, match="no <devices>"):
        add_vdpa_interface("<domain><name>x</name></domain>", "/dev/vhost-vdpa-0")


def test_restored_definition_compares_equal_and_the_edited_one_does_not() -> None:
    assert same_definition(ORIGINAL, RESTORED)
    assert same_definition(ORIGINAL, re.sub(r"\n\s*", "\n", ORIGINAL))  # indentation does not matter
    assert not same_definition(ORIGINAL, WITH_VDPA)
    assert not same_definition(ORIGINAL, "not xml")


# --- (b) the suite's own domain --------------------------------------------------------------------------


def test_the_suite_domain_is_what_libvirt_parsed(lab: Lab) -> None:
    guest = lab.guest[1]
    ours = suite_domain_xml(guest, files("c77g159"))
    # since the recording the management NIC has a fixed slot: QEMU gave it slot 2, which a real libvirt 11.3 (in
    # the emu-vdpa-seed lab VM) had given the vdpa interface: "PCI: slot 2 function 0 not available"
    assert ours == recorded("suite-domain-c77g159-input-xml.txt").replace(
        "/run/vdpalab/lab/c77g159.console.log", "/run/vdpalab/libvirt-both/c77g159.console.log"
    ).replace(",romfile='/>", ",romfile=,addr=0x10'/>")
    theirs = recorded("virsh-dumpxml-inactive-c77g159-suite-defined-xml.txt")
    parsed = parse_libvirt_xml(theirs)
    assert (parsed.name, parsed.domain_type, parsed.memory_kib) == ("c77g159", "qemu", 256 * 1024)
    [iface] = parsed.interfaces
    assert (iface.type, iface.source_dev, iface.mac, iface.model) == (
        "vdpa", "/dev/vhost-vdpa-1", "00:11:22:33:44:10", "virtio-non-transitional",
    )
    assert iface.driver == {"iommu": "on", "page_per_vq": "on"}  # the seed's iommu_platform=on, page-per-vq=on
    assert "<source type='memfd'/>" in theirs and "<access mode='shared'/>" in theirs
    assert "<kernel>/var/cache/vdpalab/guest/vmlinuz</kernel>" in theirs
    assert serial_log_file(theirs) == "/run/vdpalab/lab/c77g159.console.log"
    assert "hostfwd=tcp:127.0.0.1:2159-:22" in ours  # the management port forward (QEMU driver namespace)


def test_a_suite_domain_without_management_nic_has_no_qemu_namespace(lab: Lab) -> None:
    guest = lab.guest[1].model_copy(update={"mgmt_ssh_port": None, "mgmt_mac": None, "memory_backend": None})
    xml = suite_domain_xml(guest, DomainFiles(xml="/x.xml", console_log="/x.log"))
    assert "qemu:" not in xml and "<memoryBacking>" not in xml and "<boot dev='hd'/>" in xml
    assert serial_log_file(ORIGINAL) is None


# --- (a) on a host: up, down, refusals ---------------------------------------------------------------------


def test_existing_domain_gets_the_interface_and_down_restores_the_original(lab: Lab, tmp_path: Path) -> None:
    host = ScriptedHost.from_pairs(
        [
            ("virsh domstate c77g153", recorded("virsh-domstate-shut-off.txt")),
            ("virsh dumpxml --inactive --security-info c77g153", ORIGINAL),
            (f"virsh define {XML_153}", recorded("virsh-define-c77g153.txt")),
            ("virsh start c77g153", recorded("virsh-start-c77g153.txt")),
        ]
    )
    dom = domain(lab, tmp_path, host, 0)
    assert dom.up() is True
    host.assert_done()
    assert host.files[XML_153].decode() == add_vdpa_interface(ORIGINAL, "/dev/vhost-vdpa-0", "00:11:22:33:44:00")
    assert dom.original == ORIGINAL
    assert [c.command for c in dom.down_plan()] == [
        "virsh destroy c77g153",
        f"virsh define {XML_153}",
        f"rm -f {XML_153}",
    ]
    # a second up on the running, edited domain changes nothing and keeps the first original
    again = ScriptedHost.from_pairs(
        [
            ("virsh domstate c77g153", recorded("virsh-domstate-running.txt")),
            ("virsh dumpxml --inactive --security-info c77g153", WITH_VDPA),
        ]
    )
    assert domain(lab, tmp_path, again, 0).up() is False
    down = ScriptedHost.from_pairs(
        [
            ("virsh domstate c77g153", recorded("virsh-domstate-running.txt")),
            ("virsh destroy c77g153", recorded("virsh-destroy-c77g153.txt")),
            (f"virsh define {XML_153}", recorded("virsh-define-c77g153.txt")),
            (f"rm -f {XML_153}", ""),
            ("virsh dumpxml --inactive --security-info c77g153", RESTORED),
        ]
    )
    domain(lab, tmp_path, down, 0).down()
    down.assert_done()
    assert down.files[XML_153].decode() == ORIGINAL  # what was defined again is the journalled original


def test_a_restore_that_libvirt_does_not_show_back_fails_the_teardown(lab: Lab, tmp_path: Path) -> None:
    dom = domain(lab, tmp_path, ScriptedHost("c83g155", []), 0)
    dom.layer.journal.record("libvirt-original:c77g153", ORIGINAL)
    host = ScriptedHost.from_pairs(
        [
            (f"virsh define {XML_153}", recorded("virsh-define-c77g153.txt")),
            (f"rm -f {XML_153}", ""),
            ("virsh dumpxml --inactive --security-info c77g153", WITH_VDPA),
        ]
    )
    with pytest.raises(LayerError, match="dumpxml after the restore differs from the original"):
        domain(lab, tmp_path, host, 0).down()
    host.assert_done()


def test_existing_way_refuses_a_missing_or_running_domain(lab: Lab, tmp_path: Path) -> None:
    missing = ScriptedHost("c83g155", [MISSING])
    with pytest.raises(LayerError, match=r'c77g153 does not exist \(libvirt.domain = "existing"'):
        domain(lab, tmp_path, missing, 0).up()
    running = ScriptedHost.from_pairs(
        [
            ("virsh domstate c77g153", recorded("virsh-domstate-running.txt")),
            ("virsh dumpxml --inactive --security-info c77g153", ORIGINAL),
        ]
    )
    refusal = "is running without <interface type='vdpa'> on /dev/vhost-vdpa-0; shut it off"
    with pytest.raises(LayerError, match=refusal):
        domain(lab, tmp_path, running, 0).up()
    running.assert_done()


# --- (b) on a host -------------------------------------------------------------------------------------------


def test_suite_domain_is_defined_started_and_undefined(lab: Lab, tmp_path: Path) -> None:
    uri = "virsh -c qemu:///system"
    host = ScriptedHost(
        "c83g155",
        [
            ScriptStep(f"{uri} domstate c77g159", rc=1, stderr="error: failed to get domain 'c77g159'\n"),
            ScriptStep(f"{uri} define {XML_159}", stdout="Domain 'c77g159' defined from ...\n"),
            ScriptStep(f"{uri} start c77g159", stdout="Domain 'c77g159' started\n"),
        ],
    )
    dom = domain(lab, tmp_path, host, 1)
    assert dom.up() is True
    host.assert_done()
    assert host.files[XML_159].decode() == suite_domain_xml(lab.guest[1], files("c77g159"))
    assert [c.command for c in dom.down_plan()] == [
        f"{uri} destroy c77g159",
        f"{uri} undefine c77g159",
        f"rm -f {XML_159}",
    ]
    # the guest died under us: down does not destroy it again, but still undefines
    died = ScriptedHost.from_pairs(
        [
            (f"{uri} domstate c77g159", "shut off\n"),
            (f"{uri} undefine c77g159", recorded("virsh-undefine-c77g153.txt").replace("c77g153", "c77g159")),
            (f"rm -f {XML_159}", ""),
        ]
    )
    domain(lab, tmp_path, died, 1).down()
    died.assert_done()


def test_suite_never_redefines_a_foreign_domain(lab: Lab, tmp_path: Path) -> None:
    uri = "virsh -c qemu:///system"
    host = ScriptedHost.from_pairs(
        [(f"{uri} domstate c77g159", "shut off\n"), (f"{uri} dumpxml --inactive --security-info c77g159", ORIGINAL)]
    )
    with pytest.raises(LayerError, match="does not redefine a domain it did not create"):
        domain(lab, tmp_path, host, 1).up()


# --- evidence and console ------------------------------------------------------------------------------------


def test_evidence_reads_the_live_xml_and_qemus_command_line(lab: Lab, tmp_path: Path) -> None:
    args = (LIBVIRT_TESTS / "libvirt-tests-net-vdpa-qemu-args-json-netdev-args.txt").read_text()
    cmdline = " ".join(line.rstrip(" \\") for line in args.splitlines()).replace("'", "")
    host = ScriptedHost.from_pairs(
        [
            ("virsh dumpxml c77g153", recorded("virsh-dumpxml-live-c77g153-with-vdpa-xml.txt")),
            ("cat /run/libvirt/qemu/c77g153.pid", "4242\n"),
            ("tr '\\0' ' ' < /proc/4242/cmdline", cmdline),
        ]
    )
    lines, problems = domain(lab, tmp_path, host, 0).evidence()
    host.assert_done()
    assert lines == [
        "c77g153: <interface type='vdpa'> source /dev/vhost-vdpa-0 mac 00:11:22:33:44:00",
        "c77g153: QEMU pid 4242 -netdev type=vhost-vdpa,vhostdev=/dev/fdset/0,id=hostnet0"
        " -> -device virtio-net-pci,id=net0,mac=52:54:00:95:db:c0,bus=pci.0,addr=0x2",
    ]
    assert problems == []


def test_evidence_fails_without_the_interface_or_the_netdev(lab: Lab, tmp_path: Path) -> None:
    """A domain running on something else (the edit did not take, or libvirt dropped the netdev) is a problem."""
    plain = (LIBVIRT_TESTS / "libvirt-tests-net-vdpa-qemu-args-legacy-keyval-args.txt").read_text()
    cmdline = " ".join(line.rstrip(" \\") for line in plain.splitlines()).replace("vhost-vdpa", "tap")
    host = ScriptedHost.from_pairs(
        [
            ("virsh dumpxml c77g153", recorded("virsh-dumpxml-inactive-c77g153-restored-xml.txt")),
            ("cat /run/libvirt/qemu/c77g153.pid", "4242\n"),
            ("tr '\\0' ' ' < /proc/4242/cmdline", cmdline),
        ]
    )
    lines, problems = domain(lab, tmp_path, host, 0).evidence()
    assert lines == []
    assert problems == [
        "c77g153: the running domain has no <interface type='vdpa'> on /dev/vhost-vdpa-0",
        "c77g153: QEMU pid 4242 runs without a vhost-vdpa netdev",
    ]
    gone = ScriptedHost.from_pairs(
        [
            ("virsh dumpxml c77g153", recorded("virsh-dumpxml-live-c77g153-with-vdpa-xml.txt")),
            ScriptStep("cat /run/libvirt/qemu/c77g153.pid", rc=1),
        ]
    )
    assert domain(lab, tmp_path, gone, 0).evidence()[1] == [
        "c77g153: QEMU's command line is unreadable (/run/libvirt/qemu/c77g153.pid)"
    ]


def test_console_of_an_existing_domain_is_its_serial_log_or_libvirts_qemu_log(lab: Lab, tmp_path: Path) -> None:
    dom = domain(lab, tmp_path, ScriptedHost("c83g155", []), 0)
    assert dom.console_log(ORIGINAL) == "/var/log/libvirt/qemu/c77g153.log"
    logged = recorded("virsh-dumpxml-inactive-c77g159-suite-defined-xml.txt")
    assert dom.console_log(logged) == "/run/vdpalab/lab/c77g159.console.log"
    assert domain(lab, tmp_path, ScriptedHost("c83g155", []), 1).console_log() == files("c77g159").console_log


# --- both seed paths in one guests layer: QEMU on vhost-vdpa-0, libvirt on vhost-vdpa-1 --------------------


class LoggedHost(ScriptedHost):
    """A scripted host that also writes every command into a log shared by all hosts (to see the order across them)."""

    def __init__(self, name: str, steps: list, log: list[str]) -> None:
        super().__init__(name, [s if isinstance(s, ScriptStep) else ScriptStep(s[0], stdout=s[1]) for s in steps])
        self.log = log

    def _run(self, command: str, timeout: float, stdin: str | None):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}: {command}")
        return super()._run(command, timeout, stdin)


def guest_outputs(name: str, mac: str, ip: str) -> list:
    """``ip link``/``ip addr`` of a guest's data NIC eth1: the scripted outputs of eth0 with the nested names."""
    outputs = DATA / "scripts" / "outputs"
    link = (outputs / "guest-c77g153-ip-link-eth0-down.txt").read_text().replace("eth0", "eth1")
    return [
        ("true", ""),
        # the seed's CentOS 7.7 guest: iproute2 4.11 has no -j, the layer falls back to the text
        ScriptStep("ip -j link show dev eth1", rc=255, stderr=NO_JSON),
        ("ip link show dev eth1", link.replace("00:11:22:33:44:00", mac)),
        ScriptStep("ip -j -4 addr show dev eth1", rc=255, stderr=NO_JSON),
        ("ip -4 -o addr show dev eth1", ""),
        (f"ip addr replace {ip} dev eth1", ""),
        ("ip link set dev eth1 up", ""),
    ]


def test_both_seed_guests_start_before_either_is_waited_for(tmp_path: Path) -> None:
    """One up starts the QEMU guest and the libvirt domain, then waits for SSH: the two boots overlap."""
    lab = load_lab(DATA / "labs" / "nested-vdpa-guests.toml")
    run = "/run/vdpalab/nested-vdpa"
    log: list[str] = []
    guests = Guests(LayerContext(lab=lab, hosts={}, state_dir=tmp_path))
    host = LoggedHost(
        "c83g155",
        [
            ScriptStep(f"cat {run}/c77g153.pid", rc=1, stderr=f"cat: {run}/c77g153.pid: No such file or directory\n"),
            MISSING_159,
            (f"mkdir -p {run}", ""),
            (guests.driver(lab.guest[0]).command(), ""),
            (f"cat {run}/c77g153.pid", "4153\n"),  # the pid is journalled as soon as QEMU daemonized
            (f"virsh define {run}/c77g159.xml", "Domain 'c77g159' defined from ...\n"),
            ("virsh start c77g159", "Domain 'c77g159' started\n"),
        ],
        log,
    )
    g153 = LoggedHost("c77g153", guest_outputs("c77g153", "00:11:22:33:44:00", "192.168.30.153/24"), log)
    g159 = LoggedHost("c77g159", guest_outputs("c77g159", "00:11:22:33:44:10", "192.168.30.159/24"), log)
    layer = Guests(LayerContext(lab=lab, hosts={"host": host, "c77g153": g153, "c77g159": g159}, state_dir=tmp_path))
    assert layer.up() is True
    for h in (host, g153, g159):
        h.assert_done()
    first_wait = log.index("c77g153: true")
    assert log.index("c83g155: virsh start c77g159") < first_wait
    assert log.index(f"c83g155: {guests.driver(lab.guest[0]).command()}") < first_wait
    assert set(layer.boot_s) == {"c77g153", "c77g159"}  # boot-to-SSH measured for both
    domain_xml = parse_libvirt_xml(host.files[f"{run}/c77g159.xml"].decode())
    assert [(i.type, i.source_dev) for i in domain_xml.interfaces] == [("vdpa", "/dev/vhost-vdpa-1")]
    assert [c.command for c in layer.down_plan()] == [  # in reverse: the libvirt guest, then QEMU by QMP
        "virsh destroy c77g159",
        "virsh undefine c77g159",
        f"rm -f {run}/c77g159.xml",
        """printf '%s\\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' | socat - """
        f"UNIX-CONNECT:{run}/c77g153.qmp",
        "for i in $(seq 1 30); do kill -0 4153 2>/dev/null || exit 0; sleep 1; done; exit 1",
        f"rm -f {run}/c77g153.pid {run}/c77g153.qmp",
    ]

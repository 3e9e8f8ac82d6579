"""libvirt domain XML (``virsh dumpxml`` / the tests' domain files) or an ``<interface>``/``<devices>``
fragment as pasted in the seed; memory converted to KiB."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from vdpalab.errors import ParseError
from vdpalab.parsers._common import normalize

LIBVIRT_XML = "libvirt-xml"

# libvirt's units (docs: formatdomain "memory"): k/KiB = 1024, KB = 1000, ...
_UNIT_BYTES = {
    "b": 1, "bytes": 1,
    "kb": 1000, "k": 1024, "kib": 1024,
    "mb": 1000**2, "m": 1024**2, "mib": 1024**2,
    "gb": 1000**3, "g": 1024**3, "gib": 1024**3,
    "tb": 1000**4, "t": 1024**4, "tib": 1024**4,
}


@dataclass(frozen=True)
class DomainInterface:
    type: str | None
    source_dev: str | None
    mac: str | None
    model: str | None
    alias: str | None = None
    driver: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Domain:
    """``name``/``memory_kib`` are None for a fragment (only interfaces were pasted)."""

    name: str | None
    memory_kib: int | None
    interfaces: list[DomainInterface]
    domain_type: str | None = None
    uuid: str | None = None
    current_memory_kib: int | None = None
    emulator: str | None = None


def _kib(el: ET.Element | None, what: str) -> int | None:
    if el is None:
        return None
    text = (el.text or "").strip()
    if not text.isdigit():
        raise ParseError(LIBVIRT_XML, f"<{what}> value {text!r} is not a number")
    unit = el.get("unit", "KiB").lower()
    if unit not in _UNIT_BYTES:
        raise ParseError(LIBVIRT_XML, f"<{what}> unit {el.get('unit')!r} unknown")
    total = int(text) * _UNIT_BYTES[unit]
    if total % 1024:
        raise ParseError(LIBVIRT_XML, f"<{what}> {text} {el.get('unit')} is not a whole number of KiB")
    return total // 1024


def _iface(el: ET.Element) -> DomainInterface:
    src = el.find("source")
    mac = el.find("mac")
    model = el.find("model")
    alias = el.find("alias")
    drv = el.find("driver")
    return DomainInterface(
        type=el.get("type"),
        source_dev=src.get("dev") if src is not None else None,
        mac=((mac.get("address") or "").lower() or None) if mac is not None else None,
        model=model.get("type") if model is not None else None,
        alias=alias.get("name") if alias is not None else None,
        driver=dict(drv.attrib) if drv is not None else {},
    )


def parse_libvirt_xml(text: str) -> Domain:
    body = normalize(text)
    if not body.strip():
        raise ParseError(LIBVIRT_XML, "empty input")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        line_no, _col = exc.position
        lines = body.split("\n")
        line = lines[line_no - 1] if 0 < line_no <= len(lines) else None
        raise ParseError(LIBVIRT_XML, f"not well-formed XML ({exc})", line_no, line) from None
    if root.tag == "domain":
        devices = root.find("devices")
        ifaces = [_iface(e) for e in devices.findall("interface")] if devices is not None else []
        name_el = root.find("name")
        emu = devices.find("emulator") if devices is not None else None
        uuid_el = root.find("uuid")
        return Domain(
            name=(name_el.text or "").strip() or None if name_el is not None else None,
            memory_kib=_kib(root.find("memory"), "memory"),
            interfaces=ifaces,
            domain_type=root.get("type"),
            uuid=(uuid_el.text or "").strip() if uuid_el is not None else None,
            current_memory_kib=_kib(root.find("currentMemory"), "currentMemory"),
            emulator=(emu.text or "").strip() if emu is not None else None,
        )
    if root.tag == "interface":
        return Domain(name=None, memory_kib=None, interfaces=[_iface(root)])
    if root.tag == "devices":
        return Domain(name=None, memory_kib=None, interfaces=[_iface(e) for e in root.findall("interface")])
    raise ParseError(LIBVIRT_XML, f"root element <{root.tag}> is not <domain>, <devices> or <interface>", 1,
                     body.split("\n")[0])

"""``ip [-d] [-s] link show`` text and ``ip -j link show`` JSON, with SR-IOV VF lines in both the old
(``vf 0 MAC xx, ...``) and the new (``vf 0     link/ether xx brd yy, ...``) iproute2 formats."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vdpalab.errors import ParseError
from vdpalab.parsers._common import (
    Keeper,
    Unparsed,
    check_mac,
    content_lines,
    expect_type,
    json_bool,
    json_int,
    json_str,
    load_json,
    looks_like_json,
    nothing_understood,
)

IP_LINK = "ip-link"


@dataclass(frozen=True)
class Vf:
    vf: int
    mac: str | None
    spoofchk: bool | None
    trust: bool | None
    link_state: str | None
    vlan: int | None = None
    query_rss: bool | None = None


@dataclass(frozen=True)
class Link:
    ifindex: int
    name: str
    mtu: int | None
    state: str | None
    mac: str | None
    vfs: list[Vf] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    peer: str | None = None
    portname: str | None = None
    parentdev: str | None = None


@dataclass(frozen=True)
class IpLinks:
    links: list[Link]
    unparsed: list[Unparsed] = field(default_factory=list)

    def by_name(self, name: str) -> Link | None:
        for link in self.links:
            if link.name == name:
                return link
        return None


_HEAD = re.compile(r"^(?P<idx>\d+): (?P<name>[^:@\s]+)(?:@(?P<peer>[^:\s]+))?: <(?P<flags>[^>]*)>(?P<rest>.*)$")
_VF_OLD = re.compile(r"^vf (?P<vf>\d+) MAC (?P<mac>\S+?)$")
_VF_NEW = re.compile(r"^vf (?P<vf>\d+)\s+link/ether (?P<mac>\S+) brd (?P<brd>\S+)$")
_LINK_STATES = {"auto", "enable", "disable"}
_RATE = re.compile(r"(?:max|min)_tx_rate \d+Mbps|tx rate \d+ \(Mbps\)")


def _vf_line(kind: str, s: str, line_no: int, line: str) -> Vf:
    segs = [p.strip() for p in s.split(",")]
    m = _VF_OLD.match(segs[0]) or _VF_NEW.match(segs[0])
    if not m:
        raise ParseError(kind, "unrecognised VF line", line_no, line)
    mac = check_mac(kind, m.group("mac"), line_no, line)
    if "brd" in m.groupdict() and m.group("brd") is not None:
        check_mac(kind, m.group("brd"), line_no, line)
    out: dict[str, Any] = {"vf": int(m.group("vf")), "mac": mac, "spoofchk": None, "trust": None,
                           "link_state": None, "vlan": None, "query_rss": None}
    for seg in segs[1:]:
        key, _, value = seg.rpartition(" ")
        if key == "spoof checking":
            out["spoofchk"] = _onoff(kind, value, line_no, line)
        elif key == "trust":
            out["trust"] = _onoff(kind, value, line_no, line)
        elif key == "query_rss":
            out["query_rss"] = _onoff(kind, value, line_no, line)
        elif key == "link-state":
            if value not in _LINK_STATES:
                raise ParseError(kind, f"link-state {value!r} unknown (output cut?)", line_no, line)
            out["link_state"] = value
        elif key == "vlan":
            if not value.isdigit():
                raise ParseError(kind, f"vlan {value!r}", line_no, line)
            out["vlan"] = int(value)
        elif _RATE.fullmatch(seg) or key in ("qos", "vlan protocol"):
            continue
        else:
            raise ParseError(kind, f"unknown VF attribute {seg!r} (output cut?)", line_no, line)
    return Vf(**out)


def _onoff(kind: str, value: str, line_no: int, line: str) -> bool:
    if value not in ("on", "off"):
        raise ParseError(kind, f"expected on/off, got {value!r} (output cut?)", line_no, line)
    return value == "on"


def _text(kind: str, text: str) -> IpLinks:
    links: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    skip_stats = 0
    lines = content_lines(kind, text)
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            if m := _HEAD.match(line):
                rest = m.group("rest")
                if not re.search(r"\bmtu \d+", rest):
                    raise ParseError(kind, "link line without 'mtu N' (output cut?)", line_no, line)
                mtu = re.search(r"\bmtu (\d+)", rest)
                state = re.search(r"\bstate (\S+)", rest)
                current = {"ifindex": int(m.group("idx")), "name": m.group("name"), "peer": m.group("peer"),
                           "flags": [f for f in m.group("flags").split(",") if f],
                           "mtu": int(mtu.group(1)) if mtu else None, "state": state.group(1) if state else None,
                           "mac": None, "vfs": [], "portname": None, "parentdev": None}
                links.append(current)
                skip_stats = 0
                continue
            if current is None or not line[:1].isspace():
                raise ParseError(kind, "line outside any link", line_no, line)
            s = line.strip()
            if skip_stats:
                skip_stats -= 1
                if not re.fullmatch(r"[\d\s]+", s):
                    raise ParseError(kind, "expected a row of counters", line_no, line)
                continue
            if s.startswith(("RX:", "TX:", "RX errors:", "TX errors:")):
                skip_stats = 1
                continue
            if s.startswith("link/"):
                parts = s.split()
                if len(parts) >= 2 and parts[0] in ("link/ether", "link/loopback", "link/infiniband"):
                    if parts[0] != "link/infiniband":
                        current["mac"] = check_mac(kind, parts[1], line_no, line)
                    if len(parts) >= 4 and parts[2] == "brd" and parts[0] != "link/infiniband":
                        check_mac(kind, parts[3], line_no, line)
                    elif parts[0] != "link/infiniband" and len(parts) < 4:
                        raise ParseError(kind, "link/ether line without 'brd' (output cut?)", line_no, line)
                for key in ("portname", "parentdev"):
                    if km := re.search(rf"\b{key} (\S+)", s):
                        current[key] = km.group(1)
                continue
            if s.startswith("vf "):
                current["vfs"].append(_vf_line(kind, s, line_no, line))
                continue
            for key in ("portname", "parentdev"):
                if km := re.search(rf"\b{key} (\S+)", s):
                    current[key] = km.group(1)
            # other detail lines (-d: veth, altname, bridge_slave, prop list, ...) carry nothing we report
    nothing_understood(kind, links, keep)
    return IpLinks(links=[Link(**lk) for lk in links], unparsed=keep.unparsed)


def _json(kind: str, text: str) -> IpLinks:
    doc = expect_type(kind, load_json(kind, text), list, "top level")
    out: list[Link] = []
    for i, raw in enumerate(doc):
        raw = expect_type(kind, raw, dict, f"[{i}]")
        name = json_str(kind, raw.get("ifname"), f"[{i}].ifname")
        idx = json_int(kind, raw.get("ifindex"), f"[{i}].ifindex")
        if name is None or idx is None:
            raise ParseError(kind, f"[{i}]: link without ifname/ifindex")
        vfs = []
        for j, v in enumerate(expect_type(kind, raw.get("vfinfo_list", []), list, f"[{i}].vfinfo_list")):
            v = expect_type(kind, v, dict, f"[{i}].vfinfo_list[{j}]")
            mac = json_str(kind, v.get("address", v.get("mac")), f"vf {j} address")
            vlan_list = v.get("vlan_list")
            vlan = None
            if isinstance(vlan_list, list) and vlan_list and isinstance(vlan_list[0], dict):
                vlan = json_int(kind, vlan_list[0].get("vlan"), f"vf {j} vlan") or None
            vfs.append(Vf(
                vf=json_int(kind, v.get("vf"), f"vf {j}") or 0,
                mac=mac.lower() if mac else None,
                spoofchk=json_bool(kind, v.get("spoofchk"), f"vf {j} spoofchk"),
                trust=json_bool(kind, v.get("trust"), f"vf {j} trust"),
                link_state=json_str(kind, v.get("link_state"), f"vf {j} link_state"),
                vlan=vlan,
                query_rss=json_bool(kind, v.get("query_rss_en"), f"vf {j} query_rss_en"),
            ))
        addr = json_str(kind, raw.get("address"), f"[{i}].address")
        out.append(Link(
            ifindex=idx, name=name, mtu=json_int(kind, raw.get("mtu"), f"[{i}].mtu"),
            state=json_str(kind, raw.get("operstate"), f"[{i}].operstate"),
            mac=addr.lower() if addr and re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", addr) else None,
            vfs=vfs, flags=[str(f) for f in raw.get("flags", [])],
            peer=None, portname=json_str(kind, raw.get("phys_port_name"), f"[{i}].phys_port_name"),
            parentdev=json_str(kind, raw.get("parentdev"), f"[{i}].parentdev"),
        ))
    return IpLinks(links=out)


def parse_ip_link(text: str) -> IpLinks:
    """Text or ``-j`` JSON, chosen by the first character."""
    content_lines(IP_LINK, text)
    return _json(IP_LINK, text) if looks_like_json(text) else _text(IP_LINK, text)

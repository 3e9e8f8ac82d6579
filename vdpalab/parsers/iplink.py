"""iproute2 ``ip``: ``ip [-d] [-s] link show``, ``ip [-o] addr show`` and ``ip neigh show``, each as text and as
``ip -j`` JSON (the live reads use JSON; the text stays for pastes, old iproute2 and BusyBox ip).

Link text covers SR-IOV VF lines in both the old (``vf 0 MAC xx, ...``) and the new
(``vf 0     link/ether xx brd yy, ...``) formats and the ``-s`` counter rows under their headings."""

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
    json_objects,
    json_str,
    load_json,
    looks_like_json,
    nothing_understood,
)

IP_LINK = "ip-link"
IP_ADDR = "ip-addr"
IP_NEIGH = "ip-neigh"


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
    stats: LinkStats | None = None  # ``-s``: None when the output had no counters


@dataclass(frozen=True)
class LinkStats:
    """``ip -s`` counters under iproute2's JSON names (``bytes``, ``packets``, ``errors``, ``dropped``, ...);
    the text headings (``mcast``, ``overrun``, ``carrier``, ``collsns``) are renamed to them."""

    rx: dict[str, int] = field(default_factory=dict)
    tx: dict[str, int] = field(default_factory=dict)


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
# "RX: bytes  packets  errors ..." (5.x: "RX:  bytes packets errors dropped  missed   mcast"); "RX errors:" of -s -s
_STATS_HEADING = re.compile(r"^(?P<dir>RX|TX)(?P<errors> errors)?:\s+(?P<names>[a-z_ ]+?)\s*$")
_STAT_NAMES = {"mcast": "multicast", "overrun": "over_errors", "carrier": "carrier_errors", "collsns": "collisions",
               "missed": "missed_errors"}


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
    heading: tuple[str, list[str]] | None = None  # a counter heading whose row comes next
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
                           "mac": None, "vfs": [], "portname": None, "parentdev": None,
                           "stats": {"rx": {}, "tx": {}}}
                links.append(current)
                heading = None
                continue
            if current is None or not line[:1].isspace():
                raise ParseError(kind, "line outside any link", line_no, line)
            s = line.strip()
            if heading is not None:
                direction, names = heading
                heading = None
                values = s.split()
                if len(values) != len(names) or not all(v.isdigit() for v in values):
                    raise ParseError(kind, "expected a row of counters under its heading", line_no, line)
                if direction:
                    current["stats"][direction].update(zip(names, map(int, values), strict=True))
                continue
            if hm := _STATS_HEADING.match(s):
                names = [_STAT_NAMES.get(n, n) for n in hm.group("names").split()]
                heading = (hm.group("dir").lower() if not hm.group("errors") else "", names)
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
    for lk in links:
        lk["stats"] = LinkStats(**lk["stats"]) if lk["stats"]["rx"] or lk["stats"]["tx"] else None
    return IpLinks(links=[Link(**lk) for lk in links], unparsed=keep.unparsed)


def _json_links(kind: str, text: str) -> list[tuple[int, dict[str, Any], str, int]]:
    """The links of an ``ip -j link``/``addr`` list: (position, object, ifname, ifindex); ``{}`` entries (a link
    whose addresses a family filter removed) are skipped."""
    out = []
    for i, raw in json_objects(kind, load_json(kind, text), "top level", ""):
        name = json_str(kind, raw.get("ifname"), f"[{i}].ifname")
        idx = json_int(kind, raw.get("ifindex"), f"[{i}].ifindex")
        if name is None or idx is None:
            if not raw:
                continue
            raise ParseError(kind, f"[{i}]: link without ifname/ifindex")
        out.append((i, raw, name, idx))
    return out


def _json(kind: str, text: str) -> IpLinks:
    out: list[Link] = []
    for i, raw, name, idx in _json_links(kind, text):
        vfs = []
        for j, v in json_objects(kind, raw.get("vfinfo_list", []), f"[{i}].vfinfo_list"):
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
            stats=_json_stats(kind, raw.get("stats64", raw.get("stats")), f"[{i}].stats64"),
        ))
    return IpLinks(links=out)


def _json_stats(kind: str, raw: Any, what: str) -> LinkStats | None:
    """``stats64`` (or the 32-bit ``stats`` of old kernels): rx/tx counters; nested error blocks are skipped."""
    if raw is None:
        return None
    raw = expect_type(kind, raw, dict, what)
    sides: dict[str, dict[str, int]] = {}
    for side in ("rx", "tx"):
        block = expect_type(kind, raw.get(side, {}), dict, f"{what}.{side}")
        sides[side] = {k: v for k, v in block.items()
                       if not isinstance(v, dict) and json_int(kind, v, f"{what}.{side}.{k}") is not None}
    return LinkStats(**sides)


def parse_ip_link(text: str) -> IpLinks:
    """Text or ``-j`` JSON, chosen by the first character."""
    content_lines(IP_LINK, text)
    return _json(IP_LINK, text) if looks_like_json(text) else _text(IP_LINK, text)


# ------------------------------------------------------------------------------------------ addr
@dataclass(frozen=True)
class Address:
    family: str  # inet, inet6
    local: str
    prefixlen: int
    scope: str | None = None
    broadcast: str | None = None
    label: str | None = None

    @property
    def cidr(self) -> str:
        return f"{self.local}/{self.prefixlen}"


@dataclass(frozen=True)
class LinkAddrs:
    ifindex: int
    name: str
    addresses: list[Address] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    mtu: int | None = None
    state: str | None = None


@dataclass(frozen=True)
class IpAddrs:
    """``ip [-4|-6] [-o] addr show [dev IF]`` (text, one-line or BusyBox) or ``ip -j addr show``."""

    links: list[LinkAddrs]
    unparsed: list[Unparsed] = field(default_factory=list)

    def by_name(self, name: str) -> LinkAddrs | None:
        return next((lk for lk in self.links if lk.name == name), None)

    def cidrs(self, name: str, family: str = "inet") -> tuple[str, ...]:
        """The addresses of ``name`` as ``a.b.c.d/len`` (empty when the link has none or is absent)."""
        link = self.by_name(name)
        return tuple(a.cidr for a in link.addresses if a.family == family) if link else ()


_ADDR = re.compile(r"^(?P<family>inet6?) (?P<local>[0-9a-fA-F.:]+)(?:/(?P<len>\d+))?(?P<rest>.*)$")
_ADDR_FLAGS = {"secondary", "dynamic", "noprefixroute", "permanent", "tentative", "deprecated", "mngtmpaddr",
               "nodad", "optimistic", "home", "stable-privacy", "autojoin", "dadfailed", "temporary"}
_ONELINE = re.compile(r"^(?P<idx>\d+): (?P<name>[^:\s@]+)(?:@\S+)?\s+(?P<body>inet6? .*)$")


def _addr_words(kind: str, m: re.Match[str], line_no: int, line: str) -> Address:
    if m.group("len") is None:
        raise ParseError(kind, "address without /prefix (output cut?)", line_no, line)
    rest = m.group("rest").split()
    found: dict[str, str] = {}
    for key in ("brd", "scope"):
        if key in rest:
            i = rest.index(key)
            if i + 1 >= len(rest):
                raise ParseError(kind, f"{key!r} without a value (output cut?)", line_no, line)
            found[key] = rest[i + 1]
    # only IPv4 addresses carry a label (the interface name, or name:alias), printed last after the flags
    label = rest[-1] if m.group("family") == "inet" and "scope" in found and rest[-1] not in found.values() \
        and rest[-1] not in _ADDR_FLAGS else None
    return Address(family=m.group("family"), local=m.group("local"), prefixlen=int(m.group("len")),
                   scope=found.get("scope"), broadcast=found.get("brd"), label=label)


def _addr_text(kind: str, text: str) -> IpAddrs:
    links: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    lines = content_lines(kind, text)
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            if m := _ONELINE.match(line.split("\\")[0].rstrip()):
                body = _ADDR.match(m.group("body"))
                if not body:
                    raise ParseError(kind, "unrecognised one-line address", line_no, line)
                idx, name = int(m.group("idx")), m.group("name")
                if current is None or current["name"] != name:
                    current = {"ifindex": idx, "name": name, "addresses": [], "flags": [], "mtu": None, "state": None}
                    links.append(current)
                current["addresses"].append(_addr_words(kind, body, line_no, line))
                continue
            if m := _HEAD.match(line):
                rest = m.group("rest")
                mtu = re.search(r"\bmtu (\d+)", rest)
                state = re.search(r"\bstate (\S+)", rest)
                current = {"ifindex": int(m.group("idx")), "name": m.group("name"), "addresses": [],
                           "flags": [f for f in m.group("flags").split(",") if f],
                           "mtu": int(mtu.group(1)) if mtu else None, "state": state.group(1) if state else None}
                links.append(current)
                continue
            if current is None or not line[:1].isspace():
                raise ParseError(kind, "line outside any link", line_no, line)
            s = line.strip()
            if am := _ADDR.match(s):
                current["addresses"].append(_addr_words(kind, am, line_no, line))
            elif not s.startswith(("link/", "valid_lft", "altname")):
                raise ParseError(kind, "unexpected detail line", line_no, line)
    nothing_understood(kind, links, keep)
    return IpAddrs(links=[LinkAddrs(**lk) for lk in links], unparsed=keep.unparsed)


def _addr_json(kind: str, text: str) -> IpAddrs:
    out: list[LinkAddrs] = []
    for i, raw, name, idx in _json_links(kind, text):
        addrs = []
        for j, a in json_objects(kind, raw.get("addr_info", []), f"[{i}].addr_info"):
            family, local = a.get("family"), a.get("local")
            prefixlen = json_int(kind, a.get("prefixlen"), f"[{i}].addr_info[{j}].prefixlen")
            if not isinstance(family, str) or not isinstance(local, str) or prefixlen is None:
                raise ParseError(kind, f"[{i}].addr_info[{j}]: address without family/local/prefixlen")
            addrs.append(Address(family=family, local=local, prefixlen=prefixlen,
                                 scope=json_str(kind, a.get("scope"), "scope"),
                                 broadcast=json_str(kind, a.get("broadcast"), "broadcast"),
                                 label=json_str(kind, a.get("label"), "label")))
        out.append(LinkAddrs(ifindex=idx, name=name, addresses=addrs, flags=[str(f) for f in raw.get("flags", [])],
                             mtu=json_int(kind, raw.get("mtu"), f"[{i}].mtu"),
                             state=json_str(kind, raw.get("operstate"), f"[{i}].operstate")))
    return IpAddrs(links=out)


def parse_ip_addr(text: str) -> IpAddrs:
    """Text (full, ``-o`` one-line, BusyBox) or ``-j`` JSON, chosen by the first character.

    An empty JSON list is a valid answer (``ip -j -4 addr show dev X`` of a link without IPv4 addresses
    prints ``[]`` on some versions); empty text is not.
    """
    content_lines(IP_ADDR, text)
    return _addr_json(IP_ADDR, text) if looks_like_json(text) else _addr_text(IP_ADDR, text)


# ----------------------------------------------------------------------------------------- neigh
@dataclass(frozen=True)
class Neighbour:
    dst: str
    dev: str | None
    lladdr: str | None
    states: list[str] = field(default_factory=list)  # REACHABLE, STALE, FAILED, PERMANENT, ...
    router: bool = False


@dataclass(frozen=True)
class IpNeighs:
    """``ip neigh show`` text or ``ip -j neigh show``."""

    neighbours: list[Neighbour]
    unparsed: list[Unparsed] = field(default_factory=list)


_NUD = {"PERMANENT", "NOARP", "REACHABLE", "STALE", "NONE", "INCOMPLETE", "DELAY", "PROBE", "FAILED"}


def _neigh_text(kind: str, text: str) -> IpNeighs:
    out: list[Neighbour] = []
    lines = content_lines(kind, text)
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            words = line.split()
            if not re.fullmatch(r"[0-9a-fA-F.:]+", words[0]) or (":" not in words[0] and "." not in words[0]):
                raise ParseError(kind, "expected 'ADDRESS dev IF ...'", line_no, line)
            dst, rest = words[0], words[1:]
            dev = lladdr = None
            states: list[str] = []
            router = False
            i = 0
            while i < len(rest):
                w = rest[i]
                if w in ("dev", "lladdr") and i + 1 < len(rest):
                    if w == "dev":
                        dev = rest[i + 1]
                    else:
                        lladdr = check_mac(kind, rest[i + 1], line_no, line)
                    i += 2
                    continue
                if w in _NUD:
                    states.append(w)
                elif w == "router":
                    router = True
                elif w not in ("proxy", "extern_learn", "offload", "managed"):
                    raise ParseError(kind, f"unexpected word {w!r} (output cut?)", line_no, line)
                i += 1
            out.append(Neighbour(dst=dst, dev=dev, lladdr=lladdr, states=states, router=router))
    nothing_understood(kind, out, keep)
    return IpNeighs(neighbours=out, unparsed=keep.unparsed)


def _neigh_json(kind: str, text: str) -> IpNeighs:
    out = []
    for i, raw in json_objects(kind, load_json(kind, text), "top level", ""):
        dst = json_str(kind, raw.get("dst"), f"[{i}].dst")
        if dst is None:
            raise ParseError(kind, f"[{i}]: neighbour without dst")
        lladdr = json_str(kind, raw.get("lladdr"), f"[{i}].lladdr")
        states = expect_type(kind, raw.get("state", []), list, f"[{i}].state")
        out.append(Neighbour(dst=dst, dev=json_str(kind, raw.get("dev"), f"[{i}].dev"),
                             lladdr=lladdr.lower() if lladdr else None, states=[str(x) for x in states],
                             router="router" in raw))
    return IpNeighs(neighbours=out)


def parse_ip_neigh(text: str) -> IpNeighs:
    """Text or ``-j`` JSON; an empty JSON list is no neighbours, empty text is an error (as for every parser)."""
    content_lines(IP_NEIGH, text)
    return _neigh_json(IP_NEIGH, text) if looks_like_json(text) else _neigh_text(IP_NEIGH, text)

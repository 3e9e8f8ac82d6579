"""iproute2 ``devlink``: ``dev eswitch show``, ``port show`` and ``dev info``, text and ``-j`` JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from vdpalab.errors import ParseError
from vdpalab.parsers._common import (
    Keeper,
    Unparsed,
    blocks,
    content_lines,
    expect_type,
    json_bool,
    json_int,
    json_section,
    json_str,
    key_values,
    looks_like_json,
    word_bool,
    word_int,
)

ESWITCH = "devlink-eswitch"
PORT = "devlink-port"
INFO = "devlink-info"

_DEV = r"[a-z]+/[^\s:]+(?::[^\s:]+)*?"


# -------------------------------------------------------------------------------------- eswitch
@dataclass(frozen=True)
class Eswitch:
    """``encap`` is True for old ``encap enable`` and new ``encap-mode basic``; ``encap_raw`` keeps the word."""

    dev: str
    mode: str | None
    inline_mode: str | None
    encap: bool | None
    encap_raw: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    unparsed: list[Unparsed] = field(default_factory=list)


_MODES = {"legacy", "switchdev", "switchdev_inactive"}
_INLINE = {"none", "link", "network", "transport"}
_ENCAP = {"enable": True, "disable": False, "basic": True, "none": False}
_ESW_LINE = re.compile(rf"^(?P<dev>{_DEV}): (?P<rest>.*)$")


def _esw_from(kind: str, dev: str, kv: dict[str, Any], line_no: int | None, line: str | None) -> Eswitch:
    mode = kv.pop("mode", None)
    inline = kv.pop("inline-mode", None)
    encap_raw = kv.pop("encap-mode", None)
    old = kv.pop("encap", None)
    if encap_raw is None:
        encap_raw = old
    if mode is not None and mode not in _MODES:
        raise ParseError(kind, f"mode {mode!r} unknown (output cut?)", line_no, line)
    if inline is not None and inline not in _INLINE:
        raise ParseError(kind, f"inline-mode {inline!r} unknown (output cut?)", line_no, line)
    if isinstance(encap_raw, bool):
        encap_raw = "enable" if encap_raw else "disable"
    if encap_raw is not None and encap_raw not in _ENCAP:
        raise ParseError(kind, f"encap {encap_raw!r} unknown (output cut?)", line_no, line)
    return Eswitch(dev=dev, mode=mode, inline_mode=inline, encap=None if encap_raw is None else _ENCAP[encap_raw],
                   encap_raw=encap_raw, extra={k: str(v) for k, v in kv.items()})


def parse_devlink_eswitch(text: str) -> Eswitch:
    kind = ESWITCH
    lines = content_lines(kind, text)
    if looks_like_json(text):
        devs = json_section(kind, text, "dev")
        if len(devs) != 1:
            raise ParseError(kind, f"expected one device, got {len(devs)}")
        (dev, kv), = devs.items()
        return _esw_from(kind, dev, dict(expect_type(kind, kv, dict, dev)), None, None)
    joined: list[tuple[int, str]] = []
    for line_no, line in lines:  # a long line may be continued with ' \' (seen in commit messages)
        if joined and joined[-1][1].rstrip().endswith("\\"):
            joined[-1] = (joined[-1][0], joined[-1][1].rstrip()[:-1] + " " + line.strip())
        else:
            joined.append((line_no, line.strip()))
    found = [(n, ln) for n, ln in joined if _ESW_LINE.match(ln)]
    if not found:
        raise ParseError(kind, "expected 'DEV: mode ... inline-mode ... encap...'", *joined[0])
    if len(found) > 1:
        raise ParseError(kind, "expected one 'DEV: mode ...' line", *found[1])
    line_no, line = found[0]
    m = _ESW_LINE.match(line)
    assert m is not None
    esw = _esw_from(kind, m.group("dev"), key_values(kind, m.group("rest").split(), line_no, line), line_no, line)
    end = next((n for n, _ in joined if n > line_no), lines[-1][0] + 1)  # its ' \' continuations
    return replace(esw, unparsed=[Unparsed(n, ln) for n, ln in lines if not line_no <= n < end])


# ----------------------------------------------------------------------------------------- port
@dataclass(frozen=True)
class DevlinkPort:
    port: str
    type: str | None
    netdev: str | None
    flavour: str | None
    controller: int | None
    pfnum: int | None
    vfnum: int | None
    external: bool | None
    splittable: bool | None
    sfnum: int | None = None
    number: int | None = None
    function_hw_addr: str | None = None
    function_state: str | None = None
    function_opstate: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DevlinkPorts:
    ports: list[DevlinkPort]
    unparsed: list[Unparsed] = field(default_factory=list)


_INT_KEYS = {"controller", "pfnum", "vfnum", "sfnum", "port", "lanes"}
_BOOL_KEYS = {"external", "splittable"}
_PORT_LINE = re.compile(rf"^(?P<port>{_DEV}/\d+): (?P<rest>.*)$")


def _port_from(kind: str, name: str, kv: dict[str, Any], fn: dict[str, Any], line_no: int | None,
               line: str | None) -> DevlinkPort:
    vals: dict[str, Any] = {}
    for k, v in list(kv.items()):
        if k in _INT_KEYS:  # a word of the text output, or a JSON value
            vals[k] = word_int(kind, v, k, line_no, line) if isinstance(v, str) else json_int(kind, v, k)
        elif k in _BOOL_KEYS:
            vals[k] = word_bool(kind, v, k, line_no, line) if isinstance(v, str) else json_bool(kind, v, k)
        else:
            vals[k] = v
    extra = {k: str(v) for k, v in vals.items()
             if k not in {"type", "netdev", "flavour", "port", *(_INT_KEYS - {"lanes"}), *_BOOL_KEYS}}
    return DevlinkPort(
        port=name, type=vals.get("type"), netdev=vals.get("netdev"), flavour=vals.get("flavour"),
        controller=vals.get("controller"), pfnum=vals.get("pfnum"), vfnum=vals.get("vfnum"),
        external=vals.get("external"), splittable=vals.get("splittable"), sfnum=vals.get("sfnum"),
        number=vals.get("port"), function_hw_addr=fn.get("hw_addr"), function_state=fn.get("state"),
        function_opstate=fn.get("opstate"), extra=extra,
    )


@dataclass
class _PortLines:
    """A port's first line and its ``function:`` block (None: no such block yet), as read."""

    name: str
    kv: dict[str, str]
    line_no: int
    line: str
    function: dict[str, str] | None = None


def parse_devlink_port(text: str) -> DevlinkPorts:
    kind = PORT
    lines = content_lines(kind, text)
    if looks_like_json(text):
        ports = json_section(kind, text, "port")
        out = []
        for name, kv in ports.items():
            kv = dict(expect_type(kind, kv, dict, name))
            fn = expect_type(kind, kv.pop("function", {}), dict, f"{name}.function")
            out.append(_port_from(kind, name, kv, {k: json_str(kind, v, k) for k, v in fn.items()
                                                   if isinstance(v, str)}, None, None))
        return DevlinkPorts(ports=out)
    found: list[_PortLines] = []

    def start(line_no: int, line: str) -> _PortLines:
        m = _PORT_LINE.match(line)
        if not m:
            raise ParseError(kind, "expected 'DEV/INDEX: type ...'", line_no, line)
        found.append(_PortLines(m.group("port"), key_values(kind, m.group("rest").split(), line_no, line),
                                line_no, line))
        return found[-1]

    def detail(port: _PortLines, line_no: int, line: str) -> None:
        s = line.strip()
        if s == "function:":
            port.function = {}
        elif port.function is None:
            raise ParseError(kind, "unexpected detail line", line_no, line)
        else:
            port.function.update(key_values(kind, s.split(), line_no, line))

    keep = Keeper(lines, text)
    blocks(kind, lines, keep, start, detail, "port")
    if not found:
        raise ParseError(kind, "no 'DEV/INDEX: type ...' line", *lines[0])
    if found[-1].function == {}:
        raise ParseError(kind, "'function:' block without attributes (output cut?)", found[-1].line_no, found[-1].line)
    return DevlinkPorts(ports=[_port_from(kind, p.name, p.kv, p.function or {}, p.line_no, p.line) for p in found],
                        unparsed=keep.unparsed)


# ----------------------------------------------------------------------------------------- info
@dataclass(frozen=True)
class DevInfo:
    driver: str | None
    serial_number: str | None
    board_serial_number: str | None
    fixed: dict[str, str]
    running: dict[str, str]
    stored: dict[str, str]


@dataclass(frozen=True)
class DevlinkInfo:
    devices: dict[str, DevInfo]
    unparsed: list[Unparsed] = field(default_factory=list)


def parse_devlink_info(text: str) -> DevlinkInfo:
    """Values keep their inner spaces (nfp prints 'chip.init AMDA-0081-0001  20160318164536')."""
    kind = INFO
    lines = content_lines(kind, text)
    if looks_like_json(text):
        info = json_section(kind, text, "info")
        devs = {}
        for dev, raw in info.items():
            raw = expect_type(kind, raw, dict, dev)
            versions = expect_type(kind, raw.get("versions", {}), dict, f"{dev}.versions")
            sections = {}
            for sec in ("fixed", "running", "stored"):
                d = expect_type(kind, versions.get(sec, {}), dict, f"{dev}.versions.{sec}")
                sections[sec] = {k: str(json_str(kind, v, k) if not isinstance(v, int) else v) for k, v in d.items()}
            devs[dev] = DevInfo(driver=json_str(kind, raw.get("driver"), "driver"),
                                serial_number=json_str(kind, raw.get("serial_number"), "serial_number"),
                                board_serial_number=json_str(kind, raw.get("board.serial_number"),
                                                             "board.serial_number"), **sections)
        return DevlinkInfo(devices=devs)
    devs_raw: dict[str, dict[str, Any]] = {}

    def start(line_no: int, line: str) -> dict[str, Any]:
        m = re.match(rf"^({_DEV}):$", line.strip())
        if not m:
            raise ParseError(kind, "expected 'DEV:'", line_no, line)
        devs_raw[m.group(1)] = {"driver": None, "serial_number": None, "board.serial_number": None,
                                "fixed": {}, "running": {}, "stored": {}, "section": None}
        return devs_raw[m.group(1)]

    def detail(cur: dict[str, Any], line_no: int, line: str) -> None:
        s = line.strip()
        if s == "versions:":
            cur["section"] = "versions"
            return
        if s in ("fixed:", "running:", "stored:"):
            if cur["section"] is None:
                raise ParseError(kind, f"{s} outside 'versions:'", line_no, line)
            cur["section"] = s[:-1]
            return
        key, sep, value = s.partition(" ")
        if not sep or not value.strip():
            raise ParseError(kind, f"{key!r} without a value (output cut?)", line_no, line)
        if cur["section"] in ("fixed", "running", "stored"):
            cur[cur["section"]][key] = value.strip()
        elif key in ("driver", "serial_number", "board.serial_number"):
            cur[key] = value.strip()
        else:
            raise ParseError(kind, f"unexpected key {key!r}", line_no, line)

    keep = Keeper(lines, text)
    blocks(kind, lines, keep, start, detail, "device")
    if not devs_raw:
        raise ParseError(kind, "no 'DEV:' line", *lines[0])
    return DevlinkInfo(devices={
        d: DevInfo(driver=r["driver"], serial_number=r["serial_number"], board_serial_number=r["board.serial_number"],
                   fixed=r["fixed"], running=r["running"], stored=r["stored"]) for d, r in devs_raw.items()},
        unparsed=keep.unparsed)

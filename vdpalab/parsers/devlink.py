"""iproute2 ``devlink``: ``dev eswitch show``, ``port show`` and ``dev info``, text and ``-j`` JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from vdpalab.errors import ParseError
from vdpalab.parsers._common import (
    Keeper,
    Unparsed,
    content_lines,
    expect_type,
    json_bool,
    json_int,
    json_str,
    load_json,
    looks_like_json,
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


def _pairs(kind: str, words: list[str], line_no: int, line: str) -> dict[str, str]:
    if len(words) % 2:
        raise ParseError(kind, f"key {words[-1]!r} without a value (output cut?)", line_no, line)
    out: dict[str, str] = {}
    for k, v in zip(words[::2], words[1::2], strict=True):
        if k in out:
            raise ParseError(kind, f"{k} twice", line_no, line)
        out[k] = v
    return out


def parse_devlink_eswitch(text: str) -> Eswitch:
    kind = ESWITCH
    lines = content_lines(kind, text)
    if looks_like_json(text):
        doc = expect_type(kind, load_json(kind, text), dict, "top level")
        devs = expect_type(kind, doc.get("dev"), dict, "dev")
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
    esw = _esw_from(kind, m.group("dev"), _pairs(kind, m.group("rest").split(), line_no, line), line_no, line)
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
        if k in _INT_KEYS:
            if isinstance(v, str):
                if not v.isdigit():
                    raise ParseError(kind, f"{k} {v!r} is not a number", line_no, line)
                v = int(v)
            vals[k] = json_int(kind, v, k)
        elif k in _BOOL_KEYS:
            if isinstance(v, str):
                if v not in ("true", "false"):
                    raise ParseError(kind, f"{k} {v!r} is not true/false (output cut?)", line_no, line)
                v = v == "true"
            vals[k] = json_bool(kind, v, k)
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


def parse_devlink_port(text: str) -> DevlinkPorts:
    kind = PORT
    lines = content_lines(kind, text)
    if looks_like_json(text):
        doc = expect_type(kind, load_json(kind, text), dict, "top level")
        ports = expect_type(kind, doc.get("port"), dict, "port")
        out = []
        for name, kv in ports.items():
            kv = dict(expect_type(kind, kv, dict, name))
            fn = expect_type(kind, kv.pop("function", {}), dict, f"{name}.function")
            out.append(_port_from(kind, name, kv, {k: json_str(kind, v, k) for k, v in fn.items()
                                                   if isinstance(v, str)}, None, None))
        return DevlinkPorts(ports=out)
    result: list[DevlinkPort] = []
    pending: tuple[str, dict[str, str], dict[str, str], int, str] | None = None
    in_function = False
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            if m := _PORT_LINE.match(line):
                if pending:
                    result.append(_port_from(kind, *pending))
                pending = (m.group("port"), _pairs(kind, m.group("rest").split(), line_no, line), {}, line_no, line)
                in_function = False
                continue
            if pending is None or not line[:1].isspace():
                raise ParseError(kind, "expected 'DEV/INDEX: type ...'", line_no, line)
            s = line.strip()
            if s == "function:":
                in_function = True
                continue
            if not in_function:
                raise ParseError(kind, "unexpected detail line", line_no, line)
            pending[2].update(_pairs(kind, s.split(), line_no, line))
    if pending:
        if pending[2] == {} and in_function:
            raise ParseError(kind, "'function:' block without attributes (output cut?)", pending[3], pending[4])
        result.append(_port_from(kind, *pending))
    if not result:
        raise ParseError(kind, "no 'DEV/INDEX: type ...' line", *lines[0])
    return DevlinkPorts(ports=result, unparsed=keep.unparsed)


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
        doc = expect_type(kind, load_json(kind, text), dict, "top level")
        info = expect_type(kind, doc.get("info"), dict, "info")
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
    cur: dict[str, Any] | None = None
    section: str | None = None
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            if not line[:1].isspace():
                m = re.match(rf"^({_DEV}):$", line.strip())
                if not m:
                    raise ParseError(kind, "expected 'DEV:'", line_no, line)
                cur = {"driver": None, "serial_number": None, "board.serial_number": None,
                       "fixed": {}, "running": {}, "stored": {}}
                devs_raw[m.group(1)] = cur
                section = None
                continue
            if cur is None:
                raise ParseError(kind, "detail before any device", line_no, line)
            s = line.strip()
            if s == "versions:":
                section = "versions"
                continue
            if s in ("fixed:", "running:", "stored:"):
                if section is None:
                    raise ParseError(kind, f"{s} outside 'versions:'", line_no, line)
                section = s[:-1]
                continue
            key, sep, value = s.partition(" ")
            if not sep or not value.strip():
                raise ParseError(kind, f"{key!r} without a value (output cut?)", line_no, line)
            if section in ("fixed", "running", "stored"):
                cur[section][key] = value.strip()
            elif key in ("driver", "serial_number", "board.serial_number"):
                cur[key] = value.strip()
            else:
                raise ParseError(kind, f"unexpected key {key!r}", line_no, line)
    if not devs_raw:
        raise ParseError(kind, "no 'DEV:' line", *lines[0])
    return DevlinkInfo(devices={
        d: DevInfo(driver=r["driver"], serial_number=r["serial_number"], board_serial_number=r["board.serial_number"],
                   fixed=r["fixed"], running=r["running"], stored=r["stored"]) for d, r in devs_raw.items()},
        unparsed=keep.unparsed)

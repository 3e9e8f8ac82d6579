"""iproute2 ``vdpa``: ``mgmtdev show``, ``dev show``/``dev list``, ``dev config show``, ``dev vstats show``.

Quirks handled on purpose:
- the first vdpa tool wrote the mgmtdev JSON under ``"show"``; later ones under ``"mgmtdev"``;
- ``dev config show -j`` has keys with a trailing space (``"link "``, ``"link_announce "``): stripped;
- vstats JSON from the kernel-side examples repeats ``"name"``/``"value"`` pairs in one object: kept
  in order instead of letting the last pair win.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from vdpalab.errors import ParseError
from vdpalab.parsers._common import (
    Keeper,
    Unparsed,
    blocks,
    check_mac,
    content_lines,
    expect_type,
    is_pairs,
    json_bool,
    json_int,
    json_section,
    json_str,
    key_values,
    looks_like_json,
    pairs_to_dict,
    word_bool,
    word_int,
)

MGMTDEV = "vdpa-mgmtdev"
DEV = "vdpa-dev"
CONFIG = "vdpa-config"
VSTATS = "vdpa-vstats"

_HANDLE = r"[\w.:/-]+"


_ERROR_LINE = re.compile(r"^(?:Error: |kernel answers: )")


def _tool_error(kind: str, lines: list[tuple[int, str]]) -> None:
    """The vdpa tool printed an error instead of (or after) its output: say so, as printed.

    ``Error: vdpa: feature negotiation not complete.`` is what vstats answers before a driver has
    finished feature negotiation on the device (iproute2 6.1 exits 0 with it, 6.15 exits 1).
    """
    for line_no, line in lines:
        if line.startswith("Error: "):
            why = line[len("Error: "):].strip()
            if "feature negotiation not complete" in why:
                raise ParseError(kind, "vdpa reported 'feature negotiation not complete': no driver has finished "
                                       "feature negotiation on the device yet, so it has no statistics", line_no, line)
            raise ParseError(kind, f"vdpa reported an error: {why}", line_no, line)


# -------------------------------------------------------------------------------------- mgmtdev
@dataclass(frozen=True)
class Mgmtdev:
    supported_classes: list[str]
    max_supported_vqs: int | None
    dev_features: list[str]


@dataclass(frozen=True)
class Mgmtdevs:
    mgmtdevs: dict[str, Mgmtdev]
    unparsed: list[Unparsed] = field(default_factory=list)


def parse_vdpa_mgmtdev(text: str) -> Mgmtdevs:
    kind = MGMTDEV
    lines = content_lines(kind, text)
    if looks_like_json(text):
        out = {}
        for name, raw in json_section(kind, text, "mgmtdev", "show").items():
            raw = expect_type(kind, raw, dict, name)
            classes = expect_type(kind, raw.get("supported_classes", []), list, f"{name}.supported_classes")
            feats = expect_type(kind, raw.get("dev_features", []), list, f"{name}.dev_features")
            out[name] = Mgmtdev(supported_classes=[str(c) for c in classes],
                                max_supported_vqs=json_int(kind, raw.get("max_supported_vqs"), "max_supported_vqs"),
                                dev_features=[str(f) for f in feats])
        return Mgmtdevs(mgmtdevs=out)
    _tool_error(kind, lines)
    devs: dict[str, dict[str, Any]] = {}

    def start(line_no: int, line: str) -> dict[str, Any]:
        m = re.match(rf"^({_HANDLE}):$", line.strip())
        if not m:
            raise ParseError(kind, "expected 'MGMTDEV:'", line_no, line)
        devs[m.group(1)] = {"supported_classes": None, "max_supported_vqs": None, "dev_features": []}
        return devs[m.group(1)]

    def detail(cur: dict[str, Any], line_no: int, line: str) -> None:
        key, _, rest = line.strip().partition(" ")
        words = rest.split()
        if key == "supported_classes":
            cur["supported_classes"] = words
        elif key == "max_supported_vqs":
            if len(words) != 1:
                raise ParseError(kind, "max_supported_vqs needs one value", line_no, line)
            cur["max_supported_vqs"] = word_int(kind, words[0], key, line_no, line)
        elif key == "dev_features":
            cur["dev_features"] = words
        else:
            raise ParseError(kind, f"unknown attribute {key!r}", line_no, line)

    keep = Keeper(lines, text)
    blocks(kind, lines, keep, start, detail, "management device")
    if not devs:
        raise ParseError(kind, "no management device in the output", *lines[0])
    for name, d in devs.items():
        if not d["supported_classes"] and not keep.unparsed:
            raise ParseError(kind, f"{name}: no supported_classes line (output cut?)")
    return Mgmtdevs(mgmtdevs={k: Mgmtdev(**v) for k, v in devs.items()}, unparsed=keep.unparsed)


# ------------------------------------------------------------------------------------------ dev
@dataclass(frozen=True)
class VdpaDev:
    type: str | None
    mgmtdev: str | None
    vendor_id: int | None
    max_vqs: int | None
    max_vq_size: int | None


@dataclass(frozen=True)
class VdpaDevs:
    devs: dict[str, VdpaDev]
    unparsed: list[Unparsed] = field(default_factory=list)


_DEV_LINE = re.compile(rf"^(?P<name>{_HANDLE}): (?P<rest>.*)$")


def parse_vdpa_dev(text: str) -> VdpaDevs:
    kind = DEV
    lines = content_lines(kind, text)
    if looks_like_json(text):
        out = {}
        for name, raw in json_section(kind, text, "dev").items():
            raw = expect_type(kind, raw, dict, name)
            out[name] = VdpaDev(type=json_str(kind, raw.get("type"), "type"),
                                mgmtdev=json_str(kind, raw.get("mgmtdev"), "mgmtdev"),
                                vendor_id=json_int(kind, raw.get("vendor_id"), "vendor_id"),
                                max_vqs=json_int(kind, raw.get("max_vqs"), "max_vqs"),
                                max_vq_size=json_int(kind, raw.get("max_vq_size"), "max_vq_size"))
        return VdpaDevs(devs=out)
    _tool_error(kind, lines)
    devs = {}
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            m = _DEV_LINE.match(line.strip())
            if not m:
                raise ParseError(kind, "expected 'NAME: type ... mgmtdev ...'", line_no, line)
            kv = key_values(kind, m.group("rest").split(), line_no, line)
            if "type" not in kv or "mgmtdev" not in kv:
                raise ParseError(kind, "device line without type/mgmtdev", line_no, line)
            if "max_vq_size" not in kv:
                raise ParseError(kind, "device line without max_vq_size (output cut?)", line_no, line)
            devs[m.group("name")] = VdpaDev(
                type=kv["type"], mgmtdev=kv["mgmtdev"],
                vendor_id=word_int(kind, kv.get("vendor_id"), "vendor_id", line_no, line),
                max_vqs=word_int(kind, kv.get("max_vqs"), "max_vqs", line_no, line),
                max_vq_size=word_int(kind, kv.get("max_vq_size"), "max_vq_size", line_no, line))
    if not devs:
        raise ParseError(kind, "no vdpa device in the output", *lines[0])
    return VdpaDevs(devs=devs, unparsed=keep.unparsed)


# --------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class VdpaConfig:
    mac: str | None
    link: str | None
    link_announce: bool | None
    max_vq_pairs: int | None
    mtu: int | None
    negotiated_features: list[str] = field(default_factory=list)
    dev_features: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VdpaConfigs:
    devs: dict[str, VdpaConfig]
    unparsed: list[Unparsed] = field(default_factory=list)


def parse_vdpa_config(text: str) -> VdpaConfigs:
    kind = CONFIG
    lines = content_lines(kind, text)
    if looks_like_json(text):
        out = {}
        for name, raw in json_section(kind, text, "config").items():
            raw = {str(k).strip(): v for k, v in expect_type(kind, raw, dict, name).items()}
            mac = json_str(kind, raw.get("mac"), "mac")
            out[name] = VdpaConfig(
                mac=mac.lower() if mac else None, link=json_str(kind, raw.get("link"), "link"),
                link_announce=json_bool(kind, raw.get("link_announce"), "link_announce"),
                max_vq_pairs=json_int(kind, raw.get("max_vq_pairs"), "max_vq_pairs"),
                mtu=json_int(kind, raw.get("mtu"), "mtu"),
                negotiated_features=[str(x) for x in expect_type(kind, raw.get("negotiated_features", []), list,
                                                                 "negotiated_features")],
                dev_features=[str(x) for x in expect_type(kind, raw.get("dev_features", []), list, "dev_features")],
            )
        return VdpaConfigs(devs=out)
    _tool_error(kind, lines)
    devs: dict[str, dict[str, Any]] = {}
    keep = Keeper(lines, text)
    blocks(kind, lines, keep, lambda n, ln: _config_head(kind, devs, n, ln), partial(_config_detail, kind), "device")
    if not devs:
        raise ParseError(kind, "no vdpa device in the output", *lines[0])
    return VdpaConfigs(devs={k: VdpaConfig(**v) for k, v in devs.items()}, unparsed=keep.unparsed)


def _config_head(kind: str, devs: dict[str, dict[str, Any]], line_no: int, line: str) -> dict[str, Any]:
    """A device's first line in ``vdpa dev config show``: 'NAME: mac ... link ...' (VDUSE: 'NAME:' alone)."""
    if name_only := re.match(rf"^({_HANDLE}):$", line.strip()):
        name, kv = name_only.group(1), {}
    elif m := _DEV_LINE.match(line.strip()):
        name, kv = m.group("name"), key_values(kind, m.group("rest").split(), line_no, line)
    else:
        raise ParseError(kind, "expected 'NAME: mac ... link ...'", line_no, line)
    unknown = set(kv) - {"mac", "link", "link_announce", "max_vq_pairs", "mtu"}
    if unknown:
        raise ParseError(kind, f"unknown attributes {sorted(unknown)}", line_no, line)
    link = kv.get("link")
    if link is not None and link not in ("up", "down"):
        raise ParseError(kind, f"link {link!r} is neither up nor down", line_no, line)
    cur: dict[str, Any] = {
        "mac": check_mac(kind, kv["mac"], line_no, line) if "mac" in kv else None, "link": link,
        "link_announce": word_bool(kind, kv.get("link_announce"), "link_announce", line_no, line),
        "max_vq_pairs": word_int(kind, kv.get("max_vq_pairs"), "max_vq_pairs", line_no, line),
        "mtu": word_int(kind, kv.get("mtu"), "mtu", line_no, line),
        "negotiated_features": [], "dev_features": [],
    }
    devs[name] = cur
    return cur


def _config_detail(kind: str, cur: dict[str, Any], line_no: int, line: str) -> None:
    """A device's indented line: its negotiated or offered features."""
    key, _, rest = line.strip().partition(" ")
    if key not in ("negotiated_features", "dev_features"):
        raise ParseError(kind, f"unknown attribute {key!r}", line_no, line)
    cur[key] = rest.split()



# --------------------------------------------------------------------------------------- vstats
@dataclass(frozen=True)
class VqStats:
    """One virtqueue's vendor statistics (mlx5_vdpa: received_desc, completed_desc)."""

    queue_type: str | None
    queue_index: int | None
    counters: dict[str, int]

    @property
    def received_desc(self) -> int | None:
        return self.counters.get("received_desc")

    @property
    def completed_desc(self) -> int | None:
        return self.counters.get("completed_desc")


@dataclass(frozen=True)
class VdpaVstats:
    devs: dict[str, VqStats]
    unparsed: list[Unparsed] = field(default_factory=list)


_QTYPES = {"rx", "tx", "control_vq", "cvq"}


def _vq_from_pairs(kind: str, name: str, pairs: list[tuple[str, Any]]) -> VqStats:
    qtype = qidx = None
    counters: dict[str, int] = {}
    pending_name: str | None = None
    for k, v in pairs:
        if k in ("queue_type", "qtype"):
            qtype = json_str(kind, v, f"{name}.{k}")
        elif k in ("queue_index", "qidx"):
            qidx = json_int(kind, v, f"{name}.{k}")
        elif k == "name":
            pending_name = json_str(kind, v, f"{name}.name")
        elif k == "value":
            if pending_name is None:
                raise ParseError(kind, f"{name}: 'value' without a preceding 'name'")
            counters[pending_name] = json_int(kind, v, f"{name}.{pending_name}") or 0
            pending_name = None
        else:
            val = json_int(kind, v, f"{name}.{k}")
            if val is None:
                raise ParseError(kind, f"{name}.{k}: expected a counter")
            counters[k] = val
    if pending_name is not None:
        raise ParseError(kind, f"{name}: 'name' {pending_name!r} without its 'value' (output cut?)")
    return VqStats(queue_type=qtype, queue_index=qidx, counters=counters)


def parse_vdpa_vstats(text: str) -> VdpaVstats:
    """``vdpa dev vstats show DEV qidx Q [-j]``: iproute2's layout and the kernel-commit example layout."""
    kind = VSTATS
    lines = content_lines(kind, text)
    if looks_like_json(text):
        devs = json_section(kind, text, "vstats", keep_duplicates=True)
        out = {}
        for name, body in devs.items():
            if not is_pairs(body):
                raise ParseError(kind, f"{name}: expected an object")
            out[name] = _vq_from_pairs(kind, name, [(k, pairs_to_dict(v)) for k, v in body])
        return VdpaVstats(devs=out)
    _tool_error(kind, lines)
    blocks: dict[str, list[tuple[int, str, str]]] = {}
    current: str | None = None
    keep = Keeper(lines, text)
    for line_no, line in lines:
        s = line.strip()
        if m := re.match(rf"^({_HANDLE}):$", s):
            current = m.group(1)
            blocks.setdefault(current, [])
            continue
        m = _DEV_LINE.match(s)
        if m and not s.startswith(("queue_type", "qtype")):
            current = m.group("name")
            blocks.setdefault(current, []).append((line_no, line, m.group("rest")))
            continue
        if current is None or not re.fullmatch(r"[\w.\- ]+", s):
            with keep.line(line_no, line):
                raise ParseError(kind, "statistics before any device name" if current is None
                                 else "not a line of counters", line_no, line)
            continue
        blocks[current].append((line_no, line, s))
    out = {}
    for name, rows in blocks.items():
        if not rows:
            raise ParseError(kind, f"{name}: no statistics (output cut?)")
        line_no, line = rows[-1][0], rows[-1][1]
        with keep.line(line_no, line):
            out[name] = _vq_from_words(kind, [w for _, _, rest in rows for w in rest.split()], line_no, line)
    if not out:
        raise ParseError(kind, "no statistics in the output", *lines[0])
    return VdpaVstats(devs=out, unparsed=keep.unparsed)


def _vq_from_words(kind: str, words: list[str], line_no: int, line: str) -> VqStats:
    """'queue_type rx queue_index 0 received_desc 5 completed_desc 5' (mlx5), 'queue_type tx tx packets 11
    tx bytes 858' (vdpa_sim: counter names of several words) or 'name received_desc value 5' pairs."""
    qtype = qidx = None
    counters: dict[str, int] = {}
    name: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if not name and w in ("queue_type", "qtype") and i + 1 < len(words):
            qtype = words[i + 1]
            i += 2
            continue
        if not name and w in ("queue_index", "qidx") and i + 1 < len(words):
            qidx = word_int(kind, words[i + 1], "queue_index", line_no, line)
            i += 2
            continue
        if not name and w == "name" and i + 3 < len(words) and words[i + 2] == "value":
            counters[words[i + 1]] = word_int(kind, words[i + 3], words[i + 1], line_no, line) or 0
            i += 4
            continue
        if re.fullmatch(r"\d+", w):
            if not name:
                raise ParseError(kind, f"value {w} without a counter name", line_no, line)
            counters[" ".join(name)] = int(w)
            name = []
        else:
            name.append(w)
        i += 1
    if name:
        raise ParseError(kind, f"counter {' '.join(name)!r} without a value (output cut?)", line_no, line)
    if qtype is not None and qtype not in _QTYPES:
        raise ParseError(kind, f"queue type {qtype!r} unknown", line_no, line)
    if not counters:
        raise ParseError(kind, "no counters (output cut?)", line_no, line)
    return VqStats(queue_type=qtype, queue_index=qidx, counters=counters)

"""``ethtool -k IF`` (offload features, whole or grepped; ``ethtool --json -k IF`` from ethtool 6.x) and
``ethtool -i IF`` (driver information; ethtool has no JSON for it, up to 6.1 at least)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vdpalab.errors import ParseError
from vdpalab.parsers._common import (
    Keeper,
    Unparsed,
    content_lines,
    expect_type,
    json_bool,
    json_str,
    load_json,
    looks_like_json,
    nothing_understood,
    to_bool_word,
)

ETHTOOL_K = "ethtool-k"
ETHTOOL_I = "ethtool-i"


@dataclass(frozen=True)
class Feature:
    """``on`` is the active state; ``fixed`` means it cannot change; ``requested`` is what was asked
    when it differs from the active state ('[requested on]'), else None."""

    on: bool
    fixed: bool
    requested: bool | None
    parent: str | None = None


@dataclass(frozen=True)
class EthtoolFeatures:
    interface: str | None
    features: dict[str, Feature]
    unparsed: list[Unparsed] = field(default_factory=list)

    def is_on(self, name: str) -> bool | None:
        f = self.features.get(name)
        return None if f is None else f.on


_HEADER = re.compile(r"^Features for (\S+):$")
_FEATURE = re.compile(r"^(?P<indent>\s*)(?P<name>[\w-]+): (?P<state>on|off)(?: \[(?P<note>[^\]]+)\])?\s*$")


def _features_json(kind: str, text: str) -> EthtoolFeatures:
    """``[{"ifname": IF, "feature": {"active": b, "fixed": b|null, "requested": b|null}, ...}]``: ``fixed`` and
    ``requested`` are null for a parent (``tx-checksumming``) whose state is its children's."""
    doc = expect_type(kind, load_json(kind, text), list, "top level")
    if len(doc) != 1:
        raise ParseError(kind, f"expected one interface, got {len(doc)}")
    raw = expect_type(kind, doc[0], dict, "[0]")
    feats: dict[str, Feature] = {}
    for name, value in raw.items():
        if name == "ifname":
            continue
        value = expect_type(kind, value, dict, name)
        on = json_bool(kind, value.get("active"), f"{name}.active")
        if on is None:
            raise ParseError(kind, f"{name}: no 'active' state")
        requested = json_bool(kind, value.get("requested"), f"{name}.requested")
        fixed = bool(json_bool(kind, value.get("fixed"), f"{name}.fixed"))
        # as the text shows it: a wish only for a changeable feature whose state differs from it
        feats[name] = Feature(on=on, fixed=fixed, requested=None if fixed or requested in (None, on) else requested)
    return EthtoolFeatures(interface=json_str(kind, raw.get("ifname"), "ifname"), features=feats)


def parse_ethtool_k(text: str) -> EthtoolFeatures:
    """Text or ``--json`` (chosen by the first character). JSON has no parent/child nesting: ``parent`` is None."""
    kind = ETHTOOL_K
    if looks_like_json(content_lines(kind, text)[0][1]):
        return _features_json(kind, text)
    iface = None
    feats: dict[str, Feature] = {}
    parent = None
    lines = content_lines(kind, text)
    if m := _HEADER.match(lines[0][1].strip()):
        iface = m.group(1)
        lines = lines[1:] or lines  # a header alone: the loop below says it is no feature line
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            m = _FEATURE.match(line)
            if not m:
                raise ParseError(kind, "expected 'feature: on|off [fixed|requested on|off]'", line_no, line)
            note = m.group("note")
            fixed = False
            requested = None
            if note == "fixed":
                fixed = True
            elif note in ("requested on", "requested off"):
                requested = note.endswith("on")
            elif note == "not requested":
                requested = False
            elif note is not None:
                raise ParseError(kind, f"unknown note [{note}]", line_no, line)
            name = m.group("name")
            indented = bool(m.group("indent"))
            if name in feats:
                raise ParseError(kind, f"feature {name} printed twice", line_no, line)
            feats[name] = Feature(on=m.group("state") == "on", fixed=fixed, requested=requested,
                                  parent=parent if indented else None)
            if not indented:
                parent = name
    nothing_understood(kind, feats, keep)
    return EthtoolFeatures(interface=iface, features=feats, unparsed=keep.unparsed)


@dataclass(frozen=True)
class EthtoolInfo:
    """``ethtool -i``; an empty value (``firmware-version: ``) is None."""

    driver: str | None
    version: str | None
    firmware_version: str | None
    expansion_rom_version: str | None
    bus_info: str | None
    supports_statistics: bool | None
    supports_test: bool | None
    supports_eeprom_access: bool | None
    supports_register_dump: bool | None
    supports_priv_flags: bool | None
    unparsed: list[Unparsed] = field(default_factory=list)


_I_KEYS = {
    "driver", "version", "firmware-version", "expansion-rom-version", "bus-info", "supports-statistics",
    "supports-test", "supports-eeprom-access", "supports-register-dump", "supports-priv-flags",
}


def parse_ethtool_i(text: str) -> EthtoolInfo:
    kind = ETHTOOL_I
    values: dict[str, str | None] = {}
    flags: dict[str, bool | None] = {}
    lines = content_lines(kind, text)
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            key, sep, value = line.partition(":")
            key = key.strip()
            if not sep or key not in _I_KEYS:
                raise ParseError(kind, "expected one of ethtool -i's 'key: value' lines", line_no, line)
            if key in values or key in flags:
                raise ParseError(kind, f"{key} printed twice", line_no, line)
            v = value.strip()
            if key.startswith("supports-"):
                flags[key] = to_bool_word(kind, v, line_no, line, key)
            else:
                values[key] = v or None
    if "driver" not in values:
        raise ParseError(kind, "no 'driver:' line")
    return EthtoolInfo(
        driver=values.get("driver"), version=values.get("version"), firmware_version=values.get("firmware-version"),
        expansion_rom_version=values.get("expansion-rom-version"), bus_info=values.get("bus-info"),
        supports_statistics=flags.get("supports-statistics"), supports_test=flags.get("supports-test"),
        supports_eeprom_access=flags.get("supports-eeprom-access"), supports_register_dump=flags.get(
            "supports-register-dump"), supports_priv_flags=flags.get("supports-priv-flags"),
        unparsed=keep.unparsed,
    )

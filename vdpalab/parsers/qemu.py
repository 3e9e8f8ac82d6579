"""A QEMU command line: as typed in a shell (`` \\`` continuations, a ``2>&1 | tee`` tail), or as
libvirt writes it (an args file with ``VAR=value`` environment lines first), with ``-netdev``/``-device``
in key=value or JSON syntax."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from vdpalab.errors import ParseError
from vdpalab.parsers._common import normalize

QEMU_CMDLINE = "qemu-cmdline"

# Options that take no argument (the rest take exactly one).
_FLAGS = {
    "-S", "-enable-kvm", "-nographic", "-no-user-config", "-nodefaults", "-no-shutdown", "-no-acpi",
    "-no-reboot", "-no-hpet", "-snapshot", "-daemonize", "-full-screen", "-no-fd-bootchk", "-s",
    "-enable-fips", "-no-quit", "-no-frame", "-alt-grab", "-ctrl-grab", "-win2k-hack", "-preconfig",
    "-nodefconfig", "-version", "-help", "-h",
}
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_STOP = re.compile(r"^(?:\||\|\||&&|;|&|\d*>>?.*|\d*<.*|\d*>&\d*)$")


@dataclass(frozen=True)
class Netdev:
    type: str | None
    id: str | None
    vhostdev: str | None
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Device:
    driver: str | None
    netdev: str | None
    id: str | None = None
    mac: str | None = None
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QemuCmdline:
    """``memory`` is the -m argument as given; ``memory_mib`` its size in MiB (QEMU's default unit)."""

    binary: str
    memory: str | None
    netdevs: list[Netdev]
    devices: list[Device]
    memory_mib: int | None = None
    name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    options: list[tuple[str, str | None]] = field(default_factory=list)


def _keyval(kind: str, text: str, implied: str, what: str) -> dict[str, str]:
    """QEMU key=value list: ',,' is a literal comma; a first bare word is the implied key."""
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == ",":
            if i + 1 < len(text) and text[i + 1] == ",":
                buf.append(",")
                i += 2
                continue
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    parts.append("".join(buf))
    out: dict[str, str] = {}
    for n, part in enumerate(parts):
        if not part:
            raise ParseError(kind, f"{what}: empty element in {text!r}")
        k, eq, v = part.partition("=")
        if not eq:
            if n == 0:
                out[implied] = part
                continue
            out[part] = "on"  # QEMU's shorthand for a boolean
            continue
        out[k] = v
    return out


def _structured(kind: str, arg: str, implied: str, what: str) -> dict[str, str]:
    if arg.lstrip().startswith("{"):
        try:
            doc = json.loads(arg)
        except json.JSONDecodeError as exc:
            raise ParseError(kind, f"{what}: JSON argument is not valid JSON ({exc.msg})") from None
        if not isinstance(doc, dict):
            raise ParseError(kind, f"{what}: JSON argument is not an object")
        return {str(k): (json.dumps(v) if isinstance(v, dict | list) else
                         ("on" if v is True else "off" if v is False else str(v))) for k, v in doc.items()}
    return _keyval(kind, arg, implied, what)


def _mib(kind: str, arg: str) -> int | None:
    size = arg
    if "=" in arg or "," in arg:
        kv = _keyval(kind, arg, "size", "-m")
        size = kv.get("size", "")
        if not size:
            return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT]?)[bB]?", size)
    if not m:
        raise ParseError(kind, f"-m size {size!r} not understood")
    value = float(m.group(1))
    factor = {"": 1, "m": 1, "k": 1 / 1024, "g": 1024, "t": 1024 * 1024}[m.group(2).lower()]
    mib = value * factor
    return int(mib) if mib == int(mib) else None


def _locate(body: str, needle: str) -> tuple[int, str] | tuple[None, None]:
    """The first line holding ``needle`` (or its first 40 characters, for a value split over lines)."""
    for probe in (needle, needle[:40]):
        for n, line in enumerate(body.split("\n"), start=1):
            if probe and probe in line:
                return n, line
    return None, None


def parse_qemu_cmdline(text: str) -> QemuCmdline:
    """Parse the command line; an error names the source line holding the offending option."""
    body = normalize(text)
    try:
        return _parse(body)
    except _At as at:
        line_no, line = _locate(body, at.needle)
        raise ParseError(QEMU_CMDLINE, at.message, line_no, line) from None


class _At(Exception):
    """An error to be reported at the line where ``needle`` appears."""

    def __init__(self, message: str, needle: str) -> None:
        super().__init__(message)
        self.message = message
        self.needle = needle


def _parse(body: str) -> QemuCmdline:
    kind = QEMU_CMDLINE
    if not body.strip():
        raise ParseError(kind, "empty input")
    joined = re.sub(r"\\\n", " ", body).replace("\n", " ")
    try:
        tokens = shlex.split(joined, posix=True)
    except ValueError as exc:
        lines = body.rstrip("\n").split("\n")
        raise ParseError(kind, f"shell quoting does not close ({exc}; output cut?)", len(lines), lines[-1]) from None
    env: dict[str, str] = {}
    i = 0
    while i < len(tokens) and _ENV.match(tokens[i]) and not tokens[i].startswith("-"):
        k, _, v = tokens[i].partition("=")
        env[k] = v
        i += 1
    if i >= len(tokens):
        raise ParseError(kind, "no QEMU binary after the environment")
    binary = tokens[i]
    if binary.startswith("-") or "qemu" not in binary.rsplit("/", 1)[-1]:
        raise ParseError(kind, f"{binary!r} does not look like a QEMU binary", 1, body.split("\n")[0])
    i += 1
    options: list[tuple[str, str | None]] = []
    while i < len(tokens):
        tok = tokens[i]
        if _SHELL_STOP.match(tok):
            break
        if not tok.startswith("-"):
            raise _At(f"argument {tok!r} does not follow an option", tok)
        opt = "-" + tok.lstrip("-")
        if opt in _FLAGS:
            options.append((opt, None))
            i += 1
            continue
        if i + 1 >= len(tokens) or _SHELL_STOP.match(tokens[i + 1]):
            raise _At(f"option {opt} without its argument (output cut?)", tok)
        options.append((opt, tokens[i + 1]))
        i += 2
    netdevs: list[Netdev] = []
    devices: list[Device] = []
    memory = name = None
    memory_mib: int | None = None
    for opt, arg in options:
        if arg is None:
            continue
        try:
            got = _option(kind, opt, arg)
        except ParseError as exc:
            raise _At(str(exc)[len(kind) + 2:], arg) from None
        if isinstance(got, Netdev):
            netdevs.append(got)
        elif isinstance(got, Device):
            devices.append(got)
        elif opt == "-m":
            memory, memory_mib = arg, got
        elif opt == "-name":
            name = got
    return QemuCmdline(binary=binary, memory=memory, netdevs=netdevs, devices=devices,
                       memory_mib=memory_mib, name=name, env=env, options=options)


def _option(kind: str, opt: str, arg: str) -> Netdev | Device | int | str | None:
    if opt == "-netdev":
        kv = _structured(kind, arg, "type", "-netdev")
        if "id" not in kv:
            raise ParseError(kind, f"-netdev without id: {arg!r}")
        return Netdev(type=kv.get("type"), id=kv.get("id"), vhostdev=kv.get("vhostdev"), options=kv)
    if opt == "-device":
        kv = _structured(kind, arg, "driver", "-device")
        return Device(driver=kv.get("driver"), netdev=kv.get("netdev"), id=kv.get("id"), mac=kv.get("mac"),
                      options=kv)
    if opt == "-m":
        return _mib(kind, arg)
    if opt == "-name":
        return _keyval(kind, arg, "guest", "-name").get("guest")
    return None

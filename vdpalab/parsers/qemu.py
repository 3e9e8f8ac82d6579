"""A QEMU command line: as typed in a shell (`` \\`` continuations, a ``2>&1 | tee`` tail), or as
libvirt writes it (an args file with ``VAR=value`` environment lines first), with ``-netdev``/``-device``
in key=value or JSON syntax."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from vdpalab.errors import ParseError
from vdpalab.parsers._common import PROMPT_RE, Unparsed, is_elision, normalize

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
    unparsed: list[Unparsed] = field(default_factory=list)


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


def _split_line(kind: str, line_no: int, line: str, last: bool) -> list[str] | None:
    """Shell words of one physical line (its ' \\' continuation removed); None when it is not shell."""
    text = line.rstrip()
    text = text[:-1] if text.endswith("\\") else text
    try:
        return shlex.split(text, posix=True)
    except ValueError as exc:
        if last:
            raise ParseError(kind, f"shell quoting does not close ({exc}; output cut?)", line_no, line) from None
        return None


def _parse(body: str) -> QemuCmdline:
    """Line by line: a leading prompt is dropped, lines before the command that are not environment
    assignments, elisions and lines that are no options are kept in ``unparsed``; the command goes on
    while a line ends with ' \\' or the next line starts with an option."""
    kind = QEMU_CMDLINE
    if not body.strip():
        raise ParseError(kind, "empty input")
    lines = [(n, ln) for n, ln in enumerate(body.split("\n"), start=1) if ln.strip()]
    cut = not body.rstrip(" \t").endswith("\n")
    unparsed: list[Unparsed] = []
    env: dict[str, str] = {}
    binary: str | None = None
    options: list[tuple[str, str | None]] = []
    pending: str | None = None  # an option whose argument is on the next line
    stopped = False
    for idx, (line_no, line) in enumerate(lines):
        last = idx == len(lines) - 1
        if stopped or is_elision(line):
            unparsed.append(Unparsed(line_no, line))
            continue
        text = line
        if binary is None:
            text = PROMPT_RE.sub("", text, count=1)
            text = re.sub(r"^\s*[$#] ", "", text)
        words = _split_line(kind, line_no, text, last and cut)
        if words is None:
            unparsed.append(Unparsed(line_no, line))
            continue
        if binary is None:
            while words and _ENV.match(words[0]) and not words[0].startswith("-"):
                k, _, v = words.pop(0).partition("=")
                env[k] = v
            if not words:
                continue
            if words[0].startswith("-") or "qemu" not in words[0].rsplit("/", 1)[-1]:
                unparsed.append(Unparsed(line_no, line))
                continue
            binary = words.pop(0)
        if pending is None and words and not words[0].startswith("-") and not _SHELL_STOP.match(words[0]):
            unparsed.append(Unparsed(line_no, line))  # no option here: not part of the command line
        else:
            for w in words:
                if _SHELL_STOP.match(w):
                    stopped = True
                    break
                if pending is not None:
                    options.append((pending, w))
                    pending = None
                elif not w.startswith("-"):
                    raise _At(f"argument {w!r} does not follow an option", w)
                elif "-" + w.lstrip("-") in _FLAGS:
                    options.append(("-" + w.lstrip("-"), None))
                else:
                    pending = "-" + w.lstrip("-")
        following = lines[idx + 1][1].lstrip() if not last else ""
        if binary is not None and not line.rstrip().endswith("\\") and not following.startswith("-"):
            stopped = True
    if binary is None:
        first_no, first = lines[0]
        raise ParseError(kind, "no QEMU binary (qemu-system-*) on any line", first_no, first)
    if pending is not None:
        raise _At(f"option {pending} without its argument (output cut?)", pending)
    netdevs: list[Netdev] = []
    devices: list[Device] = []
    memory: str | None = None
    name: str | None = None
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
            memory, memory_mib = arg, got if isinstance(got, int) else None
        elif opt == "-name":
            name = got if isinstance(got, str) else None
    return QemuCmdline(binary=binary, memory=memory, netdevs=netdevs, devices=devices,
                       memory_mib=memory_mib, name=name, env=env, options=options, unparsed=unparsed)


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

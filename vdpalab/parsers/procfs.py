"""/proc files and their usual front ends: ``/proc/meminfo`` (whole or grepped), ``/proc/cmdline``,
``/proc/mounts`` and ``lsmod`` (which prints /proc/modules)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from vdpalab.errors import ParseError
from vdpalab.parsers._common import Keeper, Unparsed, content_lines, is_noise, nothing_understood, to_int

MEMINFO = "meminfo"
CMDLINE = "cmdline"
MOUNTS = "mounts"
LSMOD = "lsmod"


# -------------------------------------------------------------------------------------- meminfo
@dataclass(frozen=True)
class Meminfo:
    """Fields by their exact names (``HugePages_Total``, ``Active(anon)``); kB values as ints of kB.

    ``units`` says which fields were in kB (counts such as HugePages_Total have no unit).
    """

    fields: dict[str, int]
    units: dict[str, str | None] = field(default_factory=dict)
    unparsed: list[Unparsed] = field(default_factory=list)

    def kib(self, name: str) -> int | None:
        """A kB field, or None when absent (a grepped paste may not have it)."""
        return self.fields.get(name) if self.units.get(name) == "kB" else None


_MEM_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_()]+):\s+(?P<value>\d+)(?: (?P<unit>kB))?\s*$")


def parse_meminfo(text: str) -> Meminfo:
    kind = MEMINFO
    fields: dict[str, int] = {}
    units: dict[str, str | None] = {}
    lines = content_lines(kind, text)
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            m = _MEM_LINE.match(line)
            if not m:
                raise ParseError(kind, "expected 'Name:   value [kB]'", line_no, line)
            name = m.group("name")
            if name in fields:
                raise ParseError(kind, f"{name} printed twice", line_no, line)
            fields[name] = int(m.group("value"))
            units[name] = m.group("unit")
    nothing_understood(kind, fields, keep)
    return Meminfo(fields=fields, units=units, unparsed=keep.unparsed)


# -------------------------------------------------------------------------------------- cmdline
@dataclass(frozen=True)
class Cmdline:
    """``/proc/cmdline`` as [KEY, VALUE or None] pairs, in order, repeats kept (the kernel uses the last)."""

    args: list[tuple[str, str | None]]
    unparsed: list[Unparsed] = field(default_factory=list)

    def last(self, key: str) -> str | None:
        """The value the kernel acts on for most parameters: the last one given."""
        for k, v in reversed(self.args):
            if k == key:
                return v
        return None

    def values(self, key: str) -> list[str | None]:
        return [v for k, v in self.args if k == key]

    def has(self, key: str) -> bool:
        """True when the key appears at all (a bare flag such as ``quiet`` or ``key=value``)."""
        return any(k == key for k, _ in self.args)

    def has_flag(self, key: str) -> bool:
        """True when the key appears as a bare flag (no '=')."""
        return any(k == key and v is None for k, v in self.args)


def parse_cmdline(text: str) -> Cmdline:
    """One line of space-separated parameters, double quotes allowed.

    /proc/cmdline always ends with a newline; a text without it is taken for a paste cut short,
    since a cut inside ``key=value`` would otherwise be read as a different, valid value.
    """
    kind = CMDLINE
    lines = content_lines(kind, text)
    if not text.endswith("\n"):
        line_no, line = lines[-1]
        raise ParseError(kind, "no final newline: /proc/cmdline always has one (output cut?)", line_no, line)
    while len(lines) > 1 and is_noise(lines[0][1]):  # `$ cat /proc/cmdline` pasted with it
        lines = lines[1:]
    line_no, line = lines[0]  # /proc/cmdline is one line: whatever follows was pasted with it
    if "\x00" in line:
        raise ParseError(kind, "NUL byte: this is /proc/PID/cmdline, not /proc/cmdline", line_no, line)
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.quotes = '"'
    lexer.escape = ""
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise ParseError(kind, f"unbalanced quote ({exc})", line_no, line) from None
    args: list[tuple[str, str | None]] = []
    for tok in tokens:
        key, eq, value = tok.partition("=")
        if not key:
            raise ParseError(kind, f"argument {tok!r} has no key", line_no, line)
        args.append((key, value if eq else None))
    return Cmdline(args=args, unparsed=[Unparsed(n, ln) for n, ln in lines[1:]])


# --------------------------------------------------------------------------------------- mounts
@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: list[str]
    dump: int
    passno: int

    def option(self, name: str) -> str | None:
        """'pagesize' -> '1024M' for 'pagesize=1024M'; '' for a bare option; None when absent."""
        for opt in self.options:
            k, eq, v = opt.partition("=")
            if k == name:
                return v if eq else ""
        return None


@dataclass(frozen=True)
class Mounts:
    mounts: list[Mount]
    unparsed: list[Unparsed] = field(default_factory=list)

    def of_type(self, fstype: str) -> list[Mount]:
        return [m for m in self.mounts if m.fstype == fstype]


def _unescape_mount(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mounts(text: str) -> Mounts:
    """``/proc/mounts`` lines: 6 fields each, octal escapes (\\040) decoded."""
    kind = MOUNTS
    out: list[Mount] = []
    lines = content_lines(kind, text)
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            f = line.split()
            if len(f) != 6:
                raise ParseError(kind, f"expected 6 fields, got {len(f)}", line_no, line)
            out.append(Mount(
                device=_unescape_mount(f[0]), mountpoint=_unescape_mount(f[1]), fstype=f[2],
                options=f[3].split(","), dump=to_int(kind, f[4], line_no, line, "dump"),
                passno=to_int(kind, f[5], line_no, line, "pass"),
            ))
    nothing_understood(kind, out, keep)
    return Mounts(mounts=out, unparsed=keep.unparsed)


# ---------------------------------------------------------------------------------------- lsmod
@dataclass(frozen=True)
class Module:
    size: int
    used_count: int | None
    used_by: list[str]


@dataclass(frozen=True)
class Lsmod:
    """``lsmod`` (header optional, so ``lsmod | grep vd`` parses too)."""

    modules: dict[str, Module]
    unparsed: list[Unparsed] = field(default_factory=list)


_LSMOD = re.compile(r"^(?P<name>\w+)\s+(?P<size>\d+)\s+(?P<count>-?\d+|-)(?:\s+(?P<by>\S+))?\s*$")


def parse_lsmod(text: str) -> Lsmod:
    kind = LSMOD
    mods: dict[str, Module] = {}
    lines = content_lines(kind, text)
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            if re.match(r"^Module\s+Size\s+Used by\s*$", line):
                continue
            m = _LSMOD.match(line)
            if not m:
                raise ParseError(kind, "expected 'name size count [users]'", line_no, line)
            by = m.group("by")
            users = [u for u in by.split(",") if u] if by and not by.startswith("[") else []
            if by and by.startswith("[") and not by.endswith("]"):
                raise ParseError(kind, "unterminated [flag] (output cut?)", line_no, line)
            count = m.group("count")
            mods[m.group("name")] = Module(size=int(m.group("size")), used_count=None if count == "-" else int(count),
                                           used_by=users)
    nothing_understood(kind, mods, keep)
    return Lsmod(modules=mods, unparsed=keep.unparsed)

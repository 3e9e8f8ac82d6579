"""``ls -l`` / ``ls -Fal`` listings of /dev and /sys (vhost-vdpa character devices, vdpa bus links).

``ls: cannot access 'X': No such file or directory`` is a real answer ("not there"), kept in
``missing``. A pasted snip marker (the seed's ``==== s n i p ====``) sets ``elided``: the listing
is then known to be partial, and a caller must not conclude that a name is absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vdpalab.errors import ParseError
from vdpalab.parsers._common import Keeper, Unparsed, content_lines, nothing_understood

LS_L = "ls-l"

_TYPES = {"-": "file", "d": "dir", "l": "link", "c": "char", "b": "block", "p": "fifo", "s": "socket"}


@dataclass(frozen=True)
class Entry:
    name: str
    type: str
    mode: str
    links: int
    owner: str
    group: str
    size: int | None
    major: int | None
    minor: int | None
    date: str
    target: str | None = None


@dataclass(frozen=True)
class Listing:
    total: int | None
    entries: list[Entry]
    missing: list[str] = field(default_factory=list)
    elided: bool = False
    unparsed: list[Unparsed] = field(default_factory=list)

    def get(self, name: str) -> Entry | None:
        for e in self.entries:
            if e.name == name:
                return e
        return None


_LS = re.compile(
    r"^(?P<mode>[-dlcbps][-rwxsStT]{9})(?P<acl>[.+@]?)\s+(?P<links>\d+)\s+(?P<owner>\S+)\s+(?P<group>\S+)\s+"
    r"(?:(?P<major>\d+),\s*(?P<minor>\d+)|(?P<size>\d+))\s+"
    r"(?P<date>\w{3}\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4}))\s(?P<rest>.+)$"
)
_MISSING = re.compile(r"^ls: cannot access '?(?P<path>.+?)'?: No such file or directory$")
_SNIP = re.compile(r"^=+\s*(?:s ?n ?i ?p|snip)\s*=+$", re.IGNORECASE)


def parse_ls_l(text: str) -> Listing:
    kind = LS_L
    total = None
    entries: list[Entry] = []
    missing: list[str] = []
    elided = False
    lines = content_lines(kind, text)
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            s = line.rstrip()
            if m := re.match(r"^total (\d+)$", s):
                total = int(m.group(1))
                continue
            if m := _MISSING.match(s):
                missing.append(m.group("path"))
                continue
            if _SNIP.match(s.strip()):
                elided = True
                continue
            m = _LS.match(s)
            if not m:
                raise ParseError(kind, "not an 'ls -l' line", line_no, line)
            mode = m.group("mode")
            typ = _TYPES[mode[0]]
            rest = m.group("rest")
            target = None
            if typ == "link":
                if " -> " not in rest:
                    raise ParseError(kind, "symlink without '-> target' (output cut?)", line_no, line)
                rest, target = rest.split(" -> ", 1)
                target = target.rstrip("@")
            name = rest
            # ls -F appends a type marker: '/' dir, '@' link, '*' executable, '|' fifo, '=' socket
            if name not in (".", "..", "./", "../") and len(name) > 1 and name[-1] in "/@*|=":
                name = name[:-1]
            if name in ("./", "../"):
                name = name[:-1]
            if typ in ("char", "block") and m.group("major") is None:
                raise ParseError(kind, "device node without 'major, minor'", line_no, line)
            entries.append(Entry(
                name=name, type=typ, mode=mode, links=int(m.group("links")), owner=m.group("owner"),
                group=m.group("group"), size=int(m.group("size")) if m.group("size") else None,
                major=int(m.group("major")) if m.group("major") else None,
                minor=int(m.group("minor")) if m.group("minor") else None,
                date=re.sub(r"\s+", " ", m.group("date")), target=target,
            ))
    nothing_understood(kind, entries or missing or total is not None, keep)
    return Listing(total=total, entries=entries, missing=missing, elided=elided, unparsed=keep.unparsed)

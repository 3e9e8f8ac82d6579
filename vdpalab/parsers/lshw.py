"""``lshw -businfo -c network``: a fixed-width table whose columns are found from the header.

The Device column is empty for functions without a netdev (a VF bound to no driver, a virtio PCI
function whose netdev shows on its own virtio@ row); an empty cell becomes "". A pasted header
glued after the shell prompt (as in the seed) is found by its "Bus info" text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vdpalab.errors import ParseError
from vdpalab.parsers._common import Keeper, Unparsed, content_lines, jsonable

LSHW = "lshw"


@dataclass(frozen=True)
class LshwRow:
    bus_info: str
    device: str
    class_: str
    description: str


@dataclass(frozen=True)
class LshwTable:
    rows: list[LshwRow]
    unparsed: list[Unparsed] = field(default_factory=list)

    def by_device(self, device: str) -> list[LshwRow]:
        return [r for r in self.rows if r.device == device]


def to_json(table: LshwTable) -> dict:
    """Rows with the 'class' key (``class_`` is only the Python spelling)."""
    return {"rows": [{"bus_info": r.bus_info, "device": r.device, "class": r.class_, "description": r.description}
                     for r in table.rows], "unparsed": jsonable(table.unparsed)}


# lshw's hardware classes (a paste cut inside the Class column fails on this set)
_CLASSES = {"system", "bridge", "memory", "processor", "address", "storage", "disk", "tape", "bus", "network",
            "display", "input", "printer", "multimedia", "communication", "power", "volume", "generic"}
_HEADER = re.compile(r"Bus info(\s+)Device(\s+)Class(\s+)Description\s*$")


def parse_lshw(text: str) -> LshwTable:
    kind = LSHW
    lines = content_lines(kind, text)
    head_no, head = lines[0]
    m = _HEADER.search(head)
    if not m:
        raise ParseError(kind, "expected the 'Bus info  Device  Class  Description' header", head_no, head)
    base = m.start()
    c_dev = len("Bus info") + len(m.group(1))
    c_cls = c_dev + len("Device") + len(m.group(2))
    c_desc = c_cls + len("Class") + len(m.group(3))
    body = lines[1:]
    rule = next((i for i, (_, ln) in enumerate(body) if re.fullmatch(r"=+", ln.strip())), None)
    if rule is None:
        no, ln = body[0] if body else (head_no, head)
        raise ParseError(kind, "expected the '=====' line under the header", no, ln)
    rows: list[LshwRow] = []
    del base  # rows start at column 0 even when the header was glued after a prompt
    lines = body[rule + 1:]
    keep = Keeper(lines, text)
    keep.unparsed += [Unparsed(n, ln) for n, ln in body[:rule]]  # between the header and its rule
    for line_no, line in lines:
        with keep.line(line_no, line):
            if len(line.rstrip()) < c_cls + 1 or line[c_dev - 1:c_dev] not in (" ", "") or line[c_cls - 1] != " ":
                raise ParseError(kind, "row does not fit the header's columns (output cut?)", line_no, line)
            bus = line[:c_dev].strip()
            dev = line[c_dev:c_cls].strip()
            cls = line[c_cls:c_desc].strip()
            desc = line[c_desc:].strip()
            if cls not in _CLASSES or (bus and " " in bus) or " " in dev:
                raise ParseError(kind, f"row does not fit the header's columns (class {cls!r})", line_no, line)
            if not desc:
                raise ParseError(kind, "row without a description (output cut?)", line_no, line)
            rows.append(LshwRow(bus_info=bus, device=dev, class_=cls, description=desc))
    return LshwTable(rows=rows, unparsed=keep.unparsed)

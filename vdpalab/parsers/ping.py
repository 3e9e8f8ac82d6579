"""``ping`` from iputils (old and new, flood mode included) and from BusyBox.

Only the summary is parsed strictly: a run without its '--- ping statistics ---' block was interrupted
or pasted short, and is reported as an error rather than as zero loss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vdpalab.errors import ParseError
from vdpalab.parsers._common import Keeper, Unparsed, content_lines, is_noise, normalize, numbered

PING = "ping"


@dataclass(frozen=True)
class PingStats:
    """The statistics block; None where this ping flavour (or this run) did not print the figure."""

    transmitted: int
    received: int
    duplicates: int | None
    errors: int | None
    loss_pct: float
    time_ms: int | None
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    rtt_mdev_ms: float | None
    ipg_ms: float | None
    ewma_ms: float | None
    pipe: int | None = None
    target: str | None = None
    flavour: str = "iputils"
    unparsed: list[Unparsed] = field(default_factory=list)


@dataclass(frozen=True)
class PingReply:
    """One echo reply line: ``64 bytes from X: icmp_seq=N ttl=T time=R ms [(DUP!)]``."""

    seq: int
    time_ms: float
    ttl: int | None
    source: str | None
    duplicate: bool
    line_no: int


_STATS_HEAD = re.compile(r"^--- (\S+) ping statistics ---$")
_TX = re.compile(
    r"^(?P<tx>\d+) packets transmitted, (?P<rx>\d+) (?:packets )?received"
    r"(?:, \+(?P<dup>\d+) duplicates)?(?:, (?P<bbdup>\d+) duplicates)?(?:, \+(?P<err>\d+) errors)?"
    r", (?P<loss>\d+(?:\.\d+)?)% packet loss(?:, time (?P<time>\d+)\s?ms)?$"
)
_NUM = r"\d+(?:\.\d+)?"
_RTT = re.compile(
    r"^(?:rtt|round-trip) min/avg/max(?P<mdev>/mdev|/stddev)? = "
    rf"(?P<min>{_NUM})/(?P<avg>{_NUM})/(?P<max>{_NUM})(?:/(?P<dev>{_NUM}))? ms"
    r"(?P<rest>(?:, .*)?)$"
)
_PIPE = re.compile(r"^pipe (\d+)$")
# what ping prints before its statistics besides replies: its header, errors per packet, warnings
_PROGRESS = re.compile(r"^(?:PING |From \S+ |Request timeout|WARNING: |ping: |no answer yet|\d+ bytes from )")
_IPG = re.compile(rf"^ipg/ewma ({_NUM})/({_NUM}) ms$")
_REPLY = re.compile(
    r"^\d+ bytes from (?P<src>[^:]+?)(?: \([^)]*\))?: (?:icmp_)?seq=(?P<seq>\d+)"
    rf"(?: ttl=(?P<ttl>\d+))?(?: hlim=\d+)? time[=<](?P<time>{_NUM}) ?ms(?P<dup> \(DUP!\))?"
)


def _extras(kind: str, rest: str, line_no: int, line: str) -> tuple[int | None, float | None, float | None]:
    pipe = ipg = ewma = None
    for part in [p.strip() for p in rest.split(",") if p.strip()]:
        if m := _PIPE.match(part):
            pipe = int(m.group(1))
        elif m := _IPG.match(part):
            ipg, ewma = float(m.group(1)), float(m.group(2))
        else:
            raise ParseError(kind, f"unknown statistics field {part!r} (output cut?)", line_no, line)
    return pipe, ipg, ewma


def parse_ping(text: str) -> PingStats:
    """Parse the summary of one ping run (reply lines, warnings and flood dots are skipped)."""
    kind = PING
    lines = content_lines(kind, text)
    head_idx = head = None
    for idx, (_, line) in enumerate(lines):
        if found := _STATS_HEAD.match(_strip_flood(line)):
            head_idx, head = idx, found
    if head_idx is None or head is None:
        last_no, last = lines[-1]
        raise ParseError(kind, "no '--- ping statistics ---' block (run interrupted or output cut?)", last_no, last)
    target = head.group(1)
    tail = lines[head_idx + 1:]
    if not tail:
        line_no, line = lines[head_idx]
        raise ParseError(kind, "statistics block ends after its header (output cut?)", line_no, line)
    unparsed = [Unparsed(n, ln) for n, ln in lines[:head_idx]
                if not (_PROGRESS.match(_strip_flood(ln)) or not _strip_flood(ln) or is_noise(ln))]
    first_tx = next((i for i, (_, ln) in enumerate(tail) if _TX.match(ln.strip())), 0)
    unparsed += [Unparsed(n, ln) for n, ln in tail[:first_tx]]  # between the header and its figures
    tail = tail[first_tx:]
    tx_no, tx_line = tail[0]
    m = _TX.match(tx_line.strip())
    if not m:
        raise ParseError(kind, "unrecognised 'packets transmitted' line", tx_no, tx_line)
    busybox = "packets received" in tx_line
    dup = m.group("dup") or m.group("bbdup")
    rtt: list[float | None] = [None, None, None, None]
    pipe = ipg = ewma = None
    keep = Keeper(tail, text)
    for line_no, line in tail[1:]:
        s = line.strip()
        with keep.line(line_no, line):
            if rm := _RTT.match(s):
                if busybox != s.startswith("round-trip"):
                    raise ParseError(kind, "rtt line of another ping flavour", line_no, line)
                p, i, e = _extras(kind, rm.group("rest"), line_no, line)
                rtt = [float(rm.group("min")), float(rm.group("avg")), float(rm.group("max")),
                       float(rm.group("dev")) if rm.group("dev") else None]
                pipe = p if p is not None else pipe
                ipg, ewma = (i, e) if i is not None else (ipg, ewma)
            elif _PIPE.match(s.split(",")[0].strip()):
                p, i, e = _extras(kind, s, line_no, line)
                pipe = p
                ipg, ewma = (i, e) if i is not None else (ipg, ewma)
            else:
                raise ParseError(kind, "unexpected line after the statistics (output cut or two runs?)", line_no,
                                 line)
    unparsed += keep.unparsed
    transmitted, received = int(m.group("tx")), int(m.group("rx"))
    if received > 0 and rtt[0] is None and not busybox:
        last_no, last = tail[-1]
        raise ParseError(kind, "replies were received but there is no rtt line (output cut?)", last_no, last)
    return PingStats(
        transmitted=transmitted,
        received=received,
        duplicates=int(dup) if dup else (None if busybox else 0),
        errors=int(m.group("err")) if m.group("err") else (None if busybox else 0),
        loss_pct=float(m.group("loss")),
        time_ms=int(m.group("time")) if m.group("time") else None,
        rtt_min_ms=rtt[0],
        rtt_avg_ms=rtt[1],
        rtt_max_ms=rtt[2],
        rtt_mdev_ms=rtt[3],
        ipg_ms=ipg,
        ewma_ms=ewma,
        pipe=pipe,
        target=target,
        flavour="busybox" if busybox else "iputils",
        unparsed=unparsed,
    )


def _strip_flood(line: str) -> str:
    """Flood mode prints '.' and backspaces on the line where the summary then starts."""
    if "\b" in line or line.startswith("."):
        line = re.sub(r"^[.\b \x08]*", "", line)
    return line.strip()


def parse_ping_replies(text: str) -> list[PingReply]:
    """Every echo reply line, in order, for latency distributions (DUP! replies kept and flagged)."""
    out: list[PingReply] = []
    for line_no, line in numbered(normalize(text)):
        m = _REPLY.match(line.strip())
        if m:
            out.append(PingReply(
                seq=int(m.group("seq")),
                time_ms=float(m.group("time")),
                ttl=int(m.group("ttl")) if m.group("ttl") else None,
                source=m.group("src"),
                duplicate=bool(m.group("dup")),
                line_no=line_no,
            ))
    return out


def reply_rtts_ms(text: str, *, include_duplicates: bool = False) -> list[float]:
    """Per-packet round-trip times in ms, from the reply lines."""
    return [r.time_ms for r in parse_ping_replies(text) if include_duplicates or not r.duplicate]

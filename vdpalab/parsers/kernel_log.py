"""Kernel and system logs: ``dmesg`` (monotonic ``[ 1406.187977]``), ``dmesg -T``, syslog files,
``journalctl`` short / short-iso / short-precise and ``-o json``; plus the vDPA events found in them.

Lines are read one by one, each in whichever of these formats it is written, so a /var/log/messages
with a pasted dmesg excerpt still parses. An indented line continues the record before it (a
multi-line printk such as amd_pstate's "... disabled by the BIOS." + "    Please enable it ...", or
journalctl's continuation of a multi-line message). Any other line in none of the formats is kept in
``unparsed`` with its number; only a text with no log record at all is a ParseError. Mail-wrapped
dmesg pastes (continuations not indented) are repaired explicitly with :func:`unwrap_mail_wrapped`:
guessing which unindented line continues which would hide real corruption.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field, replace

from vdpalab.errors import ParseError
from vdpalab.parsers._common import Unparsed, normalize

KERNEL_LOG = "kernel-log"


@dataclass(frozen=True)
class LogRecord:
    """One record. ``time`` is as printed (seconds since boot for plain dmesg, a date otherwise;
    an ISO-8601 UTC time for journal JSON); ``mono_s`` is the monotonic time when known."""

    time: str | None
    host: str | None
    ident: str | None
    message: str
    pid: int | None = None
    mono_s: float | None = None
    line_no: int | None = None


@dataclass(frozen=True)
class VdpaEvent:
    """A vDPA driver event; ``kind`` is one of :data:`VDPA_EVENT_KINDS`."""

    kind: str
    pci: str | None
    time: str | None
    message: str
    function: str | None = None
    pid: int | None = None
    line_no: int | None = None


@dataclass(frozen=True)
class KernelLog:
    """Records, the vDPA events among them, and OVS's harmless flow-key errors (classified, not failed)."""

    records: list[LogRecord]
    vdpa_events: list[VdpaEvent] = field(default_factory=list)
    ovs_flow_key_errors: list[LogRecord] = field(default_factory=list)
    unparsed: list[Unparsed] = field(default_factory=list)

    def events(self, kind: str) -> list[VdpaEvent]:
        return [e for e in self.vdpa_events if e.kind == kind]


VDPA_EVENT_KINDS = (
    "device_reset", "memory_map_update", "map_failed", "resume_failed", "suspend_failed", "mr_leak",
    "vq_modify_error", "cmd_timeout", "other",
)

_DMESG = re.compile(r"^\[\s*(\d+\.\d+)\] ?(.*)$")
_DMESG_T = re.compile(r"^\[((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\] ?(.*)$")
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_IDENT = r"(?P<ident>[^\s\[\]:]+)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)$"
_SYSLOG = re.compile(rf"^(?P<time>(?:{_MONTHS}) [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?) (?P<host>\S+) {_IDENT}")
_ISO = re.compile(
    rf"^(?P<time>\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?) (?P<host>\S+) {_IDENT}"
)
_JOURNAL_MARK = re.compile(r"^-- (?:Logs begin at|Journal begins at|No entries|Boot |Reboot|Logs end)")

# "mlx5_core 0000:07:00.2: mlx5_vdpa_set_status:1786:(pid 5077): performing device reset"
_MLX5 = re.compile(
    r"^(?:(?P<drv>\w+) )?(?P<pci>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]): "
    r"(?P<func>\w+):(?P<line>\d+):\(pid (?P<pid>\d+)\):?(?: (?P<level>\w+):)? ?(?P<text>.*)$"
)
_VDPA_FUNCS = re.compile(r"^(?:mlx5_vdpa_\w+|mlx5v_\w+|modify_virtqueues?|setup_vq|teardown_vq|suspend_vqs?|"
                         r"resume_vqs?|setup_driver|teardown_driver|\w*vdpa\w*)$")
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("device_reset", re.compile(r"performing device reset")),
    ("memory_map_update", re.compile(r"memory map update")),
    ("map_failed", re.compile(r"(?:map\w*|mr|dma_map)\b.*\bfail|fail\w*\b.*\bmap", re.IGNORECASE)),
    ("resume_failed", re.compile(r"fail\w* to resume", re.IGNORECASE)),
    ("suspend_failed", re.compile(r"fail\w* to suspend", re.IGNORECASE)),
    ("mr_leak", re.compile(r"mkey still alive|mr leak", re.IGNORECASE)),
    ("vq_modify_error", re.compile(r"modify vq \d+ failed|modify virtqueue", re.IGNORECASE)),
    ("cmd_timeout", re.compile(r"timeout", re.IGNORECASE)),
)
_OVS_FLOW_KEY = "internal error parsing flow key"


def unwrap_mail_wrapped(text: str) -> str:
    """Repair a dmesg paste that a mail client wrapped: join every line not starting with '[' to the
    previous one with a single space. Use it only on text known to be mail-wrapped dmesg."""
    out: list[str] = []
    for line in normalize(text).split("\n"):
        if not line.strip():
            continue
        if line.startswith("[") or not out:
            out.append(line.rstrip())
        else:
            out[-1] = out[-1] + " " + line.strip()
    return "\n".join(out) + "\n"


def is_ovs_flow_key_error(message: str) -> bool:
    """OVS-DPDK logs 'internal error parsing flow key' for IGMP multicast it cannot offload; harmless."""
    return _OVS_FLOW_KEY in message


def classify_vdpa(message: str) -> tuple[str, str | None, str | None, int | None] | None:
    """(kind, pci, function, pid) when the message is an mlx5_vdpa event, else None."""
    m = _MLX5.match(message)
    if not m:
        return None
    func, text = m.group("func"), m.group("text")
    is_vdpa = bool(_VDPA_FUNCS.match(func)) or (func == "cb_timeout_handler" and "GENERAL_OBJECT" in text)
    if not is_vdpa:
        return None
    for kind, rx in _RULES:
        if rx.search(text):
            return kind, m.group("pci").lower(), func, int(m.group("pid"))
    return "other", m.group("pci").lower(), func, int(m.group("pid"))


def _journal_json(line_no: int, line: str) -> LogRecord | None:
    """A ``journalctl -o json`` line as a record; None when it is not one (the caller keeps it unparsed)."""
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(rec, dict) or "MESSAGE" not in rec:
        return None
    msg = rec["MESSAGE"]
    if isinstance(msg, list) and all(isinstance(b, int) and 0 <= b < 256 for b in msg):
        msg = bytes(msg).decode("utf-8", "replace")  # journald's encoding of non-UTF-8 payloads
    if not isinstance(msg, str):
        return None
    when = None
    rt = rec.get("__REALTIME_TIMESTAMP")
    if isinstance(rt, str) and rt.isdigit():
        try:
            when = dt.datetime.fromtimestamp(int(rt) / 1e6, tz=dt.UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            when = None  # out of range: the record stands, its time is unknown
    mono = rec.get("_SOURCE_MONOTONIC_TIMESTAMP") or rec.get("__MONOTONIC_TIMESTAMP")
    pid = rec.get("_PID")
    ident = rec.get("SYSLOG_IDENTIFIER") or rec.get("_COMM")
    host = rec.get("_HOSTNAME")
    return LogRecord(
        time=when, host=host if isinstance(host, str) else None, ident=ident if isinstance(ident, str) else None,
        message=msg, pid=int(pid) if isinstance(pid, str) and pid.isdigit() else None,
        mono_s=int(mono) / 1e6 if isinstance(mono, str) and mono.isdigit() else None, line_no=line_no,
    )


def parse_kernel_log(text: str) -> KernelLog:
    kind = KERNEL_LOG
    records: list[LogRecord] = []
    unparsed: list[Unparsed] = []
    body = normalize(text)
    if not body.strip():
        raise ParseError(kind, "empty input")
    for line_no, line in enumerate(body.split("\n"), start=1):
        if not line.strip():
            continue
        c = line[0]
        if c in " \t":
            if records and (not unparsed or unparsed[-1].line < (records[-1].line_no or 0)):
                last = records[-1]  # the line before (or its continuation) was this record
                records[-1] = replace(last, message=f"{last.message}\n{line.strip()}")
            else:
                unparsed.append(Unparsed(line_no, line))
            continue
        if c == "[":
            if m := _DMESG.match(line):
                records.append(LogRecord(time=m.group(1), host=None, ident="kernel", message=m.group(2),
                                         mono_s=float(m.group(1)), line_no=line_no))
                continue
            if m := _DMESG_T.match(line):
                records.append(LogRecord(time=m.group(1), host=None, ident="kernel", message=m.group(2),
                                         line_no=line_no))
                continue
        elif c == "{":
            if (rec := _journal_json(line_no, line)) is not None:
                records.append(rec)
                continue
        elif c.isdigit():
            if m := _ISO.match(line):
                records.append(_syslog_record(m, line_no))
                continue
        elif c == "-" and _JOURNAL_MARK.match(line):
            continue
        elif m := _SYSLOG.match(line):
            records.append(_syslog_record(m, line_no))
            continue
        unparsed.append(Unparsed(line_no, line))
    if not records and unparsed:
        first = unparsed[0]
        raise ParseError(kind, "not a dmesg, syslog or journalctl log: no line is a log record", first.line,
                         first.text)
    events: list[VdpaEvent] = []
    flow_key: list[LogRecord] = []
    for r in records:
        if is_ovs_flow_key_error(r.message):
            flow_key.append(r)
            continue
        if "vdpa" in r.message or "cb_timeout_handler" in r.message or "modify_virtqueue" in r.message:
            hit = classify_vdpa(r.message)
            if hit:
                ek, pci, func, pid = hit
                events.append(VdpaEvent(kind=ek, pci=pci, time=r.time, message=r.message, function=func, pid=pid,
                                        line_no=r.line_no))
    return KernelLog(records=records, vdpa_events=events, ovs_flow_key_errors=flow_key, unparsed=unparsed)


def _syslog_record(m: re.Match[str], line_no: int) -> LogRecord:
    pid = m.group("pid")
    return LogRecord(time=m.group("time"), host=m.group("host"), ident=m.group("ident"), message=m.group("msg"),
                     pid=int(pid) if pid else None, line_no=line_no)


def to_json(log: KernelLog) -> dict:
    """Records without their line numbers (those are for error messages and tests)."""
    def rec(r: LogRecord) -> dict:
        return {"time": r.time, "host": r.host, "ident": r.ident, "pid": r.pid, "mono_s": r.mono_s,
                "message": r.message}

    return {
        "records": [rec(r) for r in log.records],
        "vdpa_events": [{"kind": e.kind, "pci": e.pci, "time": e.time, "function": e.function, "pid": e.pid,
                         "message": e.message} for e in log.vdpa_events],
        "ovs_flow_key_errors": [{"time": r.time, "message": r.message, "harmless": True}
                                for r in log.ovs_flow_key_errors],
        "unparsed": [{"line": u.line, "text": u.text} for u in log.unparsed],
    }

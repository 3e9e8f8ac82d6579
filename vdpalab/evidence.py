"""Evidence that the vDPA datapath really came up: the kernel log since a marker, and vq counters.

The seed's proof is two mlx5_vdpa lines per VF when a guest starts::

    mlx5_core 0000:07:00.2: mlx5_vdpa_set_status:1786:(pid 5077): performing device reset
    mlx5_core 0000:07:00.2: mlx5_vdpa_handle_set_map:473:(pid 5086): memory map update

"memory map update" is the essential one (no map, no traffic), but newer kernels
no longer print it. Where it is absent the virtqueue counters stand in:
``vdpa dev vstats show vdpaN qidx Q`` (received_desc / completed_desc) must rise
while traffic flows. The verdict says which evidence it used.

OVS logs ``internal error parsing flow key`` for IGMP multicast in the seed; the
seed calls it harmless and so does this module (``is_harmless_ovs_line``).

Layout: ``take_marker`` / ``read_kernel_log`` / ``read_vstats`` touch a host;
everything else is a pure function over parsed records (the ``kernel-log`` and
``vdpa-vstats`` parsers of ``vdpalab.parsers``), self-tested against the seed's log
and recorded real logs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from vdpalab.errors import HostError, ParseError
from vdpalab.hosts.base import Host
from vdpalab.parsers._common import Unparsed
from vdpalab.parsers.kernel_log import LogRecord, VdpaEvent, parse_kernel_log
from vdpalab.parsers.vdpa import VqStats, parse_vdpa_vstats

MarkerKind = Literal["journal", "dmesg", "start"]


# ------------------------------------------------------------------------------------------ markers
@dataclass(frozen=True)
class LogMarker:
    """Where "now" is in a host's kernel log, so later reads return only what came after.

    ``journal``: a journald cursor; ``dmesg``: the last dmesg timestamp (seconds since
    boot); ``start``: no marker could be taken (or none was), read from the start of
    the log (the current boot).
    """

    kind: MarkerKind
    value: str | float | None = None
    host: str = ""
    note: str = ""

    @classmethod
    def start(cls, host: str = "", note: str = "no marker taken: reading from the start of the log") -> LogMarker:
        return cls("start", None, host, note)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogMarker:
        kind = data.get("kind")
        if kind not in ("journal", "dmesg", "start"):
            raise ValueError(f"not a log marker: kind={kind!r}")
        return cls(kind, data.get("value"), str(data.get("host", "")), str(data.get("note", "")))

    def describe(self) -> str:
        if self.kind == "journal":
            return f"journal cursor {self.value}"
        if self.kind == "dmesg":
            return f"dmesg after [{float(self.value or 0):.6f}]"
        return "start of the log"


_CURSOR_RE = re.compile(r"^-- cursor: (\S+)\s*$", re.MULTILINE)
_DMESG_TS_RE = re.compile(r"^\[\s*(\d+\.\d+)\]")


def parse_cursor(text: str) -> str | None:
    """The cursor journalctl --show-cursor printed, if any ('-- No entries --' has none)."""
    m = _CURSOR_RE.search(text)
    return m.group(1) if m else None


def last_dmesg_timestamp(text: str) -> float | None:
    """The timestamp of the last ``[ seconds]`` line of plain ``dmesg``."""
    for line in reversed(text.splitlines()):
        m = _DMESG_TS_RE.match(line)
        if m:
            return float(m.group(1))
    return None


JOURNAL_CURSOR = "journalctl --show-cursor -n 0 -o short --no-pager"
DMESG_LAST = "dmesg | tail -n 1"


def take_marker(host: Host, timeout: float | None = None) -> LogMarker:
    """Mark the end of the kernel log now; call before the guests start (before bring-up).

    Tries journald (``journalctl --show-cursor -n 0 -o short``), then the last
    dmesg timestamp, then gives a ``start`` marker with the reason. Never raises
    for a missing tool; a host that cannot be reached raises ``HostError``.
    """
    timeout = host.quick_timeout if timeout is None else timeout
    notes: list[str] = []
    host.prefetch([JOURNAL_CURSOR, DMESG_LAST], timeout=timeout)  # one round trip where the host batches reads
    result = host.run(JOURNAL_CURSOR, timeout=timeout)
    cursor = parse_cursor(result.stdout)
    if cursor:
        return LogMarker("journal", cursor, host.name)
    notes.append(f"journalctl gave no cursor ({(result.stdout + result.stderr).strip()[:120] or f'rc={result.rc}'})")
    result = host.run(DMESG_LAST, timeout=timeout)
    if result.ok:
        ts = last_dmesg_timestamp(result.stdout)
        if ts is not None:
            return LogMarker("dmesg", ts, host.name, "; ".join(notes))
        if not result.stdout.strip():
            return LogMarker("dmesg", 0.0, host.name, "; ".join([*notes, "dmesg ring buffer empty"]))
    notes.append(f"dmesg unreadable ({result.stderr.strip()[:120] or f'rc={result.rc}'})")
    return LogMarker.start(host.name, "; ".join(notes))


def kernel_log_command(marker: LogMarker) -> str:
    """The shell command that prints the kernel log since ``marker`` (dmesg is filtered afterwards)."""
    if marker.kind == "journal":
        return f"journalctl -k --no-pager -o short-precise --after-cursor={shlex.quote(str(marker.value))}"
    if marker.kind == "dmesg":
        return "dmesg"
    return "journalctl -k -b --no-pager -o short-precise 2>/dev/null | grep -v '^-- No entries --$' || dmesg"


@dataclass(frozen=True)
class KernelLogSlice:
    """What was read since a marker: the command, its text, and the parsed records and events.

    Parsing is the ``kernel-log`` parser's (``vdpalab.parsers.kernel_log``): records in any of
    dmesg / dmesg -T / syslog / journalctl formats, the mlx5_vdpa events among them, and OVS's
    flow-key errors set aside as harmless.
    """

    marker: LogMarker
    command: str
    text: str
    records: list[LogRecord]
    events: list[VdpaEvent]
    unparsed: list[Unparsed] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.marker.describe()


def records_after(records: Iterable[LogRecord], marker: LogMarker) -> list[LogRecord]:
    """Apply a dmesg marker (journal cursors are applied by journalctl itself)."""
    if marker.kind != "dmesg":
        return list(records)
    after = float(marker.value or 0.0)
    return [r for r in records if r.mono_s is None or r.mono_s > after]


def split_since(text: str, marker: LogMarker) -> tuple[list[LogRecord], list[VdpaEvent], list[Unparsed]]:
    """Records, vDPA events and the lines not understood, after ``marker``.

    Never raises: a log with no record at all (an error message in place of a log, a format
    nobody expected) is no records plus every line kept as not understood, so the evidence is
    judged (and fails with those lines in its message) instead of the check crashing.
    """
    if not text.strip():
        return [], [], []
    try:
        log = parse_kernel_log(text)
    except ParseError:
        return [], [], [Unparsed(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    records = records_after(log.records, marker)
    kept = {r.line_no for r in records}
    dropped = [r.line_no or 0 for r in log.records if r.line_no not in kept]
    after = max(dropped, default=0)
    return records, [e for e in log.vdpa_events if e.line_no in kept], [u for u in log.unparsed if u.line > after]


def parse_since(text: str, marker: LogMarker) -> tuple[list[LogRecord], list[VdpaEvent]]:
    """Parse a kernel log and keep what came after ``marker``; an empty log is no records, not an error."""
    records, events, _ = split_since(text, marker)
    return records, events


def read_kernel_log(host: Host, marker: LogMarker, timeout: float = 20.0) -> KernelLogSlice:
    """The host's kernel log since ``marker``; raises HostError when it cannot be read at all."""
    command = kernel_log_command(marker)
    result = host.run(command, timeout=timeout)
    if not result.ok and not result.stdout.strip():
        why = result.stderr.strip()[-300:]
        raise HostError(host.name, command, f"cannot read the kernel log (rc={result.rc}): {why}")
    records, events, unparsed = split_since(result.stdout, marker)
    return KernelLogSlice(marker, command, result.stdout, records, events, unparsed)


# event kinds of the kernel-log parser that say something went wrong on a VF (reported, not judged)
PROBLEM_KINDS = ("map_failed", "resume_failed", "suspend_failed", "mr_leak", "vq_modify_error", "cmd_timeout")

_HARMLESS_OVS = re.compile(r"internal error parsing flow key .*(?:proto=2\b|dst=224\.0\.0\.)")


def is_harmless_ovs_line(line: str) -> bool:
    """The seed's 'internal error parsing flow key' for IGMP multicast (proto=2, 224.0.0.x): harmless.

    Stricter than the parser's ``is_ovs_flow_key_error``: only the seed's IGMP case is excused here.
    """
    return bool(_HARMLESS_OVS.search(line))


def vstats_argv(device: str, qidx: int) -> list[str]:
    return ["vdpa", "-j", "dev", "vstats", "show", device, "qidx", str(qidx)]


def read_vstats(host: Host, device: str, qidx: int, timeout: float | None = None) -> VqStats | str:
    """The counters (``vdpa-vstats`` parser), or a string saying why they are unavailable
    (old iproute2 without ``vstats``, a driver without vendor stats, an unreadable output)."""
    timeout = host.quick_timeout if timeout is None else timeout
    argv = vstats_argv(device, qidx)
    try:
        result = host.run(argv, timeout=timeout)
    except HostError as exc:
        return f"{device} qidx {qidx}: {exc}"
    if not result.ok:
        why = (result.stderr or result.stdout).strip()[-200:] or f"rc={result.rc}"
        return f"{device} qidx {qidx}: `{' '.join(argv)}` failed: {why}"
    try:
        stats = parse_vdpa_vstats(result.stdout)
    except ParseError as exc:
        return f"{device} qidx {qidx}: {exc}"
    vq = stats.devs.get(device)
    if vq is None:
        return f"{device} qidx {qidx}: the output names {sorted(stats.devs)}, not {device}"
    return vq


# ----------------------------------------------------------------------------------------- verdict
EvidenceSource = Literal["kernel-log", "vstats", "none"]

VSTATS_QUEUES = (0, 1)  # receiveq1 and transmitq1


@dataclass(frozen=True)
class VdpaDeviceRef:
    """A vdpa device as the lab declares it: its name (for vstats) and the VF it sits on (for the log)."""

    name: str
    vf_pci: str


@dataclass
class DeviceEvidence:
    device: VdpaDeviceRef
    resets: list[VdpaEvent] = field(default_factory=list)
    map_updates: list[VdpaEvent] = field(default_factory=list)
    problems_seen: list[VdpaEvent] = field(default_factory=list)  # mlx5_vdpa warnings/errors for this VF
    vstats: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)  # qidx -> (recv Δ, completed Δ)
    vstats_unavailable: str | None = None
    source: EvidenceSource = "none"
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def summary(self) -> str:
        name = f"{self.device.name} (VF {self.device.vf_pci})"
        if self.failure:
            return f"{name}: FAILED: {self.failure}"
        if self.source == "kernel-log":
            return (f"{name}: kernel log shows {len(self.resets)} device reset(s) and "
                    f"{len(self.map_updates)} memory map update(s)")
        rising = ", ".join(f"qidx {q}: received_desc +{r}, completed_desc +{c}" for q, (r, c) in self.vstats.items())
        return (f"{name}: {len(self.resets)} device reset(s) logged; no 'memory map update' line (newer kernels "
                f"omit it), vq counters rose during traffic ({rising})")


@dataclass
class EvidenceReport:
    devices: list[DeviceEvidence]
    marker: str
    harmless_ovs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.devices) and all(d.ok for d in self.devices)

    @property
    def sources(self) -> list[str]:
        return sorted({d.source for d in self.devices})

    @property
    def source(self) -> str:
        """'kernel-log', 'vstats', 'kernel-log+vstats' (mixed per device) or 'none'."""
        used = [s for s in self.sources if s != "none"]
        return "+".join(used) if used else "none"

    def warnings(self) -> list[str]:
        out = []
        for dev in self.devices:
            for ev in dev.problems_seen:
                text = ev.message.split("):", 1)[-1].strip() if "(pid " in ev.message else ev.message
                out.append(f"{dev.device.vf_pci}: {ev.function}: {ev.kind}: {text}")
        return out

    def message(self) -> str:
        head = (f"vDPA evidence from {self.source} (log since {self.marker})" if self.ok
                else f"vDPA evidence missing (log since {self.marker})")
        lines = [head, *(f"  {d.summary()}" for d in self.devices)]
        if not self.devices:
            lines.append("  the lab declares no vdpa devices")
        warnings = self.warnings()
        if warnings:
            lines.append(f"  mlx5 warnings/errors on these VFs ({len(warnings)}, reported, not judged):")
            lines += [f"    {w}" for w in warnings[:20]]
        if self.harmless_ovs:
            lines.append(f"  ignored {len(self.harmless_ovs)} harmless OVS 'internal error parsing flow key' "
                         "line(s) for IGMP (the seed's known case)")
        return "\n".join(lines)


def needs_vstats(devices: Sequence[VdpaDeviceRef], events: Sequence[VdpaEvent]) -> list[VdpaDeviceRef]:
    """The devices whose VF has no 'memory map update' line: their evidence must come from vq counters."""
    mapped = {e.pci for e in events if e.kind == "memory_map_update"}
    return [d for d in devices if d.vf_pci.lower() not in mapped]


def judge_vdpa_evidence(
    devices: Sequence[VdpaDeviceRef],
    events: Sequence[VdpaEvent],
    vstats_before: Mapping[tuple[str, int], VqStats | str] | None = None,
    vstats_after: Mapping[tuple[str, int], VqStats | str] | None = None,
    *,
    queues: Sequence[int] = VSTATS_QUEUES,
    marker: str = "start of the log",
    ovs_lines: Iterable[str] = (),
) -> EvidenceReport:
    """Per VF: a device reset is required; then a memory map update, or else vq counters that rose.

    ``events`` are the kernel-log parser's vDPA events since the marker. ``vstats_before``/
    ``after`` map (device, qidx) to counters (the vdpa-vstats parser's ``VqStats``), or to
    the reason they are unavailable. mlx5_vdpa warnings and errors on the VF are reported,
    not judged (the traffic tests judge the datapath itself).
    """
    report = EvidenceReport([], marker, [ln for ln in ovs_lines if is_harmless_ovs_line(ln)])
    for dev in devices:
        pci = dev.vf_pci.lower()
        ev = DeviceEvidence(dev)
        mine = [e for e in events if e.pci == pci]
        ev.resets = [e for e in mine if e.kind == "device_reset"]
        ev.map_updates = [e for e in mine if e.kind == "memory_map_update"]
        ev.problems_seen = [e for e in mine if e.kind in PROBLEM_KINDS]
        report.devices.append(ev)
        if not ev.resets:
            ev.failure = (f"no 'performing device reset' from mlx5_vdpa for VF {dev.vf_pci} since the marker "
                          "(the guest did not start on this VF, or it started before the marker)")
            continue
        if ev.map_updates:
            ev.source = "kernel-log"
            continue
        before, after = vstats_before or {}, vstats_after or {}
        unavailable = []
        for q in queues:
            b, a = before.get((dev.name, q)), after.get((dev.name, q))
            if isinstance(b, str) or isinstance(a, str) or b is None or a is None:
                unavailable.append(b if isinstance(b, str) else a if isinstance(a, str) else f"qidx {q} not read")
                continue
            recv = None if a.received_desc is None or b.received_desc is None else a.received_desc - b.received_desc
            done = None if a.completed_desc is None or b.completed_desc is None else a.completed_desc - b.completed_desc
            ev.vstats[q] = (recv, done)
        if unavailable:
            ev.vstats_unavailable = "; ".join(unavailable)
            ev.failure = ("no 'memory map update' line for this VF and the vq counters are unavailable: "
                          + ev.vstats_unavailable)
            continue
        flat = [(q, r, c) for q, (r, c) in ev.vstats.items() if not (r and r > 0 and c and c > 0)]
        if flat:
            detail = ", ".join(f"qidx {q}: received_desc {'+' if r is not None else ''}{r}, "
                               f"completed_desc {'+' if c is not None else ''}{c}" for q, r, c in flat)
            ev.failure = f"no 'memory map update' line and the vq counters did not rise during traffic ({detail})"
            continue
        ev.source = "vstats"
    return report


# ------------------------------------------------------------------------- the vDPA bus and the OVS port
@dataclass(frozen=True)
class BusFacts:
    """One device as the vdpa tool and sysfs show it (``vdpa -j dev show/config show``, the driver link)."""

    device: str
    mgmtdev: str | None
    driver: str | None
    negotiated_features: tuple[str, ...]
    problems: tuple[str, ...] = ()  # commands that failed or printed what the parsers could not read


def bus_facts_reads(device: str) -> list[list[str]]:
    """The commands ``read_bus_facts`` runs (for a caller that prefetches them with other reads)."""
    return [["vdpa", "-j", "dev", "show", device], ["vdpa", "-j", "dev", "config", "show", device],
            ["readlink", f"/sys/bus/vdpa/devices/{device}/driver"]]  # fmt: skip


def read_bus_facts(host: Host, device: str, timeout: float | None = None) -> BusFacts:
    """What the bus says about ``device`` now (read after the guest driver came up: features are negotiated)."""
    timeout = host.quick_timeout if timeout is None else timeout
    from vdpalab.parsers.vdpa import parse_vdpa_config, parse_vdpa_dev

    problems: list[str] = []
    mgmtdev = driver = None
    features: tuple[str, ...] = ()
    show_argv, config_argv, link_argv = bus_facts_reads(device)
    host.prefetch([show_argv, config_argv, link_argv], timeout=timeout)
    shown = host.run(show_argv, timeout=timeout)
    try:
        dev = parse_vdpa_dev(shown.stdout).devs.get(device) if shown.ok else None
        mgmtdev = dev.mgmtdev if dev else None
    except ParseError as exc:
        problems.append(f"vdpa -j dev show {device}: {exc}")
    if not shown.ok:
        problems.append(f"vdpa -j dev show {device} rc={shown.rc}: {shown.stderr.strip()[:160]}")
    config = host.run(config_argv, timeout=timeout)
    try:
        conf = parse_vdpa_config(config.stdout).devs.get(device) if config.ok else None
        features = tuple(conf.negotiated_features) if conf else ()
    except ParseError as exc:
        problems.append(f"vdpa -j dev config show {device}: {exc}")
    link = host.run(link_argv, timeout=timeout)
    if link.ok and link.stdout.strip():
        driver = link.stdout.strip().rstrip("/").rsplit("/", 1)[-1]
    return BusFacts(device, mgmtdev, driver, features, tuple(problems))


@dataclass(frozen=True)
class PortFacts:
    """The OVS interface that carries the device's traffic: its ``status`` and ``statistics`` columns."""

    port: str
    status: dict[str, str]
    statistics: dict[str, str]


def port_facts_reads(port: str) -> list[list[str]]:
    """The commands ``read_port_facts`` runs (for a caller that prefetches them with other reads)."""
    from vdpalab.parsers.ovs import vsctl_list_argv

    return [vsctl_list_argv([("Interface", ("name", "status", "statistics"))], record=port)]


def read_port_facts(host: Host, port: str, timeout: float | None = None) -> PortFacts:
    """Both columns from one ``ovs-vsctl --format=json list Interface PORT``; values as text, as ``get`` printed
    them. A port OVS does not have (or an unreadable answer) gives empty maps: the judge then finds nothing held."""
    timeout = host.quick_timeout if timeout is None else timeout
    from vdpalab.parsers.ovs import ovsdb_row, ovsdb_text_map

    (argv,) = port_facts_reads(port)
    result = host.run(argv, timeout=timeout)
    try:
        row = ovsdb_row(result.stdout) if result.ok else {}
    except ParseError:
        row = {}
    return PortFacts(port, ovsdb_text_map(row.get("status")), ovsdb_text_map(row.get("statistics")))


def guest_tx_packets(host: Host, interface: str, timeout: float | None = None) -> int | None:
    """The guest interface's transmitted-packet counter (what the guest sent into the device)."""
    timeout = host.quick_timeout if timeout is None else timeout
    result = host.run(["cat", f"/sys/class/net/{interface}/statistics/tx_packets"], timeout=timeout)
    text = result.stdout.strip()
    return int(text) if result.ok and text.isdigit() else None


def _counter(stats: Mapping[str, str], key: str) -> int | None:
    value = stats.get(key, "")
    return int(value) if value.isdigit() else None


@dataclass
class BusEvidence:
    """One device's verdict from the bus (mgmtdev, binding, negotiated features) and its OVS port."""

    device: str
    held: list[str] = field(default_factory=list)  # which evidence held: "vdpa-bus", "ovs-port", ...
    details: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and "vdpa-bus" in self.held and len(self.held) > 1

    def summary(self) -> str:
        state = "ok" if self.ok else "FAILED: " + "; ".join(self.failures or ["no datapath evidence held"])
        return f"{self.device}: {state} (evidence: {', '.join(self.held) or 'none'}; {'; '.join(self.details)})"


def port_rx_delta(before: PortFacts, after: PortFacts) -> int | None:
    """The packets the OVS port received between two reads (None when either read lacks the counter)."""
    rx_b, rx_a = _counter(before.statistics, "rx_packets"), _counter(after.statistics, "rx_packets")
    return None if rx_a is None or rx_b is None else rx_a - rx_b


def judge_bus_evidence(
    device: str,
    *,
    mgmtdev: str,
    driver: str,
    bus: BusFacts,
    port_before: PortFacts | None,
    port_after: PortFacts | None,
    guest_sent: int | None,
) -> BusEvidence:
    """The device sits on ``mgmtdev``, is bound to ``driver`` and negotiated features; its OVS port is connected
    (where OVS reports a connection status) and received at least the packets the guest sent through the device.
    """
    ev = BusEvidence(device)
    bus_ok = True
    if bus.mgmtdev != mgmtdev:
        ev.failures.append(f"on mgmtdev {bus.mgmtdev}, the lab wants {mgmtdev}")
        bus_ok = False
    if bus.driver != driver:
        ev.failures.append(f"bound to {bus.driver or 'no driver'}, the lab wants {driver}")
        bus_ok = False
    if not bus.negotiated_features:
        ev.failures.append("no negotiated features (no driver finished feature negotiation)")
        bus_ok = False
    ev.failures += list(bus.problems)
    shown = " ".join(bus.negotiated_features[:6]) + (" ..." if len(bus.negotiated_features) > 6 else "")
    ev.details.append(f"mgmtdev {bus.mgmtdev}, driver {bus.driver}, "
                      f"{len(bus.negotiated_features)} negotiated features ({shown})")
    if bus_ok:
        ev.held.append("vdpa-bus")
    if port_before is None or port_after is None:
        return ev
    status = port_after.status.get("status")
    rx = port_rx_delta(port_before, port_after)
    ev.details.append(f"OVS port {port_after.port}: status {status or '-'}, rx_packets +{rx}, guest sent {guest_sent}")
    if status is not None and status != "connected":
        ev.failures.append(f"OVS port {port_after.port} status is {status}, not connected")
    elif rx is None or guest_sent is None or guest_sent <= 0:
        ev.failures.append(f"OVS port {port_after.port}: rx_packets or the guest's tx counter unavailable")
    elif rx < guest_sent:
        ev.failures.append(
            f"OVS port {port_after.port} received {rx} packets, fewer than the {guest_sent} the guest sent"
        )
    else:
        ev.held.append("ovs-port")
    return ev

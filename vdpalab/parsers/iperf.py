"""iperf3 ``-J`` (3.1 through 3.17, TCP and UDP) and iperf2 ``-y C`` CSV.

A failed iperf3 run (top-level "error") has its rates set to None: an interrupted client reports
0 bit/s received, which is "not measured", not "nothing arrived".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vdpalab.errors import ParseError
from vdpalab.parsers._common import (
    Keeper,
    Unparsed,
    content_lines,
    expect_type,
    json_bool,
    json_int,
    json_num,
    json_objects,
    json_str,
    load_json,
    normalize,
    nothing_understood,
    to_int,
)

IPERF3 = "iperf3"
IPERF2_CSV = "iperf2-csv"


@dataclass(frozen=True)
class IperfSum:
    """One of iperf3's end sums (sum_sent, sum_received or the UDP 'sum'), as printed."""

    seconds: float | None
    bytes: int | None
    bits_per_second: float | None
    retransmits: int | None = None
    jitter_ms: float | None = None
    lost_packets: int | None = None
    packets: int | None = None
    lost_percent: float | None = None


@dataclass(frozen=True)
class Iperf3Result:
    """The headline figures of one iperf3 run.

    ``interval_bps`` holds the per-interval sum rates (omitted warm-up intervals left out) and is
    part of the JSON; ``sum_sent``/``sum_received``/``sum`` keep the raw end sums even for a failed
    run, for forensics, while the headline rates of a failed run are None.
    """

    version: str | None
    protocol: str | None
    streams: int | None
    duration_s: float | None
    sent_bps: float | None
    received_bps: float | None
    retransmits: int | None
    jitter_ms: float | None
    lost_packets: int | None
    packets: int | None
    lost_percent: float | None
    error: str | None
    interval_bps: list[float] = field(default_factory=list)
    omitted_intervals: int = 0
    sum_sent: IperfSum | None = None
    sum_received: IperfSum | None = None
    sum: IperfSum | None = None


def _sum(kind: str, raw: Any, what: str) -> IperfSum | None:
    if raw is None:
        return None
    expect_type(kind, raw, dict, what)
    if not raw:
        return None
    return IperfSum(
        seconds=json_num(kind, raw.get("seconds"), f"{what}.seconds"),
        bytes=json_int(kind, raw.get("bytes"), f"{what}.bytes"),
        bits_per_second=json_num(kind, raw.get("bits_per_second"), f"{what}.bits_per_second"),
        retransmits=json_int(kind, raw.get("retransmits"), f"{what}.retransmits"),
        jitter_ms=json_num(kind, raw.get("jitter_ms"), f"{what}.jitter_ms"),
        lost_packets=json_int(kind, raw.get("lost_packets"), f"{what}.lost_packets"),
        packets=json_int(kind, raw.get("packets"), f"{what}.packets"),
        lost_percent=json_num(kind, raw.get("lost_percent"), f"{what}.lost_percent"),
    )


def _strip_quirks(text: str) -> str:
    """A recorded file may start with the terminal's '^C' echo and use CRLF: both are dropped."""
    text = normalize(text).lstrip()
    if text.startswith("^C"):
        text = text[2:]
    return text


def parse_iperf3(text: str) -> Iperf3Result:
    """Parse one ``iperf3 -J`` object (client side)."""
    kind = IPERF3
    body = _strip_quirks(text)
    if not body.strip():
        raise ParseError(kind, "empty input")
    if not body.startswith("{"):
        first = body.split("\n", 1)[0]
        raise ParseError(kind, "expected iperf3 -J output (a JSON object)", 1, first)
    doc = expect_type(kind, load_json(kind, body), dict, "top level")
    start = expect_type(kind, doc.get("start", {}), dict, "start")
    end = expect_type(kind, doc.get("end", {}), dict, "end")
    intervals = expect_type(kind, doc.get("intervals", []), list, "intervals")
    if "start" not in doc or ("end" not in doc and "error" not in doc):
        raise ParseError(kind, "JSON lacks 'start' or 'end': not an iperf3 -J result")
    error = json_str(kind, doc.get("error"), "error")
    ts = expect_type(kind, start.get("test_start", {}), dict, "start.test_start")
    version = json_str(kind, start.get("version"), "start.version")
    protocol = json_str(kind, ts.get("protocol"), "start.test_start.protocol")
    streams = json_int(kind, ts.get("num_streams"), "start.test_start.num_streams")

    bps: list[float] = []
    omitted = 0
    for i, iv in json_objects(kind, intervals, "intervals"):
        s = expect_type(kind, iv.get("sum", {}), dict, f"intervals[{i}].sum")
        if json_bool(kind, s.get("omitted"), f"intervals[{i}].sum.omitted"):
            omitted += 1
            continue
        v = json_num(kind, s.get("bits_per_second"), f"intervals[{i}].sum.bits_per_second")
        if v is None:
            raise ParseError(kind, f"intervals[{i}].sum has no bits_per_second")
        bps.append(v)

    sum_sent = _sum(kind, end.get("sum_sent"), "end.sum_sent")
    sum_received = _sum(kind, end.get("sum_received"), "end.sum_received")
    udp_sum = _sum(kind, end.get("sum"), "end.sum")
    if protocol is None and udp_sum is not None and udp_sum.jitter_ms is not None:
        protocol = "UDP"

    sent = received = None
    retrans = jitter = lost = packets = lost_pct = None
    duration = None
    if protocol == "UDP":
        # iperf3 3.1 prints only end.sum; newer versions add sum_sent/sum_received (receiver view)
        loss_view = sum_received if sum_received is not None and sum_received.packets is not None else udp_sum
        sent_view = sum_sent if sum_sent is not None else udp_sum
        sent = sent_view.bits_per_second if sent_view else None
        received = sum_received.bits_per_second if sum_received else None
        if loss_view is not None:
            jitter, lost, packets, lost_pct = (loss_view.jitter_ms, loss_view.lost_packets, loss_view.packets,
                                              loss_view.lost_percent)
        duration = sent_view.seconds if sent_view else None
    else:
        sent = sum_sent.bits_per_second if sum_sent else None
        received = sum_received.bits_per_second if sum_received else None
        retrans = sum_sent.retransmits if sum_sent else None
        duration = sum_sent.seconds if sum_sent else None

    if error is not None:
        sent = received = None
    elif sent is None and received is None:
        raise ParseError(kind, "no end sums and no error: the run did not finish (output cut?)")
    return Iperf3Result(
        version=version, protocol=protocol, streams=streams, duration_s=duration,
        sent_bps=sent, received_bps=received, retransmits=retrans,
        jitter_ms=jitter, lost_packets=lost, packets=packets, lost_percent=lost_pct,
        error=error, interval_bps=bps, omitted_intervals=omitted,
        sum_sent=sum_sent, sum_received=sum_received, sum=udp_sum,
    )


# ----------------------------------------------------------------------------------- iperf2 CSV
@dataclass(frozen=True)
class Iperf2Row:
    """One ``iperf -y C`` report line (9 fields before 2.19, 15 with -e from 2.19 on)."""

    timestamp: str
    tz: str | None
    local_host: str
    local_port: int
    remote_host: str
    remote_port: int
    id: int
    interval_start_s: float
    interval_end_s: float
    transfer_bytes: int
    bandwidth_bps: int
    extra: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Iperf2Csv:
    rows: list[Iperf2Row]
    unparsed: list[Unparsed] = field(default_factory=list)


_TS = re.compile(r"^(?:(?P<tz>[+-]\d{4}):)?(?P<ts>\d{14}(?:\.\d+)?)$")
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$")


def parse_iperf2_csv(text: str) -> Iperf2Csv:
    """Every line must have the same field count, 9 or 15 (a cut last line fails)."""
    kind = IPERF2_CSV
    rows: list[Iperf2Row] = []
    width = None
    lines = content_lines(kind, text)
    keep = Keeper(lines, text)
    for line_no, line in lines:
        with keep.line(line_no, line):
            f = line.strip().split(",")
            if len(f) not in (9, 15):
                raise ParseError(kind, f"expected 9 or 15 comma-separated fields, got {len(f)}", line_no, line)
            if width is not None and len(f) != width:
                raise ParseError(kind, f"field count changed from {width} to {len(f)} (output cut?)", line_no, line)
            width = len(f)
            tm = _TS.match(f[0])
            im = _INTERVAL.match(f[6])
            if not tm or not im:
                raise ParseError(kind, "bad timestamp or interval field", line_no, line)
            rows.append(Iperf2Row(
                timestamp=tm.group("ts"), tz=tm.group("tz"), local_host=f[1],
                local_port=to_int(kind, f[2], line_no, line, "port"), remote_host=f[3],
                remote_port=to_int(kind, f[4], line_no, line, "port"), id=to_int(kind, f[5], line_no, line, "id"),
                interval_start_s=float(im.group(1)), interval_end_s=float(im.group(2)),
                transfer_bytes=to_int(kind, f[7], line_no, line, "transfer"),
                bandwidth_bps=to_int(kind, f[8], line_no, line, "bandwidth"),
                extra=[to_int(kind, x, line_no, line, "field") for x in f[9:]],
            ))
    nothing_understood(kind, rows, keep)
    return Iperf2Csv(rows=rows, unparsed=keep.unparsed)

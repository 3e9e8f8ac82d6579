"""``tcpreplay`` (3.4 to 4.4) end-of-run summary, and ``tcpreplay --version``.

The NDR/PDR measurer takes the packets tcpreplay *sent* from this summary: ``Successful packets``
of the device statistics (what the kernel accepted) when present, else the ``Actual:`` line.
``Failed packets`` are packets it could not send (they count as unsent, never as received).
Lines it does not know (warnings such as "Unsupported physical layer type", ``--stats``
progress lines, "File Cache is enabled") are kept in ``unparsed`` with their line numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vdpalab.errors import ParseError
from vdpalab.parsers._common import content_lines, to_int

TCPREPLAY = "tcpreplay"
TCPREPLAY_VERSION = "tcpreplay-version"

_NUM = r"\d+(?:\.\d+)?"
_ACTUAL = re.compile(
    rf"^\s*Actual: (?P<packets>\d+) packets \((?P<bytes>\d+) bytes\) sent in (?P<secs>{_NUM}) seconds\.?"
    r"(?:\s+Rated: .*)?$"
)
_RATED = re.compile(rf"Rated: (?P<bps>{_NUM}) Bps, (?P<mbps>{_NUM}) Mbps(?:, (?P<pps>{_NUM}) pps)?")
_FLOWS = re.compile(rf"^\s*Flows: (?P<flows>\d+) flows(?:, (?P<fps>{_NUM}) fps)?")
_DEVICE = re.compile(r"^\s*Statistics for network device: (?P<dev>\S+)\s*$")
_COUNTER = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z ()]*?):\s+(?P<value>\d+)\s*$")
_COUNTERS = {
    "Successful packets": "successful",
    "Failed packets": "failed",
    "Truncated packets": "truncated",
    "Retried packets (ENOBUFS)": "retried_enobufs",
    "Retried packets (EAGAIN)": "retried_eagain",
    "Attempted packets": "attempted",
}
_VERSION = re.compile(r"^\s*tcpreplay version: (?P<version>\d+(?:\.\d+)+)")


@dataclass(frozen=True)
class TcpreplaySummary:
    """What one tcpreplay run says it did; device counters are None when this version did not print them."""

    actual_packets: int
    actual_bytes: int
    seconds: float
    rated_bps: float | None
    rated_pps: float | None
    flows: int | None
    device: str | None
    successful: int | None
    failed: int | None
    truncated: int | None
    retried_enobufs: int | None
    retried_eagain: int | None
    attempted: int | None
    unparsed: tuple[tuple[int, str], ...] = ()

    @property
    def sent(self) -> int:
        """Packets the kernel accepted: the device's successful count, else the ``Actual:`` count."""
        return self.successful if self.successful is not None else self.actual_packets

    @property
    def achieved_pps(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def parse_tcpreplay(text: str) -> TcpreplaySummary:
    """The summary tcpreplay prints at the end of a run (stdout; stderr warnings may be mixed in)."""
    lines = content_lines(TCPREPLAY, text)
    actual: re.Match[str] | None = None
    actual_at: tuple[int, str] | None = None
    rated: re.Match[str] | None = None
    flows: int | None = None
    device: str | None = None
    counters: dict[str, int] = {}
    unparsed: list[tuple[int, str]] = []
    for line_no, line in lines:
        if m := _ACTUAL.match(line):
            if actual is not None:
                raise ParseError(TCPREPLAY, "two 'Actual:' summaries in one output", line_no, line)
            actual, actual_at = m, (line_no, line)
            rated = _RATED.search(line) or rated
        elif line.strip().startswith("Rated:") and (r := _RATED.search(line)):
            rated = r
        elif m := _FLOWS.match(line):
            flows = int(m.group("flows"))
        elif m := _DEVICE.match(line):
            device = m.group("dev")
        elif (m := _COUNTER.match(line)) and m.group("name").strip() in _COUNTERS and device is not None:
            counters[_COUNTERS[m.group("name").strip()]] = to_int(TCPREPLAY, m.group("value"), line_no, line)
        else:
            unparsed.append((line_no, line))
    if actual is None or actual_at is None:
        raise ParseError(TCPREPLAY, "no 'Actual: N packets (B bytes) sent in S seconds' line: the run did not finish")
    line_no, line = actual_at
    rated_pps = rated.group("pps") if rated is not None else None
    return TcpreplaySummary(
        actual_packets=to_int(TCPREPLAY, actual.group("packets"), line_no, line),
        actual_bytes=to_int(TCPREPLAY, actual.group("bytes"), line_no, line),
        seconds=float(actual.group("secs")),  # the pattern admits only digits and one dot
        rated_bps=float(rated.group("bps")) if rated is not None else None,
        rated_pps=float(rated_pps) if rated_pps is not None else None,
        flows=flows,
        device=device,
        successful=counters.get("successful"),
        failed=counters.get("failed"),
        truncated=counters.get("truncated"),
        retried_enobufs=counters.get("retried_enobufs"),
        retried_eagain=counters.get("retried_eagain"),
        attempted=counters.get("attempted"),
        unparsed=tuple(unparsed),
    )


def parse_tcpreplay_version(text: str) -> str:
    """``tcpreplay --version`` -> "4.4.3"."""
    for line_no, line in content_lines(TCPREPLAY_VERSION, text):
        if m := _VERSION.match(line):
            return m.group("version")
        if line_no > 20:
            break
    raise ParseError(TCPREPLAY_VERSION, "no 'tcpreplay version: X.Y.Z' line")

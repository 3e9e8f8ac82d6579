"""Ping from one host to an address, flood or paced, and judge loss and rtt against thresholds.

iputils ``ping -f`` (flood) needs root; a non-root login falls back to the fastest
rate iputils allows a user (``-i 0.002``) and says so in ``PingRun.mode``, so a
number is never silently measured differently. ``-c COUNT -w DEADLINE`` bounds
the run both ways: it ends after COUNT replies or DEADLINE seconds, whichever first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vdpalab.errors import ParseError
from vdpalab.hosts.base import CommandResult, Host
from vdpalab.parsers._common import describe_unparsed
from vdpalab.parsers.ping import PingStats, parse_ping, reply_rtts_ms

# iputils refuses intervals below 2 ms for non-root users
USER_MIN_INTERVAL_S = 0.002


@dataclass(frozen=True)
class PingSpec:
    """What to send: to whom, how many, how big, how fast."""

    destination: str
    count: int
    deadline_s: float
    size: int = 56
    flood: bool = True
    interval_s: float | None = None
    quiet: bool = True  # -q: summary only; False keeps the per-reply lines (rtt distributions)
    interface: str | None = None

    def argv(self, *, root: bool = True, binary: str = "ping") -> list[str]:
        """The ping command line; flood only as root (see module docstring)."""
        argv = [binary]
        if self.flood and root:
            argv.append("-f")
        elif self.flood:
            argv += ["-i", f"{max(self.interval_s or 0.0, USER_MIN_INTERVAL_S):g}"]
        elif self.interval_s is not None:
            interval = self.interval_s if root else max(self.interval_s, USER_MIN_INTERVAL_S)
            argv += ["-i", f"{interval:g}"]
        argv += ["-c", str(self.count), "-w", str(max(1, math.ceil(self.deadline_s))), "-s", str(self.size)]
        if self.interface:
            argv += ["-I", self.interface]
        if self.quiet:
            argv.append("-q")
        argv.append(self.destination)
        return argv

    def mode(self, *, root: bool = True) -> str:
        if self.flood and root:
            return "flood"
        if self.flood:
            return f"interval {max(self.interval_s or 0.0, USER_MIN_INTERVAL_S):g} s (flood needs root)"
        if self.interval_s is not None:
            return f"interval {self.interval_s:g} s"
        return "interval 1 s"


@dataclass
class PingRun:
    """One ping run: what ran, what it printed, and the parsed statistics (None when unparsable)."""

    spec: PingSpec
    source: str
    result: CommandResult
    mode: str
    stats: PingStats | None
    error: str | None = None
    rtts_ms: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.source} -> {self.spec.destination} ({self.spec.size} B, {self.mode})"


def is_root(host: Host) -> bool:
    result = host.run(["id", "-u"], timeout=host.quick_timeout)
    return result.ok and result.stdout.strip() == "0"


def run_ping(host: Host, spec: PingSpec, *, timeout: float | None = None, root: bool | None = None) -> PingRun:
    """Run ping on ``host``; the host timeout is the deadline plus a margin (a hung ping is killed).

    Raises ``HostError`` when the host cannot run it at all; an unparsable output is
    returned with ``stats=None`` and ``error`` set (ping's own stderr first).
    """
    if root is None:
        root = is_root(host)
    limit = timeout if timeout is not None else spec.deadline_s + 15.0
    result = host.run(spec.argv(root=root), timeout=limit)
    run = PingRun(spec=spec, source=host.name, result=result, mode=spec.mode(root=root), stats=None)
    try:
        run.stats = parse_ping(result.stdout)
    except ParseError as exc:
        stderr = result.stderr.strip()
        run.error = (f"ping exited {result.rc}: {stderr}" if stderr else f"ping exited {result.rc}: {exc}")
        return run
    if not spec.quiet:
        run.rtts_ms = reply_rtts_ms(result.stdout)
    return run


def ping_problems(run: PingRun) -> list[str]:
    """What makes the run unusable as a measurement (no statistics, nothing sent, duplicates).

    Limits (loss, rtt) are not judged here: the recorded figures go to the one judge
    (``vdpalab.results.judge`` with the lab's ``[thresholds]``).
    """
    if run.stats is None:
        return [f"{run.label}: no statistics: {run.error}"]
    s = run.stats
    problems: list[str] = []
    if s.transmitted == 0:
        problems.append(f"{run.label}: nothing was transmitted ({run.result.stderr.strip() or 'no error printed'})")
    if s.received and s.rtt_avg_ms is None:
        problems.append(f"{run.label}: replies received but no rtt figures printed")
    if s.duplicates:
        problems.append(f"{run.label}: {s.duplicates} duplicate replies (a loop or a flooding bridge?)")
    if problems and s.unparsed:  # what ping printed that the parser did not understand may say why
        problems.append(f"{run.label}: " + " ".join(describe_unparsed(s)))
    return problems

"""Zero-loss throughput: NDR and PDR searches with FD.io CSIT's MLRsearch, behind one measurer interface.

MLRsearch decides which load to try next; a *measurer* runs one trial at a given load and duration
and says how many packets were offered and how many came out. ``TrialMeasurer`` is that interface
(MLRsearch's ``AbstractMeasurer``) plus what every generator needs for honest results: a calibration
trial (the generator's own maximum, which caps the search), and a record of every trial.

One implementation per generator:

* ``TcpreplayMeasurer``: tcpreplay on the sending guest (any Linux guest, over the lab's ``Host``
  interface, so over SSH), received packets from the receiving guest's interface counters.
  tcpreplay sends an exact count at a paced rate; above its own maximum it takes longer instead of
  dropping. A trial that took longer than ``duration x (1 + rate_tolerance)`` did not hold its rate:
  only the packets that fitted into the intended duration count as offered, the rest are *unsent*
  and count as loss (MLRsearch's ``intended_count``), so such a load can never become a lower bound.
* Hardware labs plug a TRex (or testpmd) measurer in here: subclass ``TrialMeasurer``, implement
  ``trial`` (send ``round(load x duration)`` packets per port, return sent and received from the
  generator's port counters) and ``calibrate`` (its line rate or maximum), add the generator's
  settings model to ``vdpalab.config.NdrGenerator`` and its factory to ``GENERATORS``.

Tester-limited: when no trial failed up to the maximum load (no upper bound), or the upper bound is
a trial where the generator itself fell behind, the search measured the generator and not the
datapath. ``GoalOutcome.tester_limited`` says so and the benchmark never records it as throughput.
"""

from __future__ import annotations

import base64
import logging
import math
import shlex
import struct
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal, Protocol

from MLRsearch import AbstractMeasurer, Config, MeasurementResult, MultipleLossRatioSearch, SearchGoal

from vdpalab.config import NdrProfile, TcpreplayGenerator
from vdpalab.errors import HostError, ParseError
from vdpalab.hosts.base import Host
from vdpalab.parsers.tcpreplay import TcpreplaySummary, parse_tcpreplay, parse_tcpreplay_version
from vdpalab.traffic.jobs import WorkDir

log = logging.getLogger(__name__)

TrialKind = Literal["calibration", "warmup", "search"]

#: CSIT's IMIX_v4_1: 64, 570 and 1518 byte frames in the ratio 7:4:1 (sizes with the FCS).
IMIX: tuple[tuple[int, int], ...] = ((64, 7), (570, 4), (1518, 1))
FCS = 4
#: Loss ratio of each goal; PDR's comes from the lab file.
NDR_LOSS_RATIO = 0.0


class Endpoint(Protocol):
    """One end of the measured path: a lab guest (``GuestSettings``) or a sandbox namespace end."""

    @property
    def interface(self) -> str: ...

    @property
    def mac(self) -> str: ...

    @property
    def address(self) -> str: ...


class GeneratorError(HostError):
    """The generator could not run a trial (not installed, refused its options, died)."""


def mlrsearch_version() -> str | None:
    try:
        return metadata.version("mlrsearch")
    except metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class Trial:
    """One trial as it happened: what was asked, what the generator did, what arrived.

    ``sent`` is the generator's own count, ``received`` the receiver's counter delta (raw: noise
    such as an ARP request can make it exceed ``sent``). ``offered`` and ``forwarded`` are what
    MLRsearch is told: ``offered`` is ``sent`` minus what came too late when the generator did not
    hold the rate; ``forwarded`` is ``received`` capped at ``offered``.
    """

    kind: TrialKind
    load_pps: float
    duration_s: float
    intended: int
    sent: int
    received: int
    offered_s: float
    wall_s: float
    held_rate: bool
    started: float
    note: str = ""

    @property
    def offered(self) -> int:
        if self.held_rate or self.offered_s <= 0:
            return self.sent
        return min(self.sent, math.floor(self.sent * self.duration_s / self.offered_s))

    @property
    def forwarded(self) -> int:
        return min(self.received, self.offered)

    @property
    def unsent(self) -> int:
        return max(0, self.intended - self.offered)

    @property
    def lost(self) -> int:
        return self.offered - self.forwarded

    @property
    def loss_ratio(self) -> float:
        """MLRsearch's trial loss ratio: lost plus unsent over what was intended (or sent, if more)."""
        overall = max(self.offered, self.intended)
        return (self.lost + self.unsent) / overall if overall else 0.0

    @property
    def achieved_pps(self) -> float:
        return self.sent / self.offered_s if self.offered_s > 0 else 0.0

    def to_result(self) -> MeasurementResult:
        return MeasurementResult(
            intended_duration=self.duration_s,
            intended_load=self.load_pps,
            offered_count=self.offered,
            forwarding_count=self.forwarded,
            intended_count=self.intended,
            offered_duration=self.offered_s if self.offered_s > 0 else self.duration_s,
            duration_with_overheads=self.wall_s,
        )

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "load_pps": round(self.load_pps, 3), "duration_s": self.duration_s,
            "intended": self.intended, "sent": self.sent, "received": self.received, "offered": self.offered,
            "forwarded": self.forwarded, "lost": self.lost, "unsent": self.unsent,
            "loss_ratio": self.loss_ratio, "offered_s": self.offered_s, "wall_s": round(self.wall_s, 3),
            "held_rate": self.held_rate, "note": self.note,
        }


def trials_table(trials: Sequence[Trial]) -> str:
    """The trials as a fixed-width text table (kept with the test in the reports)."""
    head = (f"{'#':>3} {'kind':<11} {'load pps':>12} {'dur s':>6} {'intended':>10} {'sent':>10} "
            f"{'received':>10} {'lost':>8} {'unsent':>8} {'loss ratio':>11} {'took s':>7}  note")
    lines = [head]
    for n, t in enumerate(trials, 1):
        note = t.note or ("" if t.held_rate else "generator did not hold the rate")
        lines.append(
            f"{n:>3} {t.kind:<11} {t.load_pps:>12.1f} {t.duration_s:>6.2f} {t.intended:>10} {t.sent:>10} "
            f"{t.received:>10} {t.lost:>8} {t.unsent:>8} {t.loss_ratio:>11.6f} {t.offered_s:>7.3f}  {note}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the measurer interface


class TrialMeasurer(AbstractMeasurer):
    """MLRsearch's measurer plus calibration and a record of every trial; one subclass per generator."""

    generator_name = "generator"

    def __init__(self) -> None:
        self.trials: list[Trial] = []
        self.warmup_pending = False

    @abstractmethod
    def trial(self, duration_s: float, load_pps: float, kind: TrialKind) -> Trial:
        """Send ``round(load x duration)`` packets at ``load`` pps and count what arrived."""

    @abstractmethod
    def calibrate(self, duration_s: float) -> Trial:
        """Send as fast as the generator can for ``duration_s``: its ``achieved_pps`` caps the search."""

    def generator_version(self) -> str | None:
        return None

    def measure(self, intended_duration: float, intended_load: float) -> MeasurementResult:
        kind: TrialKind = "warmup" if self.warmup_pending else "search"
        self.warmup_pending = False
        trial = self.trial(float(intended_duration), float(intended_load), kind)
        self.trials.append(trial)
        log.info("%s trial %d: %.0f pps x %.2f s: sent %d received %d loss ratio %.6f%s", kind, len(self.trials),
                 trial.load_pps, trial.duration_s, trial.sent, trial.received, trial.loss_ratio,
                 "" if trial.held_rate else " (generator did not hold the rate)")
        return trial.to_result()

    def close(self) -> None:
        """Remove what the measurer put on the hosts."""


# --------------------------------------------------------------------------- frames


def frame_mix(frame_size: int | str) -> list[int]:
    """Frame sizes (with FCS) of one repetition of the pattern: one size, or IMIX's 7:4:1."""
    if frame_size == "imix":
        return [size for size, count in IMIX for _ in range(count)]
    return [int(frame_size)]


def average_frame_bytes(frame_size: int | str) -> float:
    mix = frame_mix(frame_size)
    return sum(mix) / len(mix)


def build_pcap(src: Endpoint, dst: Endpoint, frame_size: int | str, repeat: int = 50) -> bytes:
    """UDP frames from ``src`` to ``dst`` (their MACs and IPs, port 9 "discard") as a pcap file.

    Sizes include the FCS (CSIT's convention: a 64 B frame is 60 bytes written plus 4 the NIC adds).
    The receiver has no socket on port 9; its kernel answers with ICMP port unreachable at most about
    once a second (icmp_ratelimit), which does not load the datapath.
    """
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    frames: list[bytes] = []
    for n, size in enumerate(frame_mix(frame_size) * repeat):
        head = Ether(src=src.mac, dst=dst.mac) / IP(src=src.address, dst=dst.address, ttl=64) / UDP(
            sport=1024 + n % 16, dport=9
        )
        pad = size - FCS - len(head)
        if pad < 0:
            raise ValueError(f"frame size {size} is smaller than the headers ({len(head) + FCS} bytes)")
        frames.append(bytes(head / Raw(b"\x00" * pad)))
    return pcap_bytes(frames)


def pcap_bytes(frames: Sequence[bytes]) -> bytes:
    """A classic little-endian pcap (Ethernet, stamps 1 us apart: tcpreplay --pps ignores them)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for n, frame in enumerate(frames):
        out.append(struct.pack("<IIII", 0, n, len(frame), len(frame)) + frame)
    return b"".join(out)


# --------------------------------------------------------------------------- tcpreplay


def read_rx_packets(host: Host, interface: str) -> int:
    """The interface's rx_packets from sysfs (works on any Linux guest, BusyBox included)."""
    path = f"/sys/class/net/{interface}/statistics/rx_packets"
    result = host.run(["cat", path], timeout=15)
    text = result.stdout.strip()
    if not result.ok or not text.isdigit():
        raise GeneratorError(host.name, result.command,
                             f"cannot read {path} (rc={result.rc}): {(result.stderr or text).strip()[-200:]}")
    return int(text)


@dataclass
class TcpreplayMeasurer(TrialMeasurer):
    """tcpreplay on ``sender`` towards ``receiver``; received packets from the receiver's rx counter."""

    sender: Host
    receiver: Host
    sender_guest: Endpoint
    receiver_guest: Endpoint
    frame_size: int | str
    settings: TcpreplayGenerator = field(default_factory=TcpreplayGenerator)
    settle_s: float = 0.1
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    workdir: WorkDir | None = None
    pcap_path: str | None = None
    version: str | None = None

    generator_name = "tcpreplay"

    def __post_init__(self) -> None:
        TrialMeasurer.__init__(self)

    # set-up and tear-down
    def setup(self) -> None:
        """Check tcpreplay, read its version, upload the frames (base64 through stdin: any Host backend)."""
        binary = self.settings.binary
        found = self.sender.run(f"command -v {shlex.quote(binary)}", timeout=15)
        if not found.ok:
            raise GeneratorError(self.sender.name, found.command, f"{binary} is not installed on the sending guest")
        self.version = self._read_version()
        self.workdir = WorkDir.create(self.sender, prefix="vdpalab-ndr")
        pcap = build_pcap(self.sender_guest, self.receiver_guest, self.frame_size)
        self.pcap_path = self.workdir.file(f"frames-{self.frame_size}.pcap")
        result = self.sender.run(
            f"base64 -d > {shlex.quote(self.pcap_path)}", stdin=base64.b64encode(pcap).decode() + "\n", timeout=30
        )
        if not result.ok:
            raise GeneratorError(self.sender.name, result.command,
                                 f"could not write the frames (rc={result.rc}): {result.stderr.strip()[-200:]}")

    def _read_version(self) -> str | None:
        result = self.sender.run([self.settings.binary, "--version"], timeout=15)
        try:
            return parse_tcpreplay_version(result.stdout + "\n" + result.stderr)
        except ParseError:
            return None

    def generator_version(self) -> str | None:
        return self.version

    def close(self) -> None:
        if self.workdir is not None:
            self.workdir.remove()
            self.workdir = None

    # one trial
    def command(self, load_pps: float | None, count: int, cap_s: int) -> list[str]:
        """The tcpreplay command; ``load_pps`` None sends at top speed (calibration)."""
        if self.pcap_path is None:
            raise RuntimeError("TcpreplayMeasurer.setup() was not called")
        argv = [] if self.settings.cpu is None else ["taskset", "-c", str(self.settings.cpu)]
        argv += [self.settings.binary, "-i", self.sender_guest.interface]
        argv += ["--topspeed"] if load_pps is None else [f"--pps={load_pps:.2f}"]
        argv += ["--loop=0", f"--limit={count}", f"--duration={cap_s}", "--preload-pcap", self.pcap_path]
        return argv

    def _send(self, load_pps: float | None, count: int, cap_s: int) -> tuple[TcpreplaySummary, float, int, float]:
        interface = self.receiver_guest.interface
        before = read_rx_packets(self.receiver, interface)
        started = time.time()
        t0 = self.clock()
        argv = self.command(load_pps, count, cap_s)
        result = self.sender.run(argv, timeout=cap_s + 60)
        wall = self.clock() - t0
        self.sleep(self.settle_s)  # frames still in flight through the datapath
        after = read_rx_packets(self.receiver, interface)
        if not result.ok:
            tail = (result.stderr or result.stdout).strip()[-300:]
            raise GeneratorError(self.sender.name, result.command, f"tcpreplay exited with rc={result.rc}: {tail}")
        try:
            summary = parse_tcpreplay(result.stdout)
        except ParseError as exc:
            raise GeneratorError(self.sender.name, result.command, str(exc)) from None
        return summary, wall, after - before, started

    def trial(self, duration_s: float, load_pps: float, kind: TrialKind) -> Trial:
        intended = max(1, round(load_pps * duration_s))
        cap = max(2, math.ceil(duration_s * 2) + 1)  # a slow generator stops here; exact counts otherwise
        summary, wall, received, started = self._send(load_pps, intended, cap)
        held = summary.seconds <= duration_s * (1 + self.settings.rate_tolerance) and summary.sent >= intended
        note = ""
        if summary.failed:
            note = f"{summary.failed} packets failed to send"
        return Trial(kind=kind, load_pps=load_pps, duration_s=duration_s, intended=intended, sent=summary.sent,
                     received=received, offered_s=summary.seconds, wall_s=wall, held_rate=held, started=started,
                     note=note)

    def calibrate(self, duration_s: float) -> Trial:
        seconds = max(1, math.ceil(duration_s))
        summary, wall, received, started = self._send(None, 2**31 - 1, seconds)
        rate = summary.achieved_pps
        trial = Trial(kind="calibration", load_pps=rate, duration_s=summary.seconds, intended=summary.sent,
                      sent=summary.sent, received=received, offered_s=summary.seconds, wall_s=wall, held_rate=True,
                      started=started, note=f"top speed: {rate:.0f} pps")
        self.trials.append(trial)
        return trial


# --------------------------------------------------------------------------- the search


@dataclass(frozen=True)
class GoalOutcome:
    """One goal's result. ``conditional_pps`` is MLRsearch's conditional throughput at the lower bound."""

    goal: str
    loss_ratio: float
    conditional_pps: float | None
    lower_pps: float | None
    upper_pps: float | None
    tester_limited: bool
    reason: str = ""

    @property
    def measured(self) -> bool:
        """A number that is the datapath's: a lower bound, an upper bound, and not the tester's limit."""
        return self.conditional_pps is not None and self.upper_pps is not None and not self.tester_limited


@dataclass(frozen=True)
class SearchOutcome:
    """A whole search: the goals, every trial, the loads it worked between and how long it took."""

    goals: dict[str, GoalOutcome]
    trials: tuple[Trial, ...]
    calibrated_pps: float
    min_load_pps: float
    max_load_pps: float
    search_s: float
    error: str | None = None

    @property
    def search_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.kind == "search"]


def goal_specs(profile: NdrProfile) -> dict[str, SearchGoal]:
    """The lab file's goals as MLRsearch goals (fail_fast off: loss at min load is a result, not a crash)."""
    ratios = {"ndr": NDR_LOSS_RATIO, "pdr": profile.pdr_loss_ratio}
    return {
        name: SearchGoal(
            loss_ratio=ratios[name],
            exceed_ratio=profile.exceed_ratio,
            relative_width=profile.relative_width,
            initial_trial_duration=profile.initial_trial_duration_s,
            final_trial_duration=profile.trial_duration_s,
            duration_sum=profile.duration_sum_s,
            preceding_targets=2,
            expansion_coefficient=2,
            fail_fast=False,
        )
        for name in profile.goals
    }


def max_load_from(calibrated_pps: float, profile: NdrProfile) -> float:
    """The search's ceiling: a fraction of what the generator reached, and the lab file's cap."""
    load = calibrated_pps * profile.calibration_fraction
    if profile.max_load_pps is not None:
        load = min(load, profile.max_load_pps)
    return load


def judge_goal(name: str, loss_ratio: float, lower: float | None, upper: float | None, conditional: float | None,
               max_load: float, trials: Sequence[Trial]) -> GoalOutcome:
    """Is this goal's number the datapath's? Not when nothing failed up to max load, or the failure was the tester's."""
    reason = ""
    limited = False
    if lower is None:
        reason = "no lower bound: loss above the goal even at the minimum load"
    elif upper is None or lower >= max_load * (1 - 1e-9):
        limited = True
        reason = f"tester-limited: no loss above the goal up to max load {max_load:.0f} pps (the generator's limit)"
    else:
        failing = [t for t in trials if t.kind == "search" and t.loss_ratio > loss_ratio
                   and math.isclose(t.load_pps, upper, rel_tol=1e-9)]
        if failing and all(not t.held_rate for t in failing):
            limited = True
            reason = f"tester-limited: the generator could not hold {upper:.0f} pps, the upper bound"
    return GoalOutcome(goal=name, loss_ratio=loss_ratio, conditional_pps=conditional, lower_pps=lower,
                       upper_pps=upper, tester_limited=limited, reason=reason)


def run_search(measurer: TrialMeasurer, profile: NdrProfile, clock: Callable[[], float] = time.monotonic
               ) -> SearchOutcome:
    """Calibrate, then one MLRsearch for all goals (as CSIT does); a blown time budget is an ``error``."""
    calibration = measurer.calibrate(profile.calibration_s)
    calibrated = calibration.achieved_pps
    max_load = max_load_from(calibrated, profile)
    specs = goal_specs(profile)
    if max_load <= profile.min_load_pps:
        return SearchOutcome(goals={}, trials=tuple(measurer.trials), calibrated_pps=calibrated,
                             min_load_pps=profile.min_load_pps, max_load_pps=max_load, search_s=0.0,
                             error=f"the generator reached only {calibrated:.0f} pps: max load {max_load:.0f} pps "
                                   f"is not above min_load_pps {profile.min_load_pps:g}")
    config = Config()
    config.goals = list(specs.values())
    config.min_load = profile.min_load_pps
    config.max_load = max_load
    config.search_duration_max = profile.time_budget_s
    config.warmup_duration = profile.warmup_s or None
    measurer.warmup_pending = bool(profile.warmup_s)
    t0 = clock()
    error = None
    results: dict[Any, Any] = {}
    try:
        results = dict(MultipleLossRatioSearch(config=config).search(measurer=measurer))
    except RuntimeError as exc:  # MLRsearch's time budget (or fail-fast) ran out
        error = f"MLRsearch stopped: {exc}"
    search_s = clock() - t0
    trials = tuple(measurer.trials)
    goals: dict[str, GoalOutcome] = {}
    for name, spec in specs.items():
        result = results.get(spec)
        if result is None:
            continue
        lower = float(result.relevant_lower_bound) if result.relevant_lower_bound is not None else None
        upper = float(result.relevant_upper_bound) if result.relevant_upper_bound is not None else None
        conditional = float(result.conditional_throughput) if result.conditional_throughput is not None else None
        goals[name] = judge_goal(name, spec.loss_ratio, lower, upper, conditional, max_load, trials)
    return SearchOutcome(goals=goals, trials=trials, calibrated_pps=calibrated, min_load_pps=profile.min_load_pps,
                         max_load_pps=max_load, search_s=search_s, error=error)


def summary_line(outcome: SearchOutcome) -> str:
    parts = []
    for goal in outcome.goals.values():
        if goal.measured:
            parts.append(f"{goal.goal.upper()} {goal.conditional_pps:,.0f} pps "
                         f"[{goal.lower_pps:,.0f}, {goal.upper_pps:,.0f}]")
        else:
            parts.append(f"{goal.goal.upper()} {goal.reason}")
    searched = len(outcome.search_trials)
    return (f"{'; '.join(parts) or outcome.error}; {searched} trials in {outcome.search_s:.1f} s "
            f"(max load {outcome.max_load_pps:,.0f} pps from calibration {outcome.calibrated_pps:,.0f} pps)")


# --------------------------------------------------------------------------- generators by lab-file kind

MeasurerFactory = Callable[..., TrialMeasurer]

#: ``[traffic.ndr] generator.kind`` -> measurer class. A TRex/testpmd measurer for hardware labs registers here.
GENERATORS: dict[str, MeasurerFactory] = {"tcpreplay": TcpreplayMeasurer}


def make_measurer(profile: NdrProfile, sender: Host, receiver: Host, sender_guest: Endpoint,
                  receiver_guest: Endpoint, frame_size: int | str) -> TrialMeasurer:
    factory = GENERATORS[profile.generator.kind]
    return factory(sender=sender, receiver=receiver, sender_guest=sender_guest, receiver_guest=receiver_guest,
                   frame_size=frame_size, settings=profile.generator, settle_s=profile.settle_s)


__all__ = [
    "GENERATORS", "GeneratorError", "GoalOutcome", "SearchOutcome", "TcpreplayMeasurer", "Trial", "TrialMeasurer",
    "average_frame_bytes", "build_pcap", "frame_mix", "goal_specs", "judge_goal", "make_measurer",
    "max_load_from", "mlrsearch_version", "run_search", "summary_line", "trials_table",
]

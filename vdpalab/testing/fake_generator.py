"""A generator and datapath simulated in memory, behind the same measurer interface as tcpreplay.

The search plumbing (MLRsearch config, trial records, tester-limited judgement) is tested with it
in milliseconds; the real tcpreplay path is exercised on the emulated lab. The model: the generator
sends at most ``generator_pps`` (above that it takes longer, as tcpreplay does), the datapath
forwards at most ``capacity_pps`` and drops the rest, and ``loss_at`` can add a fixed loss ratio
from some load on (a PDR that differs from the NDR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vdpalab.traffic.ndr import Trial, TrialKind, TrialMeasurer


@dataclass
class FakeMeasurer(TrialMeasurer):
    generator_pps: float
    capacity_pps: float
    loss_at: tuple[float, float] | None = None  # (from load pps, loss ratio) below the capacity
    rate_tolerance: float = 0.02
    clock: list[float] = field(default_factory=lambda: [0.0])

    generator_name = "fake"

    def __post_init__(self) -> None:
        TrialMeasurer.__init__(self)

    def generator_version(self) -> str | None:
        return "0-fake"

    def trial(self, duration_s: float, load_pps: float, kind: TrialKind) -> Trial:
        intended = max(1, round(load_pps * duration_s))
        took = max(duration_s, intended / self.generator_pps)
        held = took <= duration_s * (1 + self.rate_tolerance)
        rate = intended / took
        received = min(intended, math.floor(self.capacity_pps * took))
        if self.loss_at is not None and rate >= self.loss_at[0]:
            received = min(received, math.floor(intended * (1 - self.loss_at[1])))
        self.clock[0] += took + 0.2
        return Trial(kind=kind, load_pps=load_pps, duration_s=duration_s, intended=intended, sent=intended,
                     received=received, offered_s=took, wall_s=took + 0.2, held_rate=held, started=self.clock[0])

    def calibrate(self, duration_s: float) -> Trial:
        sent = math.floor(self.generator_pps * duration_s)
        trial = Trial(kind="calibration", load_pps=self.generator_pps, duration_s=duration_s, intended=sent,
                      sent=sent, received=min(sent, math.floor(self.capacity_pps * duration_s)),
                      offered_s=duration_s, wall_s=duration_s, held_rate=True, started=self.clock[0])
        self.trials.append(trial)
        return trial

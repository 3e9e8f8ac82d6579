"""Is a change between two runs real? One answer for compare, the terminal summary and the report.

A difference is called ``better`` or ``worse`` only when it exceeds the measurement's own
noise; below that it is ``within noise``. The noise band is, in order:

* the spread of the trials, when either run measured the series more than once: twice the
  larger sample standard deviation of the trial values (about a 95% band for normal noise);
* else a relative tolerance for the metric from the lab file (``[reports.noise_pct]``),
  else ``DEFAULT_NOISE_PCT`` (5%) of the baseline value;
* never narrower than the lab file's absolute band for the metric (``[reports.noise_abs]``, in
  the metric's unit): a loss of 0 % has no relative band, and 0 -> 0.02 % loss is not "worse".

Two back-to-back runs of the same lab differ by several percent in throughput (one sample
each): calling that "worse" would make every report cry wolf.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

DEFAULT_NOISE_PCT = 5.0

ChangeKind = Literal["better", "worse", "within noise", "changed", "same", "new", "missing", "n/a"]


@dataclass(frozen=True)
class Change:
    """How a value moved from the baseline, and why it is (or is not) called a change."""

    kind: ChangeKind
    base: float | None
    value: float | None
    noise: float | None = None  # half-width of the noise band, in the metric's unit
    noise_source: str = ""  # "trials (n=3)", "lab tolerance 8%", "default 5%"

    @property
    def delta(self) -> float:
        if self.base is None or self.value is None:
            return math.nan
        return self.value - self.base

    @property
    def delta_pct(self) -> float:
        if self.base is None or self.value is None or self.base == 0 or math.isnan(self.base):
            return math.nan
        return (self.value - self.base) / abs(self.base) * 100.0

    @property
    def symbol(self) -> str:
        return {"better": "▲", "worse": "▼", "within noise": "≈", "changed": "Δ", "same": "=",
                "new": "new", "missing": "gone"}.get(self.kind, "")

    def describe(self) -> str:
        """``-6.65% within noise (±5% default)`` for tables and tooltips."""
        pct = self.delta_pct
        if self.kind in ("new", "missing", "n/a"):
            return self.kind if self.kind != "new" else "no baseline"
        head = "" if math.isnan(pct) else f"{pct:+.2f}% "
        band = f" ({self.noise_source})" if self.kind == "within noise" and self.noise_source else ""
        return f"{head}{self.kind}{band}"


def _clean(values: Sequence[float] | None) -> list[float]:
    return [float(v) for v in values or () if v is not None and not math.isnan(float(v))]


def noise_band(
    metric: str,
    base: float,
    base_trials: Sequence[float] = (),
    new_trials: Sequence[float] = (),
    tolerances_pct: Mapping[str, float] | None = None,
    default_pct: float = DEFAULT_NOISE_PCT,
    absolute: Mapping[str, float] | None = None,
) -> tuple[float, str]:
    """Half-width of the band inside which a difference is noise, and where it comes from."""
    band, source = _relative_band(metric, base, base_trials, new_trials, tolerances_pct, default_pct)
    floor = (absolute or {}).get(metric)
    if floor is not None and floor > band:
        return floor, f"±{floor:g} absolute lab tolerance"
    return band, source


def _relative_band(metric: str, base: float, base_trials: Sequence[float], new_trials: Sequence[float],
                   tolerances_pct: Mapping[str, float] | None, default_pct: float) -> tuple[float, str]:
    spreads = [statistics.stdev(t) for t in (_clean(base_trials), _clean(new_trials)) if len(t) >= 2]
    if spreads:
        n = max(len(_clean(base_trials)), len(_clean(new_trials)))
        return 2.0 * max(spreads), f"±2σ of trials, n={n}"
    pct = (tolerances_pct or {}).get(metric)
    if pct is not None:
        return abs(base) * pct / 100.0, f"±{pct:g}% lab tolerance"
    return abs(base) * default_pct / 100.0, f"±{default_pct:g}% default"


def classify_change(
    metric: str,
    base: float | None,
    value: float | None,
    better: str | None,
    *,
    base_trials: Sequence[float] = (),
    new_trials: Sequence[float] = (),
    tolerances_pct: Mapping[str, float] | None = None,
    default_pct: float = DEFAULT_NOISE_PCT,
    absolute: Mapping[str, float] | None = None,
) -> Change:
    """The one classification: better / worse / within noise (or same, changed, new, missing, n/a)."""
    base = None if base is None or math.isnan(base) else float(base)
    value = None if value is None or math.isnan(value) else float(value)
    if base is None and value is None:
        return Change("n/a", None, None)
    if base is None:
        return Change("new", None, value)
    if value is None:
        return Change("missing", base, None)
    if value == base:
        return Change("same", base, value)
    noise, source = noise_band(metric, base, base_trials, new_trials, tolerances_pct, default_pct, absolute)
    if abs(value - base) <= noise:
        return Change("within noise", base, value, noise, source)
    if better not in ("higher", "lower"):
        return Change("changed", base, value, noise, source)
    up = value > base
    return Change("better" if up == (better == "higher") else "worse", base, value, noise, source)

"""Measure -> result -> judge, kept apart (as LNST and pytest-benchmark do).

* measure: a ``Measurement`` is what a traffic runner saw: raw samples (per-interval
  bit/s from iperf3, per-packet rtts from ping) with their unit, parameters and time span.
* result: a ``Result`` is one number computed from those samples (mean, median, ...),
  tagged with the test, the lab and which direction is better. Results are what the
  history store keeps and what trend and compare work on.
* judge: a ``Threshold`` (from lab.toml) or a baseline tolerance (``--baseline``) turns a
  result into a ``Verdict`` that says what was expected and what was seen.

The run-level records (``RunFingerprint``, ``TestOutcome``, ``CommandRecord``, ``RunRecord``)
live here too, so that the pytest plugin, the report writers and the history store share
one vocabulary. Nothing here does I/O; ``RunCollector`` (which does) is in
``vdpalab.history.collector``.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from vdpalab.errors import VdpaLabError

Better = Literal["higher", "lower"]
Outcome = Literal["passed", "failed", "skipped", "error"]
RunStatus = Literal["complete", "incomplete", "failed"]

OUTCOMES: tuple[str, ...] = ("passed", "failed", "skipped", "error")
RUN_STATUSES: tuple[str, ...] = ("complete", "incomplete", "failed")

#: Components a fingerprint knows by name (others are allowed, these are shown first).
COMPONENTS: tuple[str, ...] = (
    "kernel", "nic_driver", "nic_firmware", "ofed", "ovs", "dpdk", "qemu", "libvirt",
)


class ResultsError(VdpaLabError):
    """A result, threshold or baseline specification is malformed."""


# --------------------------------------------------------------------------- helpers


def canonical_params(params: Mapping[str, Any] | None) -> str:
    """The one text form of a parameter set: the key of a series in the store and the CSV.

    Sorted keys and no spaces, so that ``{"streams": 2, "size": 56}`` written by two xdist
    workers is byte-identical and the unique constraint can deduplicate it.
    """
    return json.dumps(dict(params or {}), sort_keys=True, separators=(",", ":"), default=str)


def iso(ts: float | None) -> str:
    """Epoch seconds -> ISO 8601 UTC with milliseconds ('' for None), for CSV, JUnit and HTML."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_LOWER_HINTS = re.compile(r"(rtt|latency|lat_|jitter|loss|drop|err|retrans|_ms$|_us$|_ns$|_s$|duration|cpu)")
_HIGHER_HINTS = re.compile(r"(throughput|gbps|mbps|bps|pps|rate|bandwidth|goodput|tx_pkts|rx_pkts|ops)")


def default_better(metric: str) -> Better | None:
    """Direction of better guessed from a metric name (rtt and loss are lower-is-better).

    Only a fallback: a ``Result`` should say ``better`` itself. Returns None when the
    name says nothing; such series are shown but never called a regression.
    """
    name = metric.lower()
    if _HIGHER_HINTS.search(name):
        return "higher"
    if _LOWER_HINTS.search(name):
        return "lower"
    return None


def new_run_id(label: str = "run", started: float | None = None) -> str:
    """A sortable, unique run id: ``20260124-021500-emu-3fa2c1`` (UTC time, label, random)."""
    ts = datetime.fromtimestamp(time.time() if started is None else started, UTC)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:32] or "run"
    return f"{ts:%Y%m%d-%H%M%S}-{slug}-{uuid.uuid4().hex[:6]}"


_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.:+-]{1,128}$")


def check_run_id(run_id: str) -> str:
    """Run ids become directory names: refuse anything that could escape ``reports/``."""
    if not _RUN_ID_RE.match(run_id) or run_id in {".", "..", "latest"}:
        raise ResultsError(f"bad run id {run_id!r}: use letters, digits and . _ - : + (not 'latest')")
    return run_id


# --------------------------------------------------------------------------- measure


def _percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    if not sorted_values:
        return math.nan
    k = (len(sorted_values) - 1) * pct / 100.0
    lo = math.floor(k)
    hi = math.ceil(k)
    if lo == hi:
        return float(sorted_values[lo])
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo))


STATS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": lambda s: float(statistics.fmean(s)) if s else math.nan,
    "median": lambda s: float(statistics.median(s)) if s else math.nan,
    "min": lambda s: float(min(s)) if s else math.nan,
    "max": lambda s: float(max(s)) if s else math.nan,
    "stdev": lambda s: float(statistics.pstdev(s)) if len(s) > 1 else 0.0,
    "sum": lambda s: float(math.fsum(s)),
    "last": lambda s: float(s[-1]) if s else math.nan,
    "p90": lambda s: _percentile(sorted(s), 90),
    "p99": lambda s: _percentile(sorted(s), 99),
}


@dataclass(frozen=True)
class Measurement:
    """Raw samples of one quantity from one traffic run (the measure stage)."""

    name: str
    unit: str
    samples: tuple[float, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", tuple(float(s) for s in self.samples))
        object.__setattr__(self, "params", dict(self.params))

    def stat(self, how: str | Callable[[Sequence[float]], float] = "mean") -> float:
        func = STATS[how] if isinstance(how, str) else how
        return func(self.samples)

    def to_result(
        self,
        test_id: str,
        lab: str,
        *,
        stat: str | Callable[[Sequence[float]], float] = "mean",
        name: str | None = None,
        better: Better | Literal["auto"] | None = "auto",
        trial: int = 0,
        scale: float = 1.0,
        unit: str | None = None,
    ) -> Result:
        """Reduce the samples to one number: ``ping.to_result(tid, lab, stat="max", name="rtt_max_ms")``.

        ``scale`` converts units on the way (bit/s samples -> ``scale=1e-9, unit="Gbit/s"``);
        the stored samples are scaled too so that charts and the value agree.
        """
        samples = tuple(s * scale for s in self.samples) if scale != 1.0 else self.samples
        metric = name or (self.name if isinstance(stat, str) and stat == "mean" else f"{self.name}_{stat}")
        func = STATS[stat] if isinstance(stat, str) else stat
        return Result(
            name=metric,
            value=func(samples),
            unit=self.unit if unit is None else unit,
            samples=samples,
            params=self.params,
            test_id=test_id,
            lab=lab,
            better=default_better(metric) if better == "auto" else better,
            started=self.started,
            ended=self.ended,
            trial=trial,
        )


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class Result:
    """One number per metric per test per parameter set (the result stage).

    ``(lab, test_id, name, params_key, trial)`` identifies it inside a run; writing the same
    result twice (an xdist retry, a re-sent report) is an idempotent upsert in the store.
    ``started``/``ended`` are epoch seconds of the measurement: they prove later that
    measurements on one lab never overlapped.
    """

    name: str
    value: float
    unit: str
    samples: tuple[float, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    test_id: str = ""
    lab: str = ""
    better: Better | None = None
    started: float | None = None
    ended: float | None = None
    trial: int = 0
    sample_count: int | None = None  # set when ``samples`` is a subsample (the store keeps at most 20000)

    def __post_init__(self) -> None:
        if not self.name:
            raise ResultsError("a result needs a metric name")
        if self.better not in (None, "higher", "lower"):
            raise ResultsError(f"{self.name}: better must be 'higher', 'lower' or None, not {self.better!r}")
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "samples", tuple(float(s) for s in self.samples))
        object.__setattr__(self, "params", dict(self.params))

    @classmethod
    def from_samples(
        cls,
        name: str,
        samples: Iterable[float],
        unit: str,
        *,
        test_id: str = "",
        lab: str = "",
        params: Mapping[str, Any] | None = None,
        stat: str = "mean",
        better: Better | Literal["auto"] | None = "auto",
        started: float | None = None,
        ended: float | None = None,
        trial: int = 0,
    ) -> Result:
        """Shortcut for measure+reduce when there is no separate Measurement object."""
        m = Measurement(name, unit, tuple(samples), params or {}, started, ended)
        return m.to_result(test_id, lab, stat=stat, name=name, better=better, trial=trial)

    @property
    def params_key(self) -> str:
        return canonical_params(self.params)

    @property
    def n_samples(self) -> int:
        return self.sample_count if self.sample_count is not None else len(self.samples)

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        """Identity inside one run (also the identity of a series across runs, minus trial)."""
        return (self.lab, self.test_id, self.name, self.params_key, self.trial)

    @property
    def series_key(self) -> tuple[str, str, str, str]:
        return (self.lab, self.test_id, self.name, self.params_key)

    @property
    def direction(self) -> Better | None:
        """``better`` if the result says it, else the guess from the name."""
        return self.better if self.better is not None else default_better(self.name)

    def stats(self) -> dict[str, float]:
        """Summary of the samples (empty when there are none) for reports and the store."""
        if not self.samples:
            return {}
        ordered = sorted(self.samples)
        return {
            "min": ordered[0],
            "max": ordered[-1],
            "mean": float(statistics.fmean(ordered)),
            "stdev": float(statistics.pstdev(ordered)) if len(ordered) > 1 else 0.0,
            "p50": _percentile(ordered, 50),
            "p99": _percentile(ordered, 99),
        }

    def with_(self, **changes: Any) -> Result:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what travels on a pytest report's ``user_properties`` under xdist)."""
        return {
            "name": self.name, "value": self.value, "unit": self.unit, "samples": list(self.samples),
            "params": dict(self.params), "test_id": self.test_id, "lab": self.lab, "better": self.better,
            "started": self.started, "ended": self.ended, "trial": self.trial, "sample_count": self.sample_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        """Inverse of ``to_dict``; also accepts the ``record`` fixture's entries (``lab`` may be None)."""
        return cls(
            name=data["name"], value=float(data["value"]), unit=data.get("unit") or "",
            samples=tuple(data.get("samples") or ()), params=data.get("params") or {},
            test_id=data.get("test_id") or "", lab=data.get("lab") or "", better=data.get("better"),
            started=data.get("started"), ended=data.get("ended"), trial=int(data.get("trial") or 0),
            sample_count=data.get("sample_count"),
        )


# --------------------------------------------------------------------------- judge


class VerdictStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NO_BASELINE = "no baseline"


@dataclass(frozen=True)
class Verdict:
    """What a judge said about one result: pass, fail or 'no baseline', with expected vs seen.

    ``ok`` is True only for a pass: a missing baseline is *not* ok, so a caller that only
    looks at ``ok`` fails loudly instead of passing silently. ``failed`` is True only for
    a real failure; callers that want to tolerate the first run check ``status``.
    """

    metric: str
    status: VerdictStatus
    message: str
    expected: str = ""
    seen: float | None = None
    unit: str = ""
    kind: Literal["threshold", "baseline"] = "threshold"
    test_id: str = ""
    lab: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is VerdictStatus.PASS

    @property
    def failed(self) -> bool:
        return self.status is VerdictStatus.FAIL

    @property
    def params_key(self) -> str:
        return canonical_params(self.params)


_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "==": lambda a, b: a == b,
}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.6g}"
    return f"{text} {unit}".strip()


@dataclass(frozen=True)
class Threshold:
    """An absolute limit on a metric, e.g. ``Threshold("ping_loss_pct", "<=", 0)``.

    ``params`` narrows it to results whose parameters contain these items
    (``{"size": 1400}``); empty means every parameter set of the metric.
    """

    metric: str
    op: Literal["<=", "<", ">=", ">", "=="]
    limit: float
    unit: str = ""
    source: str = "lab.toml"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ResultsError(f"threshold on {self.metric}: unknown operator {self.op!r}")

    def applies_to(self, result: Result) -> bool:
        return result.name == self.metric and all(result.params.get(k) == v for k, v in self.params.items())

    def judge(self, result: Result) -> Verdict:
        expected = f"{self.op} {_fmt(self.limit, self.unit or result.unit)}"
        seen = result.value
        where = f" ({self.source})" if self.source else ""
        if math.isnan(seen):
            status, verb = VerdictStatus.FAIL, "no value was measured"
        elif _OPS[self.op](seen, self.limit):
            status, verb = VerdictStatus.PASS, "ok"
        else:
            status, verb = VerdictStatus.FAIL, "out of bounds"
        message = f"{result.name}: expected {expected}{where}, seen {_fmt(seen, result.unit)}: {verb}"
        return Verdict(
            metric=result.name, status=status, message=message, expected=expected, seen=seen,
            unit=result.unit, kind="threshold", test_id=result.test_id, lab=result.lab, params=result.params,
        )


def thresholds_from_config(thresholds: Any, *, source: str = "lab.toml [thresholds]") -> list[Threshold]:
    """lab.toml ``[thresholds]`` -> Threshold list, by naming convention.

    ``<metric>_max = x`` gives ``metric <= x`` and ``<metric>_min = y`` gives ``metric >= y``:
    ``ping_rtt_avg_ms_max = 2.0`` limits the result named ``ping_rtt_avg_ms``. Accepts the
    pydantic ``Thresholds`` model or any mapping, so new limits need no code here.
    """
    if hasattr(thresholds, "model_dump"):
        items = thresholds.model_dump()
    elif isinstance(thresholds, Mapping):
        items = dict(thresholds)
    else:
        raise ResultsError(f"thresholds must be a mapping, not {type(thresholds).__name__}")
    out: list[Threshold] = []
    for key, limit in items.items():
        if limit is None:
            continue
        if key.endswith("_max"):
            out.append(Threshold(key[: -len("_max")], "<=", float(limit), source=f"{source} {key}"))
        elif key.endswith("_min"):
            out.append(Threshold(key[: -len("_min")], ">=", float(limit), source=f"{source} {key}"))
        else:
            raise ResultsError(f"{source}: {key}: a threshold name must end in _max or _min")
    return out


def judge_thresholds(results: Iterable[Result], thresholds: Iterable[Threshold]) -> list[Verdict]:
    """Every threshold against every result it applies to (a result no threshold names gets none)."""
    limits = list(thresholds)
    return [t.judge(r) for r in results for t in limits if t.applies_to(r)]


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move against its baseline in the *bad* direction.

    ``relative`` is a fraction (``5%`` -> 0.05); otherwise ``amount`` is absolute, in the
    metric's unit. For metrics with no known direction, both ways count as bad.
    """

    metric: str
    amount: float
    relative: bool = True

    def describe(self) -> str:
        return f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"


def parse_baseline_spec(spec: str | None) -> dict[str, Tolerance]:
    """``'throughput_gbps:5%,rtt_avg_ms:10%'`` -> {metric: Tolerance}. Absolute: ``'rtt_max_ms:0.5'``."""
    out: dict[str, Tolerance] = {}
    if not spec:
        return out
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        metric, sep, amount = item.rpartition(":")
        metric = metric.strip()
        amount = amount.strip()
        if not sep or not metric or not amount:
            raise ResultsError(f"--baseline: {item!r}: expected METRIC:TOLERANCE, e.g. throughput_gbps:5%")
        relative = amount.endswith("%")
        try:
            value = float(amount[:-1] if relative else amount)
        except ValueError:
            raise ResultsError(f"--baseline: {item!r}: {amount!r} is not a number or a percentage")
        if value < 0 or math.isnan(value):
            raise ResultsError(f"--baseline: {item!r}: the tolerance must be >= 0")
        out[metric] = Tolerance(metric, value / 100.0 if relative else value, relative)
    return out


def judge_baseline(result: Result, baseline: Result | float | None, tolerance: Tolerance) -> Verdict:
    """One result against the same series in the baseline run; None -> 'no baseline'."""
    direction = result.direction
    base_value = baseline.value if isinstance(baseline, Result) else baseline
    common = {
        "metric": result.name, "seen": result.value, "unit": result.unit, "kind": "baseline",
        "test_id": result.test_id, "lab": result.lab, "params": result.params,
    }
    if base_value is None or math.isnan(base_value):
        return Verdict(
            status=VerdictStatus.NO_BASELINE,
            message=f"{result.name}: no baseline (no value for this metric/parameters in the baseline run); "
            f"seen {_fmt(result.value, result.unit)} - not judged",
            expected="no baseline", **common,
        )
    slack = abs(base_value) * tolerance.amount if tolerance.relative else tolerance.amount
    tol = tolerance.describe()
    if direction == "higher":
        bound = base_value - slack
        expected = f">= {_fmt(bound, result.unit)} (baseline {_fmt(base_value, result.unit)} - {tol})"
        ok = result.value >= bound
    elif direction == "lower":
        bound = base_value + slack
        expected = f"<= {_fmt(bound, result.unit)} (baseline {_fmt(base_value, result.unit)} + {tol})"
        ok = result.value <= bound
    else:
        expected = f"within ±{tol} of baseline {_fmt(base_value, result.unit)}"
        ok = abs(result.value - base_value) <= slack
    if math.isnan(result.value):
        ok = False
    delta = result.value - base_value
    pct = f" ({delta / base_value * 100:+.2f}%)" if base_value else ""
    message = (
        f"{result.name}: expected {expected}, seen {_fmt(result.value, result.unit)}; "
        f"Δ {delta:+.6g}{pct}: {'ok' if ok else 'worse than tolerated'}"
    )
    return Verdict(status=VerdictStatus.PASS if ok else VerdictStatus.FAIL, message=message, expected=expected,
                   **common)


def judge_against_baseline(
    results: Iterable[Result],
    baseline_results: Iterable[Result] | None,
    spec: str | Mapping[str, Tolerance] | None,
) -> list[Verdict]:
    """Every result whose metric is in the spec against the same series of the baseline run.

    ``baseline_results`` None means "there is no baseline run at all": each such metric
    gets a 'no baseline' verdict rather than silently passing.
    """
    tolerances = parse_baseline_spec(spec) if isinstance(spec, str) or spec is None else dict(spec)
    base = {r.key: r for r in baseline_results or ()}
    return [
        judge_baseline(r, base.get(r.key) or base.get((*r.series_key, 0)), tolerances[r.name])
        for r in results
        if r.name in tolerances
    ]


# --------------------------------------------------------------------------- run records


@dataclass(frozen=True)
class RunFingerprint:
    """What a lab was made of during a run: every version that can move a number.

    ``components`` maps a component (``kernel``, ``nic_driver``, ``nic_firmware``, ``ofed``,
    ``ovs``, ``dpdk``, ``qemu``, ``libvirt``, or anything else) to its version or None when
    it is absent or could not be probed.
    """

    lab: str
    components: Mapping[str, str | None] = field(default_factory=dict)
    host: str | None = None

    def __post_init__(self) -> None:
        components = {str(k): (None if v is None else str(v)) for k, v in dict(self.components).items()}
        object.__setattr__(self, "components", components)

    def get(self, component: str) -> str | None:
        return self.components.get(component)

    @property
    def kernel(self) -> str | None:
        return self.get("kernel")

    @property
    def nic_firmware(self) -> str | None:
        return self.get("nic_firmware")

    def ordered(self) -> list[tuple[str, str | None]]:
        """Known components first in a fixed order, then the others alphabetically."""
        known = [(c, self.components.get(c)) for c in COMPONENTS]
        extra = sorted((k, v) for k, v in self.components.items() if k not in COMPONENTS)
        return known + extra

    def to_dict(self) -> dict[str, Any]:
        return {"lab": self.lab, "host": self.host, "components": dict(self.ordered())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunFingerprint:
        return cls(lab=data["lab"], components=data.get("components") or {}, host=data.get("host"))


@dataclass(frozen=True)
class TestOutcome:
    """How one test ended, with what to look at when it failed."""

    __test__ = False  # not a pytest test class despite the name

    test_id: str
    outcome: Outcome
    duration: float = 0.0
    message: str = ""
    diagnostics: Mapping[str, str] = field(default_factory=dict)
    lab: str = ""
    started: float | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ResultsError(f"{self.test_id}: outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}")
        object.__setattr__(self, "diagnostics", {str(k): str(v) for k, v in dict(self.diagnostics).items()})

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_id": self.test_id, "lab": self.lab, "outcome": self.outcome, "duration": self.duration,
            "message": self.message, "diagnostics": dict(self.diagnostics), "started": self.started,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestOutcome:
        return cls(
            test_id=data["test_id"], outcome=data["outcome"], duration=float(data.get("duration") or 0.0),
            message=data.get("message") or "", diagnostics=data.get("diagnostics") or {},
            lab=data.get("lab") or "", started=data.get("started"),
        )


@dataclass(frozen=True)
class CommandRecord:
    """One line of the command log (what ran where, how it ended, how long it took)."""

    host: str
    command: str
    rc: int | None
    started: float
    duration: float
    lab: str = ""

    @classmethod
    def from_any(cls, obj: Any, lab: str = "") -> CommandRecord:
        """Accept ``CommandResult``/``HistoryEntry`` from ``vdpalab.hosts``, a mapping, or a 5-tuple."""
        if isinstance(obj, CommandRecord):
            return obj
        if isinstance(obj, Mapping):
            return cls(obj["host"], obj["command"], obj.get("rc"), float(obj["started"]),
                       float(obj.get("duration") or 0.0), obj.get("lab", lab) or lab)
        if isinstance(obj, tuple):
            return cls(str(obj[0]), str(obj[1]), obj[2], float(obj[3]), float(obj[4]), lab)
        return cls(obj.host, obj.command, obj.rc, float(obj.started), float(obj.duration), lab)

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "command": self.command, "rc": self.rc, "started": self.started,
                "duration": self.duration, "lab": self.lab}


@dataclass
class RunRecord:
    """Everything one pytest session produced: identity, fingerprints, outcomes, results, commands."""

    run_id: str
    started: float
    ended: float | None = None
    status: RunStatus = "incomplete"
    suite_revision: str | None = None
    pytest_args: tuple[str, ...] = ()
    fingerprints: dict[str, RunFingerprint] = field(default_factory=dict)
    outcomes: list[TestOutcome] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    commands: list[CommandRecord] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def labs(self) -> list[str]:
        names = set(self.fingerprints) | {o.lab for o in self.outcomes} | {r.lab for r in self.results}
        return sorted(n for n in names if n)

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for o in self.outcomes:
            counts[o.outcome] += 1
        return counts

    def outcome_of(self, test_id: str, lab: str = "") -> TestOutcome | None:
        return next((o for o in self.outcomes if o.test_id == test_id and (not lab or o.lab == lab)), None)

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

import numpy as np

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


def require_better(metric: str, better: object) -> Better:
    """The direction a new metric must state; anything else is a programming error, never guessed from the name."""
    if better not in ("higher", "lower"):
        raise ResultsError(f"metric {metric!r}: better must be 'higher' or 'lower', not {better!r} (never guessed)")
    return better


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


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method); NaN for no values."""
    if not len(values):
        return math.nan
    return float(np.percentile(values, pct))


STATS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": lambda s: float(statistics.fmean(s)) if s else math.nan,
    "median": lambda s: float(statistics.median(s)) if s else math.nan,
    "min": lambda s: float(min(s)) if s else math.nan,
    "max": lambda s: float(max(s)) if s else math.nan,
    "stdev": lambda s: float(statistics.pstdev(s)) if len(s) > 1 else 0.0,
    "sum": lambda s: float(math.fsum(s)),
    "last": lambda s: float(s[-1]) if s else math.nan,
    "p90": lambda s: percentile(s, 90),
    "p99": lambda s: percentile(s, 99),
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
        better: Better,
        trial: int = 0,
        scale: float = 1.0,
        unit: str | None = None,
    ) -> Result:
        """Reduce the samples to one number: ``m.to_result(tid, lab, stat="max", name="rtt_max_ms", better="lower")``.

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
            better=require_better(metric, better),
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
        """``better`` as recorded (None only for rows stored before the direction was mandatory)."""
        return self.better

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
            "p50": percentile(ordered, 50),
            "p99": percentile(ordered, 99),
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
#
# The judge's whole API (what the reports render and the plugin calls):
#
# * ``judge(results, thresholds=..., baseline=..., tolerances=...) -> list[Verdict]``: the one judging
#   stage; ``thresholds`` come from ``thresholds_from_config(lab.thresholds)``, ``baseline`` are the results
#   of the run ``vdpalab.history.baseline.pick_baseline`` chose, ``tolerances`` the ``--baseline`` spec.
# * ``Verdict``: one row per (result, limit): ``metric``, ``limit``, ``seen`` (measured), ``status``
#   (pass / fail / no baseline), ``direction`` (which way is better), ``kind`` (threshold or baseline),
#   ``expected`` and ``message`` as text; ``Verdict.row()`` is the flat dict of ``VERDICT_COLUMNS``
#   that CSV, JUnit and HTML show.


class VerdictStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NO_BASELINE = "no baseline"


VerdictKind = Literal["threshold", "baseline"]

#: The columns of a verdict row, in the order reports show them.
VERDICT_COLUMNS: tuple[str, ...] = (
    "lab", "test_id", "kind", "metric", "params", "direction", "limit", "measured", "unit", "verdict", "expected",
    "source", "message",
)


@dataclass(frozen=True)
class Verdict:
    """What the judge said about one result: pass, fail or 'no baseline', with the limit and the measured value.

    ``ok`` is True only for a pass: a missing baseline is *not* ok, so a caller that only
    looks at ``ok`` fails loudly instead of passing silently. ``failed`` is True only for
    a real failure; callers that want to tolerate the first run check ``status``.
    ``limit`` is the number ``seen`` was compared with (a minimum when ``direction`` is
    "higher", a maximum when "lower"); ``source`` says where it came from (the lab file's
    key, or the baseline run).
    """

    metric: str
    status: VerdictStatus
    message: str
    expected: str = ""
    seen: float | None = None
    unit: str = ""
    kind: VerdictKind = "threshold"
    test_id: str = ""
    lab: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    limit: float | None = None
    direction: Better | None = None
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", VerdictStatus(self.status))
        object.__setattr__(self, "params", dict(self.params))

    @property
    def ok(self) -> bool:
        return self.status is VerdictStatus.PASS

    @property
    def failed(self) -> bool:
        return self.status is VerdictStatus.FAIL

    @property
    def measured(self) -> float | None:
        return self.seen

    @property
    def params_key(self) -> str:
        return canonical_params(self.params)

    def row(self) -> dict[str, Any]:
        """The flat row of ``VERDICT_COLUMNS`` (CSV, JUnit properties, HTML tables)."""
        return {
            "lab": self.lab, "test_id": self.test_id, "kind": self.kind, "metric": self.metric,
            "params": self.params_key, "direction": self.direction or "", "limit": self.limit,
            "measured": self.seen, "unit": self.unit, "verdict": str(self.status), "expected": self.expected,
            "source": self.source, "message": self.message,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (travels from xdist workers on the test report)."""
        return {
            "metric": self.metric, "status": str(self.status), "message": self.message, "expected": self.expected,
            "seen": self.seen, "unit": self.unit, "kind": self.kind, "test_id": self.test_id, "lab": self.lab,
            "params": dict(self.params), "limit": self.limit, "direction": self.direction, "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(
            metric=data["metric"], status=VerdictStatus(data["status"]), message=data.get("message") or "",
            expected=data.get("expected") or "", seen=data.get("seen"), unit=data.get("unit") or "",
            kind=data.get("kind") or "threshold", test_id=data.get("test_id") or "", lab=data.get("lab") or "",
            params=data.get("params") or {}, limit=data.get("limit"), direction=data.get("direction"),
            source=data.get("source") or "",
        )


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
    """An absolute limit on a metric, e.g. ``Threshold("loss_pct", "<=", 0, test="test_flood_ping")``.

    ``test`` narrows it to one test function (``loss_pct`` of the flood ping, not of UDP);
    ``params`` to results whose parameters contain these items (``{"size": 1400}``).
    Empty means every test or parameter set of the metric.
    """

    metric: str
    op: Literal["<=", "<", ">=", ">", "=="]
    limit: float
    unit: str = ""
    source: str = "lab.toml"
    params: Mapping[str, Any] = field(default_factory=dict)
    test: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ResultsError(f"threshold on {self.metric}: unknown operator {self.op!r}")

    @property
    def direction(self) -> Better | None:
        return "higher" if self.op in (">=", ">") else "lower" if self.op in ("<=", "<") else None

    def applies_to(self, result: Result) -> bool:
        if result.name != self.metric:
            return False
        if self.test:
            name = result.test_id.rsplit("::", 1)[-1].split("[", 1)[0]
            if name != self.test:
                return False
        return all(result.params.get(k) == v for k, v in self.params.items())

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
            limit=self.limit, direction=self.direction, source=self.source,
        )


#: What each key of lab.toml's ``[thresholds]`` limits: (test function, metric as recorded, operator).
THRESHOLD_TARGETS: dict[str, tuple[str, str, Literal["<=", ">="]]] = {
    "ping_loss_pct_max": ("test_flood_ping", "loss_pct", "<="),
    "ping_rtt_avg_ms_max": ("test_flood_ping", "rtt_avg_ms", "<="),
    "ping_rtt_max_ms_max": ("test_flood_ping", "rtt_max_ms", "<="),
    "tcp_throughput_gbps_min": ("test_tcp_throughput", "throughput_gbps", ">="),
    "udp_loss_pct_max": ("test_udp_loss", "loss_pct", "<="),
}


def thresholds_from_config(thresholds: Any, *, source: str = "lab.toml [thresholds]") -> list[Threshold]:
    """lab.toml ``[thresholds]`` -> Threshold list, through ``THRESHOLD_TARGETS``.

    ``ping_rtt_avg_ms_max = 2.0`` limits ``rtt_avg_ms`` of ``test_flood_ping`` to <= 2.0.
    A key the table does not know is an error (the lab-file model forbids unknown keys, so
    such a key means the table was not updated with the model).
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
        if key not in THRESHOLD_TARGETS:
            raise ResultsError(f"{source}: {key}: no metric is known for this threshold "
                               f"(known: {', '.join(sorted(THRESHOLD_TARGETS))})")
        test, metric, op = THRESHOLD_TARGETS[key]
        out.append(Threshold(metric, op, float(limit), source=f"{source} {key}", test=test))
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


def judge_baseline(
    result: Result, baseline: Result | float | None, tolerance: Tolerance, *, source: str = "baseline"
) -> Verdict:
    """One result against the same series in the baseline run; None -> 'no baseline'."""
    direction = result.direction
    base_value = baseline.value if isinstance(baseline, Result) else baseline

    def verdict(status: VerdictStatus, message: str, expected: str, limit: float | None = None) -> Verdict:
        return Verdict(
            status=status, message=message, expected=expected, limit=limit, metric=result.name, seen=result.value,
            unit=result.unit, kind="baseline", test_id=result.test_id, lab=result.lab, params=result.params,
            direction=direction, source=source,
        )

    if base_value is None or math.isnan(base_value):
        return verdict(
            VerdictStatus.NO_BASELINE,
            f"{result.name}: no baseline (no value for this metric/parameters in the baseline run); "
            f"seen {_fmt(result.value, result.unit)} - not judged",
            "no baseline",
        )
    slack = abs(base_value) * tolerance.amount if tolerance.relative else tolerance.amount
    tol = tolerance.describe()
    bound: float | None
    if direction == "higher":
        bound = base_value - slack
        expected = f">= {_fmt(bound, result.unit)} (baseline {_fmt(base_value, result.unit)} - {tol})"
        ok = result.value >= bound
    elif direction == "lower":
        bound = base_value + slack
        expected = f"<= {_fmt(bound, result.unit)} (baseline {_fmt(base_value, result.unit)} + {tol})"
        ok = result.value <= bound
    else:
        bound = None
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
    return verdict(VerdictStatus.PASS if ok else VerdictStatus.FAIL, message, expected, bound)


def judge_against_baseline(
    results: Iterable[Result],
    baseline_results: Iterable[Result] | None,
    spec: str | Mapping[str, Tolerance] | None,
    *,
    source: str = "baseline",
) -> list[Verdict]:
    """Every result whose metric is in the spec against the same series of the baseline run.

    ``baseline_results`` None means "there is no baseline run at all": each such metric
    gets a 'no baseline' verdict rather than silently passing.
    """
    tolerances = parse_baseline_spec(spec) if isinstance(spec, str) or spec is None else dict(spec)
    base = {r.key: r for r in baseline_results or ()}
    return [
        judge_baseline(r, base.get(r.key) or base.get((*r.series_key, 0)), tolerances[r.name], source=source)
        for r in results
        if r.name in tolerances
    ]


def judge(
    results: Iterable[Result],
    *,
    thresholds: Iterable[Threshold] = (),
    baseline: Iterable[Result] | None = None,
    tolerances: str | Mapping[str, Tolerance] | None = None,
    baseline_source: str = "baseline",
) -> list[Verdict]:
    """The one judging stage: absolute limits (the lab's ``[thresholds]``) and, when ``tolerances``
    is given (``--baseline``), the baseline run's results. Returns every verdict, passing ones too."""
    items = list(results)
    verdicts = judge_thresholds(items, thresholds)
    if tolerances:
        verdicts += judge_against_baseline(items, baseline, tolerances, source=baseline_source)
    return verdicts


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


#: Outcomes that mean a test actually checked something (a skip checked nothing).
RAN_OUTCOMES = frozenset({"passed", "failed", "error"})


def ran_anything(outcomes: Iterable[TestOutcome]) -> bool:
    """Whether any test got as far as checking something (passed, failed or errored)."""
    return any(o.outcome in RAN_OUTCOMES for o in outcomes)


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


LayerPhase = Literal["up", "down"]


@dataclass(frozen=True)
class LayerRecord:
    """How one layer (or ``infrastructure``) of a lab ended in a run, kept apart from test outcomes.

    phase "up": ``status`` is the bring-up outcome: "up", "broken" (its dependants ERROR) or
    "not-applicable" (the lab file says it is absent: its dependants skip). phase "down": a
    teardown that failed ("broken"): the run's verdict is red even when every test passed.
    """

    lab: str
    layer: str
    phase: LayerPhase
    status: str
    reason: str = ""

    @property
    def broken(self) -> bool:
        return self.status == "broken"

    def to_dict(self) -> dict[str, Any]:
        return {"lab": self.lab, "layer": self.layer, "phase": self.phase, "status": self.status,
                "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerRecord:
        return cls(lab=data["lab"], layer=data["layer"], phase=data["phase"], status=data["status"],
                   reason=data.get("reason") or "")


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
    layers: list[LayerRecord] = field(default_factory=list)

    @property
    def teardown_failures(self) -> list[LayerRecord]:
        """Restores that failed (phase "down"): part of the verdict, shown in every report."""
        return [rec for rec in self.layers if rec.phase == "down" and rec.broken]

    @property
    def broken_layers(self) -> list[LayerRecord]:
        return [rec for rec in self.layers if rec.phase == "up" and rec.broken]

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

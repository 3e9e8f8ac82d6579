"""What one run showed, arranged for people: per lab, per check and parameter set, the key figures.

One arrangement feeds the terminal summary, report.html and (for the change classification)
``vdpalab compare``, so the three never disagree about a number, a verdict or a change:

* ``ReportContext``: what the history adds to a run: the baseline run per lab (the one
  ``pick_baseline`` chooses: explicit, pinned, or the last good run) and the headline figures
  over the lab's last ``SPARK_RUNS`` runs.
* ``build_view(run, context)``: checks (one per test id) with their figures, verdicts and
  changes against the baseline, failures first; the headline figures per lab.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from vdpalab.history.change import DEFAULT_NOISE_PCT, Change, classify_change
from vdpalab.results import Result, RunRecord, TestOutcome, Verdict, ran_anything
from vdpalab.testids import check_name, param_id

if TYPE_CHECKING:
    from vdpalab.history.store import HistoryStore

SPARK_RUNS = 30
OUTCOME_ORDER = {"failed": 0, "error": 1, "passed": 2, "skipped": 3}


# --------------------------------------------------------------------------- names


def first_line(message: str, limit: int = 200) -> str:
    """The line of a failure message worth showing: the first, joined with the next when it only
    announces a list (``threshold verdicts failed:``)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return text[:limit]


def fmt_value(value: float | None, unit: str = "") -> str:
    """Four significant digits, thousands grouped, with the unit: ``1.238 Gbit/s``, ``20,000 packets``."""
    if value is None or math.isnan(value):
        return "n/a"
    if value != 0 and abs(value) >= 10_000 and float(value).is_integer():
        text = f"{value:,.0f}"
    elif value != 0 and (abs(value) >= 1e7 or abs(value) < 1e-3):
        text = f"{value:.3e}"
    else:
        text = f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip() if unit and unit != "bool" else text


# --------------------------------------------------------------------------- headline figures


@dataclass(frozen=True)
class HeadlineSpec:
    """One figure of the first screen: a metric of a check, reduced over its parameter sets.

    ``per``: a parameter whose values must not be mixed in one number (an NDR of 64-byte frames
    and one of 1518-byte frames have nothing to average): the figure is for the smallest value
    the run measured (CSIT's headline is the 64-byte NDR), and says so.

    ``limit_metric``: what the check records instead of ``metric`` when the number was the tester's,
    not the datapath's (``tester_limit_pps``, parameter ``goal`` = ``key``). Such a parameter set is
    never part of the figure; the figure says how many there were, and when every set at the scope
    was tester-limited it reads "≥ limit, tester-limited" and is never compared with a baseline.
    """

    key: str
    title: str
    metric: str  # the name the suite's tests record
    check: str | None  # None: any test that records the metric (ndr_pps, pdr_pps)
    agg: Literal["max", "mean"]
    note: str
    per: str | None = None
    per_unit: str = ""
    limit_metric: str | None = None


HEADLINES: tuple[HeadlineSpec, ...] = (
    HeadlineSpec("ping_loss", "Flood ping loss", "loss_pct", "test_flood_ping", "max", "worst of"),
    HeadlineSpec("ping_rtt", "Flood ping rtt (avg)", "rtt_avg_ms", "test_flood_ping", "mean", "mean of"),
    HeadlineSpec("tcp", "TCP throughput", "throughput_gbps", "test_tcp_throughput", "mean", "mean of"),
    HeadlineSpec("udp", "UDP throughput", "throughput_gbps", "test_udp_loss", "mean", "mean of"),
    HeadlineSpec("ndr", "NDR", "ndr_pps", None, "mean", "mean of", per="frame_size", per_unit="B frames",
                 limit_metric="tester_limit_pps"),
    HeadlineSpec("pdr", "PDR", "pdr_pps", None, "mean", "mean of", per="frame_size", per_unit="B frames",
                 limit_metric="tester_limit_pps"),
)


def _agg(values: Sequence[float], how: str) -> float:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan
    return max(vals) if how == "max" else float(statistics.fmean(vals))


def _smallest(values: Iterable[object]) -> object:
    """The smallest of a parameter's values: numbers before names ("imix" only when alone)."""
    seen = {v for v in values if v is not None}
    numbers = [v for v in seen if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        return min(numbers)
    return min(seen, key=str) if seen else None


def headline_scope(results: Sequence[Result], spec: HeadlineSpec, lab: str) -> object:
    """The value of ``spec.per`` the headline shows for this run (None: the figure mixes nothing)."""
    if spec.per is None:
        return None
    return _smallest(r.params.get(spec.per) for r in [*_headline_results(results, spec, lab),
                                                        *tester_limited(results, spec, lab)])


def tester_limited(results: Sequence[Result], spec: HeadlineSpec, lab: str, scope: object = None) -> list[Result]:
    """The parameter sets of a headline whose number was the tester's limit (recorded as ``spec.limit_metric``)."""
    if spec.limit_metric is None:
        return []
    return [r for r in results if r.lab == lab and r.name == spec.limit_metric and r.params.get("goal") == spec.key
            and (scope is None or spec.per is None or r.params.get(spec.per) == scope)]


def _headline_results(results: Sequence[Result], spec: HeadlineSpec, lab: str, scope: object = None) -> list[Result]:
    return [r for r in results if r.lab == lab and r.name == spec.metric
            and (spec.check is None or check_name(r.test_id) == spec.check)
            and (scope is None or spec.per is None or r.params.get(spec.per) == scope)]


def headline_value(results: Sequence[Result], spec: HeadlineSpec, lab: str,
                   only: set[tuple[str, str]] | None = None, scope: object = None) -> tuple[float, int, str, str | None]:
    """(value, parameter sets, unit, better) of a headline over a run's results (``only``: these series)."""
    items = [r for r in _headline_results(results, spec, lab, scope)
             if only is None or (r.test_id, r.params_key) in only]
    if not items:
        return math.nan, 0, "", None
    by_series: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in items:
        by_series[(r.test_id, r.params_key)].append(r.value)
    values = [float(statistics.fmean(v)) for v in by_series.values()]
    return _agg(values, spec.agg), len(by_series), items[0].unit, items[0].direction


# --------------------------------------------------------------------------- what the history adds


@dataclass(frozen=True)
class Baseline:
    lab: str
    run_id: str
    how: str  # "last good run" / "pinned run" / "chosen run"
    results: tuple[Result, ...]
    fingerprint: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SparkPoint:
    run_id: str
    started: float
    value: float


@dataclass
class ReportContext:
    """History around one run: baselines per lab, headline series, noise tolerances, the trend page."""

    baselines: dict[str, Baseline] = field(default_factory=dict)
    sparks: dict[tuple[str, str], list[SparkPoint]] = field(default_factory=dict)
    noise_pct: dict[str, dict[str, float]] = field(default_factory=dict)  # lab -> metric -> percent
    default_noise_pct: dict[str, float] = field(default_factory=dict)  # lab -> percent
    trend_href: str | None = None
    noise_abs: dict[str, dict[str, float]] = field(default_factory=dict)  # lab -> metric -> the metric's unit

    def tolerances(self, lab: str) -> Tolerances:
        return Tolerances(self.noise_pct.get(lab, {}), self.default_noise_pct.get(lab, DEFAULT_NOISE_PCT),
                          self.noise_abs.get(lab, {}))


@dataclass(frozen=True)
class Tolerances:
    """One lab's noise bands, as ``classify_change`` takes them."""

    pct: Mapping[str, float]
    default_pct: float
    absolute: Mapping[str, float]

    def kwargs(self) -> dict[str, Any]:
        return {"tolerances_pct": self.pct, "default_pct": self.default_pct, "absolute": self.absolute}


TREND_HREF = "../trend/index.html"  # `vdpalab trend` writes reports/trend/ next to the run directories

#: pick_baseline's reasons, as the report and the summary say them.
HOW = {"explicit": "chosen run (--baseline-run)", "pinned": "pinned run", "last-good": "last good run",
       "last-good's baseline": "baseline of the last good run"}


def build_context(
    store: HistoryStore | None,
    run: RunRecord,
    *,
    baseline_run: str | None = None,
    noise_pct: Mapping[str, Mapping[str, float]] | None = None,
    default_noise_pct: Mapping[str, float] | None = None,
    trend_href: str | None = None,
    noise_abs: Mapping[str, Mapping[str, float]] | None = None,
) -> ReportContext:
    """Look up what the report and the summary need from the history (nothing when there is none)."""
    ctx = ReportContext(noise_pct={k: dict(v) for k, v in (noise_pct or {}).items()},
                        default_noise_pct=dict(default_noise_pct or {}), trend_href=trend_href,
                        noise_abs={k: dict(v) for k, v in (noise_abs or {}).items()})
    if store is None:
        return ctx
    from vdpalab.history.baseline import pick_baseline

    for lab in run.labs:
        choice = pick_baseline(store, lab, before=run.run_id, explicit=baseline_run)
        if choice.run_id and choice.run_id != run.run_id:
            try:
                base = store.load_run(choice.run_id)
            except Exception:  # a baseline that vanished is "no baseline", not a broken report
                base = None
            if base is not None:
                fp = base.fingerprints.get(lab)
                ctx.baselines[lab] = Baseline(lab, choice.run_id, HOW.get(choice.how, choice.how),
                                              tuple(r for r in base.results if r.lab == lab),
                                              dict(fp.components) if fp else {})
        ctx.sparks.update(_sparks(store, lab, run))
    return ctx


def _sparks(store: HistoryStore, lab: str, run: RunRecord) -> dict[tuple[str, str], list[SparkPoint]]:
    runs = store.runs_frame(lab=lab)
    if runs.empty:
        return {}
    current = runs[runs["run_id"] == run.run_id]
    if not current.empty:
        runs = runs[runs["started"] <= float(current.iloc[0]["started"])]
    runs = runs.drop_duplicates("run_id").tail(SPARK_RUNS)
    out: dict[tuple[str, str], list[SparkPoint]] = {}
    for spec in HEADLINES:
        frame = store.results_frame(lab=lab, metric=spec.metric, run_ids=list(runs["run_id"]))
        if frame.empty:
            continue
        if spec.check is not None:
            frame = frame[frame["test_id"].map(check_name) == spec.check]
        scope = headline_scope(run.results, spec, lab)
        if scope is not None:  # the same frame size as the figure above the sparkline
            frame = frame[frame["params_key"].map(lambda key: json.loads(key).get(spec.per) == scope)]
        points = []
        for run_id, started in zip(runs["run_id"], runs["started"], strict=True):
            part = frame[frame["run_id"] == run_id]
            if part.empty:
                continue
            per_series = part.groupby(["test_id", "params_key"])["value"].mean().tolist()
            points.append(SparkPoint(str(run_id), float(started), _agg(per_series, spec.agg)))
        if points:
            out[(lab, spec.key)] = points
    return out


# --------------------------------------------------------------------------- the view


@dataclass(frozen=True)
class FigureView:
    """One number of one check's parameter set, with its verdicts and its change against the baseline."""

    metric: str
    detail: str  # the parameters that tell this figure apart inside its test ("bridge=br30-ovs")
    value: float
    unit: str
    better: str | None
    trials: int
    verdicts: tuple[Verdict, ...]
    change: Change

    @property
    def failed(self) -> bool:
        return any(v.failed for v in self.verdicts)

    @property
    def label(self) -> str:
        return f"{self.metric} ({self.detail})" if self.detail else self.metric


@dataclass(frozen=True)
class CheckView:
    lab: str
    check: str
    params: str
    test_id: str
    outcome: str
    message: str
    duration: float
    diagnostics: Mapping[str, str]
    figures: tuple[FigureView, ...]

    @property
    def bad(self) -> bool:
        return self.outcome in ("failed", "error") or any(f.failed for f in self.figures)

    @property
    def title(self) -> str:
        return f"{self.check}[{self.params}]" if self.params else self.check


@dataclass(frozen=True)
class HeadlineView:
    spec: HeadlineSpec
    value: float
    unit: str
    sets: int
    change: Change
    spark: tuple[SparkPoint, ...]
    outcome: str  # worst outcome of the checks behind it ("passed", "failed", ...)
    scope: str = ""  # "64 B frames": the part of the measurements the figure is for (HeadlineSpec.per)
    limited: int = 0  # parameter sets at this scope whose result was the tester's limit (not in ``value``)
    limit: float = math.nan  # the smallest of those limits: the datapath lost nothing up to it

    @property
    def tester_limited(self) -> bool:
        """Every parameter set was limited by the tester: the figure is a lower bound, not the datapath's."""
        return self.sets == 0 and self.limited > 0

    @property
    def shown(self) -> str:
        if self.tester_limited:
            return f"≥ {fmt_value(self.limit, self.unit)}"
        return fmt_value(self.value, self.unit)

    @property
    def limited_text(self) -> str:
        """What the tester limited, in words ("" when nothing was)."""
        if not self.limited:
            return ""
        sets = f"{self.limited} parameter set{'s' if self.limited != 1 else ''}"
        if self.tester_limited:
            return (f"tester-limited ({sets}): no loss up to the generator's limit {fmt_value(self.limit, self.unit)};"
                    " the datapath's figure is at least that and was not measured")
        return (f"{sets} tester-limited (≥ {fmt_value(self.limit, self.unit)}, the generator's limit), "
                "not in this figure")


@dataclass(frozen=True)
class StatusFigure:
    """A headline that is a yes/no: counter symmetry, vDPA evidence."""

    title: str
    outcome: str  # passed / failed / error / skipped / not run
    text: str
    detail: str


@dataclass
class LabView:
    lab: str
    verdict: str  # "passed", "failed", "incomplete"
    baseline: Baseline | None
    headlines: list[HeadlineView]
    statuses: list[StatusFigure]
    checks: list[CheckView]
    counts: dict[str, int]
    teardown_failed: tuple[str, ...] = ()  # parts whose restore failed: the run is red even if every check passed

    @property
    def bad_checks(self) -> list[CheckView]:
        return [c for c in self.checks if c.bad]


@dataclass
class RunView:
    run: RunRecord
    labs: list[LabView]
    context: ReportContext

    @property
    def verdict(self) -> str:
        if self.run.status != "complete":
            return self.run.status
        return "failed" if any(lab.verdict == "failed" for lab in self.labs) else "passed"

    @property
    def incomplete_reason(self) -> str | None:
        """Why a run is not complete, in words: it checked nothing, or it never finished."""
        if self.run.status != "incomplete":
            return None
        if not ran_anything(self.run.outcomes):
            skipped = sum(1 for o in self.run.outcomes if o.outcome == "skipped")
            what = f"all {skipped} selected tests skipped" if skipped else "no test was selected or collected"
            return (f"No test ran ({what}): nothing was checked, so this run is not complete, "
                    "no baseline and no point of a trend.")
        return ("The session did not finish (it crashed, was killed, or is still running); "
                "what was measured before that is shown.")


def _varying(results: Sequence[Result]) -> list[str]:
    keys = sorted({k for r in results for k in r.params})
    return [k for k in keys if len({repr(r.params.get(k)) for r in results}) > 1]


#: The figures the terminal summary shows (besides any figure with a verdict): what people came for.
#: ``tester_limit_pps`` is there so a tester-limited NDR/PDR check is never "no key figures" on the terminal.
KEY_METRICS = frozenset({"loss_pct", "rtt_avg_ms", "throughput_gbps", "ndr_pps", "pdr_pps", "tester_limit_pps",
                         "uplink_rx_minus_rep_tx", "rep_rx_minus_uplink_tx", "vq_completed_desc_delta"})


def key_figure(result: Result, verdicts: Sequence[Verdict]) -> bool:
    """A figure worth a line in the report: it has a direction (better/worse means something) or a verdict."""
    return result.direction is not None or bool(verdicts)


def terminal_figure(figure: FigureView) -> bool:
    """A figure worth a line on the terminal: a key metric, or one with a verdict."""
    return figure.metric in KEY_METRICS or bool(figure.verdicts)


def _figures(results: Sequence[Result], verdicts: Mapping[tuple[str, str, str], list[Verdict]],
             baseline: Mapping[tuple[str, str, str], list[Result]], tolerances: Tolerances) -> list[FigureView]:
    by_metric: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_metric[r.name].append(r)
    out = []
    for metric in sorted(by_metric):
        items = by_metric[metric]
        varying = [k for k in _varying(items) if k != "attempts"]
        series: dict[str, list[Result]] = defaultdict(list)
        for r in items:
            series[r.params_key].append(r)
        for params_key, trials in series.items():
            first = trials[0]
            these = verdicts.get((first.test_id, metric, params_key), [])
            if not key_figure(first, these):
                continue
            values = [t.value for t in trials]
            base = baseline.get((first.test_id, metric, params_key), [])
            base_values = [b.value for b in base]
            change = classify_change(
                metric, _agg(base_values, "mean") if base else None, _agg(values, "mean"), first.direction,
                base_trials=base_values, new_trials=values, **tolerances.kwargs())
            detail = ", ".join(f"{k}={first.params.get(k)}" for k in varying)
            out.append(FigureView(metric, detail, _agg(values, "mean"), first.unit, first.direction, len(trials),
                                  tuple(these), change))
    return out


def _status_figures(lab: str, outcomes: Sequence[TestOutcome], results: Sequence[Result]) -> list[StatusFigure]:
    out = []
    sym = [o for o in outcomes if check_name(o.test_id) == "test_counter_symmetry"]
    if sym:
        worst = min(sym, key=lambda o: OUTCOME_ORDER[o.outcome]).outcome
        diffs = [abs(r.value) for r in results
                 if check_name(r.test_id) == "test_counter_symmetry" and r.name.endswith(("_minus_rep_tx",
                                                                                          "_minus_uplink_tx"))]
        n_ok = sum(o.outcome == "passed" for o in sym)
        text = f"{n_ok}/{len(sym)} symmetric" if worst != "skipped" else "skipped"
        detail = (f"largest rx−tx gap {fmt_value(max(diffs), 'packets')}" if diffs
                  else first_line(sym[0].message))
        out.append(StatusFigure("Counter symmetry", worst, text, detail))
    ev = [o for o in outcomes if check_name(o.test_id) == "test_vdpa_evidence"]
    if ev:
        o = ev[0]
        used = [r for r in results if r.name == "vdpa_evidence_ok"]
        source = str(used[0].params.get("evidence")) if used else ""
        text = {"passed": "yes", "skipped": "not applicable"}.get(o.outcome, "NO")
        detail = first_line(o.message) or (f"evidence: {source}" if source else "")
        out.append(StatusFigure("vDPA evidence used", o.outcome, text, detail))
    return out


def build_view(run: RunRecord, context: ReportContext | None = None) -> RunView:
    """Arrange ``run`` per lab and check (failed and errored first), with headline figures."""
    ctx = context or ReportContext()
    labs = []
    for lab in run.labs or [""]:
        results = [r for r in run.results if r.lab == lab or not lab]
        outcomes = [o for o in run.outcomes if o.lab == lab or not lab]
        tolerances = ctx.tolerances(lab)
        base = ctx.baselines.get(lab)
        base_by: dict[tuple[str, str, str], list[Result]] = defaultdict(list)
        for r in base.results if base else ():
            base_by[(r.test_id, r.name, r.params_key)].append(r)
        verdicts: dict[tuple[str, str, str], list[Verdict]] = defaultdict(list)
        for v in run.verdicts:
            if v.lab == lab or not lab:
                verdicts[(v.test_id, v.metric, v.params_key)].append(v)
        by_test: dict[str, list[Result]] = defaultdict(list)
        for r in results:
            by_test[r.test_id].append(r)
        checks = []
        seen = set()
        for o in outcomes:
            seen.add(o.test_id)
            figures = _figures(by_test.get(o.test_id, []), verdicts, base_by, tolerances)
            checks.append(CheckView(lab, check_name(o.test_id), param_id(o.test_id, lab), o.test_id, o.outcome,
                                    o.message, o.duration, o.diagnostics, tuple(figures)))
        for test_id, items in by_test.items():  # results of a test whose outcome was not recorded
            if test_id not in seen:
                figures = _figures(items, verdicts, base_by, tolerances)
                checks.append(CheckView(lab, check_name(test_id), param_id(test_id, lab), test_id, "error",
                                        "no outcome was recorded for this test", 0.0, {}, tuple(figures)))
        checks.sort(key=lambda c: (0 if c.bad else 1, OUTCOME_ORDER.get(c.outcome, 9), c.check, c.params))
        headlines = []
        for spec in HEADLINES:
            scope = headline_scope(results, spec, lab)
            value, sets, unit, better = headline_value(results, spec, lab, scope=scope)
            limits = tester_limited(results, spec, lab, scope)
            if sets == 0 and not limits:
                continue
            change = classify_change(spec.metric, None, value, better)
            mine = _headline_results(results, spec, lab, scope)
            if base and sets:  # compared on the parameter sets both runs measured, else the change means nothing
                common = ({(r.test_id, r.params_key) for r in mine}
                          & {(r.test_id, r.params_key) for r in _headline_results(base.results, spec, lab, scope)})
                if common:
                    base_value = headline_value(base.results, spec, lab, only=common)[0]
                    new_value = headline_value(results, spec, lab, only=common)[0]
                    change = classify_change(spec.metric, base_value, new_value, better,
                                             **tolerances.kwargs())
            tests = {r.test_id for r in [*mine, *limits]}  # the checks behind this figure, not every check of the lab
            behind = [o.outcome for o in outcomes if o.test_id in tests
                      or (spec.check is not None and check_name(o.test_id) == spec.check)]
            worst = min(behind, key=lambda x: OUTCOME_ORDER[x]) if behind else "passed"
            limited_sets = {(r.test_id, json.dumps({k: v for k, v in r.params.items() if k != "goal"}, sort_keys=True))
                            for r in limits}
            headlines.append(HeadlineView(spec, value, unit or (limits[0].unit if limits else ""), sets, change,
                                          tuple(ctx.sparks.get((lab, spec.key), ())), worst,
                                          f"{scope} {spec.per_unit}".strip() if scope is not None else "",
                                          len(limited_sets), min((r.value for r in limits), default=math.nan)))
        counts = dict.fromkeys(OUTCOME_ORDER, 0)
        for o in outcomes:
            counts[o.outcome] += 1
        teardown = tuple(t.layer for t in run.teardown_failures if t.lab == lab or not lab)
        failed = any(c.bad for c in checks) or bool(teardown)
        verdict = "failed" if failed else ("passed" if run.status == "complete" else run.status)
        labs.append(LabView(lab, verdict, base, headlines, _status_figures(lab, outcomes, results), checks, counts,
                            teardown))
    return RunView(run, labs, ctx)


def verdict_text(v: Verdict) -> str:
    """``✓ ≤ 2 ms`` / ``✗ ≥ 0.1 Gbit/s`` / ``? no baseline``: the limit, the measured value is beside it."""
    status = str(v.status)
    if status == "no baseline":
        return "? no baseline"
    expected = v.expected.split(" (")[0].replace("<=", "≤").replace(">=", "≥")
    kind = "" if v.kind == "threshold" else "vs baseline "
    return f"{'✓' if status == 'pass' else '✗'} {kind}{expected}"


__all__ = [
    "HEADLINES", "TREND_HREF", "Baseline", "CheckView", "FigureView", "HeadlineSpec", "HeadlineView", "LabView", "ReportContext",
    "RunView", "StatusFigure", "build_context", "build_view", "check_name", "first_line", "fmt_value",
    "headline_scope", "param_id", "tester_limited", "verdict_text",
]


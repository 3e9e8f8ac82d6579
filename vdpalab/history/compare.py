"""Two runs side by side: every shared metric with Δ and Δ%, and optional tolerances.

Run A is the reference (the baseline), run B the candidate. Trials of a series are
averaged per run. Metrics only in B have "no baseline"; metrics only in A are "missing in B".
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vdpalab.history.store import HistoryStore
from vdpalab.results import Result, Tolerance, Verdict, VerdictStatus, judge_baseline


@dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: list[dict[str, Any]]  # shared series
    only_a: list[dict[str, Any]] = field(default_factory=list)
    only_b: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(v.failed for v in self.verdicts)


def _mean_by_series(results: Sequence[Result]) -> dict[tuple[str, str, str, str], Result]:
    groups: dict[tuple[str, str, str, str], list[Result]] = {}
    for r in results:
        groups.setdefault(r.series_key, []).append(r)
    out = {}
    for key, items in groups.items():
        values = [r.value for r in items if not math.isnan(r.value)]
        value = sum(values) / len(values) if values else math.nan
        out[key] = items[0].with_(value=value, trial=0, samples=())
    return out


def _matches(value: str, pattern: str | None) -> bool:
    return pattern is None or fnmatch.fnmatchcase(value, pattern)


def compare_results(
    results_a: Sequence[Result],
    results_b: Sequence[Result],
    *,
    run_a: str = "A",
    run_b: str = "B",
    lab: str | None = None,
    metric: str | None = None,
    tolerances: Mapping[str, Tolerance] | None = None,
) -> Comparison:
    a = {k: r for k, r in _mean_by_series(results_a).items() if _matches(k[0], lab) and _matches(k[2], metric)}
    b = {k: r for k, r in _mean_by_series(results_b).items() if _matches(k[0], lab) and _matches(k[2], metric)}
    rows = []
    for key in sorted(a.keys() & b.keys()):
        ra, rb = a[key], b[key]
        direction = rb.direction or ra.direction
        delta = rb.value - ra.value
        pct = delta / abs(ra.value) * 100.0 if ra.value not in (0.0,) and not math.isnan(ra.value) else math.nan
        if math.isnan(delta) or delta == 0:
            change = "same" if delta == 0 else "n/a"
        elif direction is None:
            change = "changed"
        else:
            change = "better" if (delta > 0) == (direction == "higher") else "worse"
        params = ", ".join(f"{k}={v}" for k, v in sorted(rb.params.items()))
        test = key[1].rsplit("::", 1)[-1]
        rows.append({
            "lab": key[0], "test_id": key[1], "metric": key[2], "params": params, "unit": rb.unit or ra.unit,
            "better": direction or "", "a": ra.value, "b": rb.value, "delta": delta, "delta_pct": pct,
            "change": change, "label": f"{key[2]} · {test}" + (f" · {params}" if params else ""),
        })
    only_a = [{"lab": k[0], "test_id": k[1], "metric": k[2], "params": k[3], "a": a[k].value}
              for k in sorted(a.keys() - b.keys())]
    only_b = [{"lab": k[0], "test_id": k[1], "metric": k[2], "params": k[3], "b": b[k].value}
              for k in sorted(b.keys() - a.keys())]
    verdicts = []
    if tolerances:
        for key, rb in sorted(b.items()):
            if key[2] in tolerances:
                verdicts.append(judge_baseline(rb, a.get(key), tolerances[key[2]]))
        present = {k[2] for k in b}
        for name in sorted(set(tolerances) - present):
            verdicts.append(Verdict(metric=name, status=VerdictStatus.NO_BASELINE, kind="baseline",
                                    expected="no baseline",
                                    message=f"{name}: not measured in run {run_b} (nor judged): no baseline"))
    return Comparison(run_a, run_b, rows, only_a, only_b, verdicts)


def compare_runs(store: HistoryStore, run_a: str, run_b: str, **kwargs: Any) -> Comparison:
    """Resolve two run references (``latest``, ``latest~1``, prefixes) and compare them."""
    ida = store.resolve(run_a)
    idb = store.resolve(run_b)
    return compare_results(store.load_results(ida), store.load_results(idb), run_a=ida, run_b=idb, **kwargs)


def _num(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.5g}"


def format_comparison(cmp: Comparison, *, width_test: int = 40) -> str:
    """A fixed-width text table for the terminal (and for a nightly job's log)."""
    lines = [f"A = {cmp.run_a}", f"B = {cmp.run_b}", ""]
    header = ["lab", "test", "metric", "params", "A", "B", "Δ", "Δ%", "unit", "B vs A"]
    body = []
    for r in cmp.rows:
        test = r["test_id"].rsplit("::", 1)[-1]
        if len(test) > width_test:
            test = "…" + test[-(width_test - 1):]
        pct = "n/a" if math.isnan(r["delta_pct"]) else f"{r['delta_pct']:+.2f}%"
        delta = "n/a" if math.isnan(r["delta"]) else f"{r['delta']:+.5g}"
        body.append([r["lab"], test, r["metric"], r["params"] or "-", _num(r["a"]), _num(r["b"]), delta, pct,
                     r["unit"], r["change"]])
    if body:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
        numeric = {4, 5, 6, 7}
        def fmt(row: list[str]) -> str:
            return "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        lines.append(fmt(header))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(fmt(row) for row in body)
    else:
        lines.append("(no shared metrics)")
    n_better = sum(r["change"] == "better" for r in cmp.rows)
    n_worse = sum(r["change"] == "worse" for r in cmp.rows)
    lines.append("")
    lines.append(f"{len(cmp.rows)} shared metrics: {n_better} better, {n_worse} worse, "
                 f"{len(cmp.rows) - n_better - n_worse} same/undirected")
    for r in cmp.only_b:
        lines.append(f"no baseline: {r['lab']} {r['test_id']} {r['metric']} {r['params']} (only in B)")
    for r in cmp.only_a:
        lines.append(f"missing in B: {r['lab']} {r['test_id']} {r['metric']} {r['params']} (only in A)")
    if cmp.verdicts:
        lines.append("")
        for v in cmp.verdicts:
            lines.append(f"[{str(v.status).upper()}] {v.lab} {v.test_id} {v.message}".replace("  ", " "))
    return "\n".join(lines)

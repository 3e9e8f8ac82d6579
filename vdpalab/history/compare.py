"""Two runs side by side: what changed in the lab (versions), then every shared metric with Δ and Δ%.

Run A is the reference (the baseline), run B the candidate. Trials of a series are
averaged per run. A difference is "better"/"worse" only beyond the measurement's noise
(``vdpalab.history.change``: the trial spread, else the lab's tolerance, 5% by default),
otherwise "within noise". Metrics only in B have "no baseline"; metrics only in A are
"missing in B". ``tolerances`` (``--tolerance``) additionally judge B against A as a gate.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vdpalab.history.change import DEFAULT_NOISE_PCT, classify_change
from vdpalab.history.store import HistoryStore
from vdpalab.results import (
    COMPONENTS,
    Result,
    RunFingerprint,
    Tolerance,
    Verdict,
    VerdictStatus,
    judge_baseline,
)
from vdpalab.testids import check_name, param_id


@dataclass(frozen=True)
class VersionChange:
    lab: str
    component: str
    a: str | None
    b: str | None


@dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: list[dict[str, Any]]  # shared series
    only_a: list[dict[str, Any]] = field(default_factory=list)
    only_b: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    versions: list[VersionChange] = field(default_factory=list)  # components whose version differs
    compared_components: dict[str, list[str]] = field(default_factory=dict)  # lab -> components known in both

    @property
    def failed(self) -> bool:
        return any(v.failed for v in self.verdicts)


def _mean_by_series(results: Sequence[Result]) -> dict[tuple[str, str, str, str], tuple[Result, list[float]]]:
    """Per series: the trials averaged into one Result, and the trial values (the noise estimate)."""
    groups: dict[tuple[str, str, str, str], list[Result]] = {}
    for r in results:
        groups.setdefault(r.series_key, []).append(r)
    out = {}
    for key, items in groups.items():
        values = [r.value for r in items if not math.isnan(r.value)]
        value = sum(values) / len(values) if values else math.nan
        out[key] = (items[0].with_(value=value, trial=0, samples=()), values)
    return out


def version_changes(a: Mapping[str, RunFingerprint], b: Mapping[str, RunFingerprint],
                    lab: str | None = None) -> tuple[list[VersionChange], dict[str, list[str]]]:
    """Components (kernel, firmware, OFED, OVS, DPDK, QEMU, libvirt, ...) whose version differs per lab."""
    changes = []
    compared: dict[str, list[str]] = {}
    for name in sorted(set(a) | set(b)):
        if not _matches(name, lab):
            continue
        fa = a.get(name) or RunFingerprint(name)
        fb = b.get(name) or RunFingerprint(name)
        known = [c for c, _ in fb.ordered() if c in fa.components or c in fb.components]
        for comp in dict.fromkeys([*COMPONENTS, *known]):
            va, vb = fa.get(comp), fb.get(comp)
            if va != vb:
                changes.append(VersionChange(name, comp, va, vb))
        compared[name] = [c for c in dict.fromkeys([*COMPONENTS, *known]) if fa.get(c) or fb.get(c)]
    return changes, compared


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
    noise_pct: Mapping[str, float] | None = None,
    default_noise_pct: float = DEFAULT_NOISE_PCT,
    noise_abs: Mapping[str, float] | None = None,
) -> Comparison:
    sa = {k: v for k, v in _mean_by_series(results_a).items() if _matches(k[0], lab) and _matches(k[2], metric)}
    sb = {k: v for k, v in _mean_by_series(results_b).items() if _matches(k[0], lab) and _matches(k[2], metric)}
    a = {k: v[0] for k, v in sa.items()}
    b = {k: v[0] for k, v in sb.items()}
    rows: list[dict[str, Any]] = []
    for key in sorted(a.keys() & b.keys()):
        ra, rb = a[key], b[key]
        direction = rb.direction or ra.direction
        delta = rb.value - ra.value
        pct = delta / abs(ra.value) * 100.0 if ra.value not in (0.0,) and not math.isnan(ra.value) else math.nan
        moved = classify_change(key[2], ra.value, rb.value, direction, base_trials=sa[key][1], new_trials=sb[key][1],
                                tolerances_pct=noise_pct, default_pct=default_noise_pct, absolute=noise_abs)
        change = moved.kind
        params = ", ".join(f"{k}={v}" for k, v in sorted(rb.params.items()))
        rows.append({
            "lab": key[0], "test_id": key[1], "metric": key[2], "params": params, "unit": rb.unit or ra.unit,
            "better": direction or "", "a": ra.value, "b": rb.value, "delta": delta, "delta_pct": pct,
            "change": change, "noise": moved.noise_source, "trials": max(len(sa[key][1]), len(sb[key][1])),
            "label": f"{key[2]} · {check_name(key[1])}" + (f"[{pid}]" if (pid := param_id(key[1], key[0])) else ""),
        })
    labels = [r["label"] for r in rows]
    for r in rows:  # the test id does not tell two series apart (one per bridge): add the parameters
        if labels.count(r["label"]) > 1 and r["params"]:
            r["label"] += f" · {r['params']}"
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
    rec_a, rec_b = store.load_run(ida), store.load_run(idb)
    cmp = compare_results(rec_a.results, rec_b.results, run_a=ida, run_b=idb, **kwargs)
    cmp.versions, cmp.compared_components = version_changes(rec_a.fingerprints, rec_b.fingerprints,
                                                            kwargs.get("lab"))
    return cmp


def _num(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.5g}"


def format_comparison(cmp: Comparison, *, width_test: int = 40) -> str:
    """A fixed-width text table for the terminal (and for a nightly job's log)."""
    lines = [f"A = {cmp.run_a}", f"B = {cmp.run_b}", "", "What changed in the lab (A -> B):"]
    for lab_name, components in sorted(cmp.compared_components.items()):
        changed = [c for c in cmp.versions if c.lab == lab_name]
        if not changed:
            lines.append(f"  {lab_name}: nothing ({', '.join(components) or 'no versions recorded'} identical)")
        for c in changed:
            lines.append(f"  {lab_name}: {c.component}: {c.a or 'unknown'} -> {c.b or 'unknown'}")
    if not cmp.compared_components:
        lines.append("  (no fingerprints recorded)")
    lines += ["", "Metrics (B vs A; better/worse only beyond the noise band, else within noise):"]
    header = ["lab", "metric", "test", "params", "A", "B", "Δ", "Δ%", "unit", "B vs A", "noise band"]
    body = []
    for r in cmp.rows:
        test = r["test_id"].rsplit("::", 1)[-1]
        if len(test) > width_test:
            test = "…" + test[-(width_test - 1):]
        pct = "n/a" if math.isnan(r["delta_pct"]) else f"{r['delta_pct']:+.2f}%"
        delta = "n/a" if math.isnan(r["delta"]) else f"{r['delta']:+.5g}"
        body.append([r["lab"], r["metric"], test, r["params"] or "-", _num(r["a"]), _num(r["b"]), delta, pct,
                     r["unit"], r["change"], r.get("noise") or ""])
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
    n_noise = sum(r["change"] == "within noise" for r in cmp.rows)
    lines.append(f"{len(cmp.rows)} shared metrics: {n_better} better, {n_worse} worse, {n_noise} within noise, "
                 f"{len(cmp.rows) - n_better - n_worse - n_noise} same/undirected")
    for r in cmp.only_b:
        lines.append(f"no baseline: {r['lab']} {r['test_id']} {r['metric']} {r['params']} (only in B)")
    for r in cmp.only_a:
        lines.append(f"missing in B: {r['lab']} {r['test_id']} {r['metric']} {r['params']} (only in A)")
    if cmp.verdicts:
        lines.append("")
        for v in cmp.verdicts:
            lines.append(f"[{str(v.status).upper()}] {v.lab} {v.test_id} {v.message}".replace("  ", " "))
    return "\n".join(lines)

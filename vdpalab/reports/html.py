"""``report.html``: one self-contained file (inline CSS, charts as inline PNG/SVG, no JavaScript).

Headline first: the first screen answers "did the datapath work, how fast, compared with the
last good run": the verdict, the headline figures each with its change against the baseline
and a sparkline of the lab's last runs. Then failures with their diagnostics, one section per
check with its threshold verdicts, the fingerprint (next to the baseline's) and the command
log. Rendered from Jinja2 templates with autoescape, so no text from a test can inject markup.
"""

from __future__ import annotations

import base64
import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
from markupsafe import Markup

from vdpalab import __version__
from vdpalab.reports import charts
from vdpalab.reports.view import (
    CheckView,
    ReportContext,
    RunView,
    SparkPoint,
    build_view,
    first_line,
    fmt_value,
    verdict_text,
)
from vdpalab.results import Result, RunRecord, iso
from vdpalab.testids import check_name, param_id

if TYPE_CHECKING:
    from vdpalab.history.trend import SeriesTrend

MAX_CHECK_CHARTS = 24
MAX_COMMAND_ROWS = 5000
TEMPLATES = Path(__file__).parent / "templates"


@cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment of the reports (report.html and the trend page)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["iso"] = iso
    env.filters["value"] = fmt_value
    env.filters["duration"] = duration
    env.filters["verdict"] = verdict_text
    env.filters["pct"] = _pct
    return env


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {sec:02d}s" if hours else f"{minutes}m {sec:02d}s"


def _pct(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:+.2f}%"


def png_img(png: bytes, alt: str) -> Markup:
    data = base64.b64encode(png).decode()
    return Markup('<img class="chart" alt="{}" src="data:image/png;base64,{}">').format(alt, data)


def sparkline(points: Sequence[SparkPoint], current: str, unit: str, *, width: int = 240,
              height: int = 48) -> Markup:
    """The headline figure over the lab's last runs as inline SVG (this run's point filled in)."""
    pts = [p for p in points if not math.isnan(p.value)]
    if len(pts) < 2:
        return Markup('<div class="spark-empty">{}</div>').format(
            "first run of this figure in the history" if pts else "no history")
    lo = min(p.value for p in pts)
    hi = max(p.value for p in pts)
    span = (hi - lo) or (abs(hi) or 1.0)
    pad = 5
    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + i * (width - 2 * pad) / (len(pts) - 1)
        y = height - pad - (v - lo) / span * (height - 2 * pad)
        return round(x, 1), round(y, 1)
    coords = [xy(i, p.value) for i, p in enumerate(pts)]
    line = " ".join(f"{x},{y}" for x, y in coords)
    dots = []
    for (x, y), p in zip(coords, pts, strict=True):
        here = p.run_id == current
        dots.append(Markup('<circle cx="{}" cy="{}" r="{}" class="{}"><title>{} · {}</title></circle>').format(
            x, y, 3.6 if here else 1.8, "here" if here else "dot", iso(p.started)[:16].replace("T", " "),
            fmt_value(p.value, unit)))
    label = f"last {len(pts)} runs: {fmt_value(lo, unit)} – {fmt_value(hi, unit)}"
    return Markup(
        '<svg class="spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{label}">'
        '<polyline points="{line}" class="line"/>{dots}</svg><div class="spark-range">{label}</div>'
    ).format(w=width, h=height, label=label, line=line, dots=Markup("").join(dots))


def _check_charts(checks: Sequence[CheckView], results: Sequence[Result], budget: list[int]) -> list[Markup]:
    """Per check: one bar chart per directional metric across its parameter sets, and raw samples once."""
    ids = {c.test_id for c in checks}
    items = [r for r in results if r.test_id in ids]
    out: list[Markup] = []
    by_metric: dict[str, list[Result]] = defaultdict(list)
    for r in items:
        by_metric[r.name].append(r)
    for name, rs in sorted(by_metric.items()):
        if budget[0] <= 0:
            break
        if rs[0].direction is None or len(rs) < 2 or len({round(r.value, 12) for r in rs}) < 2:
            continue
        rs.sort(key=lambda r: (r.test_id, r.params_key, r.trial))
        out.append(png_img(charts.metric_chart(rs, title=f"{name} ({rs[0].unit}) per parameter set"), name))
        budget[0] -= 1
    sampled = [r for r in items if len(r.samples) >= 3 and r.direction is not None]
    if sampled and budget[0] > 0:
        first = sampled[0].name
        same = [r for r in sampled if r.name == first]
        first_of: dict[tuple[float, ...], Result] = {}
        for r in same:
            first_of.setdefault(r.samples, r)  # one result per sample set, in order of appearance
        fresh = list(first_of.values())
        out.append(png_img(charts.samples_chart(fresh, title=f"{first}: raw samples ({fresh[0].unit})"),
                           f"{first} samples"))
        budget[0] -= 1
    return out


def _fingerprint_rows(view: RunView) -> list[dict[str, object]]:
    """component, then per lab: this run's version, the baseline's, and whether it changed."""
    run = view.run
    labs = sorted(run.fingerprints)
    names: list[str] = []
    for lab in labs:
        for name, _ in run.fingerprints[lab].ordered():
            if name not in names:
                names.append(name)
    rows: list[dict[str, object]] = []
    for name in names:
        cells: list[dict[str, object]] = []
        for lab in labs:
            now = run.fingerprints[lab].get(name)
            base = view.context.baselines.get(lab)
            before = base.fingerprint.get(name) if base else None
            cells.append({"now": now, "before": before, "changed": base is not None and before != now})
        rows.append({"name": name, "cells": cells})
    return rows


def render_html(
    run: RunRecord,
    *,
    store_errors: Sequence[str] = (),
    history_url: str | None = None,
    context: ReportContext | None = None,
) -> str:
    view = build_view(run, context)
    budget = [MAX_CHECK_CHARTS]
    sections = []
    for lab in view.labs:
        groups: dict[str, list[CheckView]] = defaultdict(list)
        for c in lab.checks:
            groups[c.check].append(c)
        order = sorted(groups, key=lambda name: (not any(c.bad for c in groups[name]), name))
        for name in order:
            checks = sorted(groups[name], key=lambda c: c.params)
            sections.append({
                "lab": lab.lab, "check": name, "checks": checks, "bad": any(c.bad for c in checks),
                "outcomes": {o: sum(c.outcome == o for c in checks) for o in ("passed", "failed", "error", "skipped")},
                "charts": _check_charts(checks, run.results, budget),
                "anchor": anchor(f"{lab.lab}-{name}"),
            })
    sparks: dict[tuple[str, str], Markup] = {}
    for lab in view.labs:
        for h in lab.headlines:
            sparks[(lab.lab, h.spec.key)] = sparkline(h.spark, run.run_id, h.unit)
    return environment().get_template("report.html.j2").render(
        view=view, run=run, sections=sections, sparks=sparks, store_errors=list(store_errors),
        history_url=history_url, fingerprint_rows=_fingerprint_rows(view), labs_text=", ".join(run.labs) or "no lab",
        commands=run.commands[:MAX_COMMAND_ROWS], more_commands=max(0, len(run.commands) - MAX_COMMAND_ROWS),
        bad_commands=sum(1 for c in run.commands if c.rc not in (0, None)), anchor=anchor,
        change_class=change_class, first_line=first_line, version=__version__, generated=iso(time.time()),
        trend_href=view.context.trend_href,
    )


def change_class(kind: str) -> str:
    return {"better": "ch-better", "worse": "ch-worse", "within noise": "ch-noise"}.get(kind, "ch-none")


def anchor(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text)[:120]



def render_trend_page(trends: Sequence[SeriesTrend], *, filters: str = "", window: int = 0,
                      bands: Sequence[str] = ()) -> str:
    """``reports/trend/index.html``: regressions/progressions of the last 1, 7, 130 days, then every series.

    ``bands``: one line per lab saying which noise bands judged it (changes inside them are not counted)."""
    from vdpalab.history.trend import PERIODS_DAYS, anomalies_in_period

    def ident(t: SeriesTrend) -> dict[str, object]:
        test = check_name(t.test_id) + (f"[{pid}]" if (pid := param_id(t.test_id, t.lab)) else "")
        return {"metric": t.metric, "test": test, "lab": t.lab, "params": t.params_text, "unit": t.unit,
                "chart": t.chart, "anchor": anchor(f"s-{t.lab}-{t.test_id}-{t.metric}-{t.params_key}"),
                "label": t.label}

    newest = max((p.started for t in trends for p in t.points), default=time.time())
    periods = []
    for days in PERIODS_DAYS:
        rows = []
        for t, a in anomalies_in_period(trends, days, now=newest):
            rows.append({**ident(t), "kind": a.kind, "before": a.before, "after": a.after,
                         "after_failed": math.isnan(a.after), "delta_pct": a.delta_pct, "run_id": a.run_id,
                         "env": t.points[a.index].env})
        periods.append({"days": days, "since": newest - days * 86400.0, "rows": rows})
    ordered = sorted(trends, key=lambda t: (not t.regressed, not t.anomalies, t.label))
    rows = [{**ident(t), "status": t.last_status, "points": len(t.points), "anomalies": len(t.anomalies),
             "avg": t.groups[-1].avg if t.groups else math.nan, "within_noise": t.within_noise,
             "band_pct": t.bands.pct_of(t.metric)} for t in ordered]
    regressed = [ident(t) for t in ordered if t.regressed]
    return environment().get_template("trend.html.j2").render(
        trends=trends, rows=rows, periods=periods, regressed=regressed, n_regressed=len(regressed), bands=bands,
        within_noise=sum(t.within_noise for t in trends),
        newest=newest, window=window, filters=filters, generated=iso(time.time()), version=__version__)


def write_html(
    run: RunRecord,
    path: str | os.PathLike[str],
    *,
    store_errors: Sequence[str] = (),
    history_url: str | None = None,
    context: ReportContext | None = None,
) -> Path:
    path = Path(path)
    path.write_text(render_html(run, store_errors=store_errors, history_url=history_url, context=context),
                    encoding="utf-8")
    return path

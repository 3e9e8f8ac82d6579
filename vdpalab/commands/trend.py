"""``vdpalab trend``: regressions and progressions over the history (exit 1 on a regression).

A nightly job runs it after the suite: exit status 1 when the newest group of any
selected series is a regression (jumpavg, as FD.io CSIT), 0 otherwise, 2 on errors.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
import time
from pathlib import Path

from vdpalab.history.store import HistoryStore, display_url
from vdpalab.history.trend import (
    DEFAULT_WINDOW,
    SeriesTrend,
    analyze,
    anomalies_frame,
    load_series,
    parse_since,
    trend_frame,
)
from vdpalab.results import iso


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "trend",
        help="detect regressions/progressions over the run history (exit 1 on a regression)",
        description=(
            "Classify every (lab, test, metric, parameters) series of the history with jumpavg and report "
            "regressions and progressions. Exit status: 1 if the newest group of any selected series is a "
            "regression, 0 otherwise, 2 on errors. Failed runs count as 0 (a severe regression)."
        ),
    )
    p.add_argument("--db", default=None, metavar="URL",
                   help="history store (sqlite:///path, a path, or postgresql://...; default $VDPALAB_RESULTS_DB "
                        "or reports/history.sqlite)")
    p.add_argument("--lab", default=None, metavar="GLOB", help="only these labs")
    p.add_argument("--metric", default=None, metavar="GLOB", help="only these metrics, e.g. 'tcp_*' or ping_rtt_avg_ms")
    p.add_argument("--test", default=None, metavar="GLOB", help="only these test ids")
    p.add_argument("--since", default=None, metavar="WHEN", help="only runs since an ISO date or an age (30d, 12h, 2w)")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, metavar="N",
                   help=f"classify the newest N points of each series (default {DEFAULT_WINDOW}; 0 = all; "
                        "the cost grows with N²)")
    p.add_argument("--out", default="reports/trend", metavar="DIR",
                   help="where trend.csv, anomalies.csv, index.html and the charts go (default reports/trend)")
    p.add_argument("--charts", choices=("anomalies", "all", "none"), default="anomalies",
                   help="charts for the series with a regression/progression (default), for all, or none")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="worker processes (default: CPU count)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every series, not only the anomalies")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(f"vdpalab trend: {exc}", file=sys.stderr)
        return 2
    with HistoryStore(args.db, create=False) as store:
        if not store.run_ids():
            print(f"vdpalab trend: the history at {display_url(store.url)} has no runs yet: nothing to judge")
            return 0
        series = load_series(store, lab=args.lab, metric=args.metric, test=args.test, since=since)
    filters = ", ".join(f"{k}={v}" for k, v in (("lab", args.lab), ("metric", args.metric), ("test", args.test),
                                                  ("since", args.since)) if v)
    if not series:
        print(f"vdpalab trend: no series match ({filters or 'no filter'}): check --lab/--metric/--test/--since",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    trends = analyze(series, window=args.window, out_dir=out, charts=args.charts, workers=args.workers)
    write_outputs(trends, out, filters=filters, window=args.window)
    print(format_summary(trends, verbose=args.verbose))
    regressed = [t for t in trends if t.regressed]
    took = time.perf_counter() - started
    print(f"\n{len(trends)} series, {sum(len(t.anomalies) for t in trends)} anomalies, "
          f"{len(regressed)} with a regression in the newest group; outputs in {out}/ ({took:.1f} s)")
    if regressed:
        print(f"REGRESSION: {len(regressed)} series regressed in their newest group (exit 1)")
        return 1
    return 0


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.5g}"


def format_summary(trends: list[SeriesTrend], *, verbose: bool = False) -> str:
    """Anomalies as a text table, newest-group regressions first."""
    lines = []
    rows = []
    for t in trends:
        last_start = t.groups[-1].start if t.groups else -1
        for a in t.anomalies:
            pct = "n/a" if math.isnan(a.delta_pct) else f"{a.delta_pct:+.2f}%"
            after = "failed" if math.isnan(a.after) else _fmt(a.after)
            rows.append((0 if a.index == last_start and a.kind == "regression" else 1, a.started, [
                a.kind.upper() if a.index == last_start else a.kind, t.lab, t.metric,
                t.test_id.rsplit("::", 1)[-1], t.params_text or "-", a.run_id, _fmt(a.before), after, pct,
                t.points[a.index].env,
            ]))
    rows.sort(key=lambda r: (r[0], -r[1]))
    header = ["kind", "lab", "metric", "test", "params", "first run of the group", "before", "after", "Δ%",
              "kernel / firmware"]
    body = [r[2] for r in rows]
    if body:
        widths = [min(max(len(str(x)) for x in col), 48) for col in zip(header, *body, strict=True)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        for row in body:
            lines.append("  ".join(str(c)[:w].ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        lines.append("(UPPER CASE: the anomaly starts the newest group of its series)")
    else:
        lines.append("no regressions or progressions in the classified window")
    if verbose:
        lines.append("")
        for t in trends:
            last = t.groups[-1] if t.groups else None
            lines.append(f"{t.last_status:<12} {t.label}: {len(t.points)} points, {len(t.groups)} groups, "
                         f"newest group avg {_fmt(last.avg) if last else 'n/a'} {t.unit}")
    return "\n".join(lines)


def write_outputs(trends: list[SeriesTrend], out: Path, *, filters: str = "", window: int = DEFAULT_WINDOW) -> None:
    """trend.csv (one row per series), anomalies.csv, overview.png and index.html into ``out``."""
    from vdpalab.reports.charts import overview_chart

    out.mkdir(parents=True, exist_ok=True)
    trend_frame(trends).to_csv(out / "trend.csv", index=False)
    anomalies_frame(trends).to_csv(out / "anomalies.csv", index=False)
    (out / "overview.png").write_bytes(overview_chart(trends))
    e = html.escape
    rows = []
    for t in sorted(trends, key=lambda t: (not t.regressed, not t.anomalies, t.label)):
        color = "#cf222e" if t.regressed else "#1a7f37" if t.last_status == "progression" else "#59636e"
        chart = f'<a href="{e(t.chart)}">chart</a>' if t.chart else ""
        last = t.groups[-1] if t.groups else None
        rows.append(
            f"<tr><td style='color:{color};font-weight:600'>{e(t.last_status)}</td><td>{e(t.lab)}</td>"
            f"<td>{e(t.metric)}</td><td><code>{e(t.test_id)}</code></td><td>{e(t.params_text)}</td>"
            f"<td>{len(t.points)}</td><td>{len(t.anomalies)}</td><td>{_fmt(last.avg) if last else ''} {e(t.unit)}"
            f"</td><td>{chart}</td></tr>")
    charts = "".join(
        f'<figure><img loading="lazy" src="{e(t.chart)}" alt="{e(t.label)}"><figcaption>{e(t.label)}</figcaption>'
        "</figure>" for t in trends if t.chart and t.anomalies)
    n_reg = sum(t.regressed for t in trends)
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>vdpa-lab trend</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;margin:24px 32px;color:#1f2328}}
table{{border-collapse:collapse;width:100%;font-size:13px}}td,th{{border-bottom:1px solid #d1d9e0;padding:4px 8px;
text-align:left}}th{{background:#f6f8fa}}img{{max-width:100%}}figure{{margin:10px 0}}
figcaption{{font-size:12px;color:#59636e}}code{{font-size:12px}}</style></head><body>
<h1>vdpa-lab trend</h1>
<p>{len(trends)} series{(' (' + e(filters) + ')') if filters else ''}, classified over the newest
{window or 'all'} points each with jumpavg; generated {e(iso(time.time()))}.
<b style="color:{'#cf222e' if n_reg else '#1a7f37'}">{n_reg} series regressed in their newest group.</b></p>
<img src="overview.png" alt="overview of every series">
<h2>Series</h2><table><thead><tr><th>newest group</th><th>lab</th><th>metric</th><th>test</th><th>params</th>
<th>points</th><th>anomalies</th><th>newest avg</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>
<h2>Charts of series with anomalies</h2>{charts or '<p>none</p>'}
</body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8")

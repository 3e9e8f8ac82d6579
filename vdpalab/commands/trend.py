"""``vdpalab trend``: regressions and progressions over the history (exit 1 on a regression).

A nightly job runs it after the suite: exit status 1 when the newest group of any selected
series is a regression (jumpavg, as FD.io CSIT) or its level is worse than the series'
long-term best by more than ``--tolerance`` (default 5 %: a regression stays until the level
recovers), 0 otherwise, 2 on errors. Every regressed series is named.

A change inside the lab's own noise band for its metric (``[reports] noise_pct`` of ``--lab-file``,
else of the lab file each lab's newest run was run with, else 5 %) is neither a regression nor a
progression, as in ``vdpalab compare`` and the run's terminal summary; the command says which bands
it used.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from vdpalab.history.bands import NoiseBands, bands_for_run
from vdpalab.history.store import HistoryStore, display_url
from vdpalab.history.trend import (
    DEFAULT_TOLERANCE,
    DEFAULT_WINDOW,
    SeriesTrend,
    analyze,
    anomalies_frame,
    load_series,
    parse_since,
    trend_frame,
)


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
    p.add_argument("--tolerance", type=_percent, default=DEFAULT_TOLERANCE, metavar="PCT",
                   help="how much worse than its long-term best (the best group average before the newest week) "
                        f"a series' newest level may be, e.g. 5%% or 2.5 (default {DEFAULT_TOLERANCE * 100:g}%%)")
    p.add_argument("--lab-file", default=None, metavar="TOML",
                   help="take the per-metric noise bands from this lab file's [reports] noise_pct / default_noise_pct "
                        "(default: the lab file each lab's newest run was run with, if it is here, else 5%%)")
    p.add_argument("--out", default="reports/trend", metavar="DIR",
                   help="where trend.csv, anomalies.csv, index.html and the charts go (default reports/trend)")
    p.add_argument("--charts", choices=("anomalies", "all", "none"), default="anomalies",
                   help="charts for the series with a regression/progression (default), for all, or none")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="worker processes (default: CPU count)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every series, not only the anomalies")
    p.set_defaults(handler=run)


def _percent(text: str) -> float:
    """``5%`` or ``5`` -> 0.05 (argparse type)."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage (e.g. 5%)") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"{text!r}: the tolerance must be between 0% and 100%")
    return value / 100.0


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
        bands, said = lab_bands(store, series, args.lab_file)
    filters = ", ".join(f"{k}={v}" for k, v in (("lab", args.lab), ("metric", args.metric), ("test", args.test),
                                                  ("since", args.since)) if v)
    if not series:
        print(f"vdpalab trend: no series match ({filters or 'no filter'}): check --lab/--metric/--test/--since",
              file=sys.stderr)
        return 2
    from vdpalab.reports.charts import trend_chart  # matplotlib only when charts are drawn

    out = Path(args.out)
    print("\n".join(said))
    trends = analyze(series, window=args.window, out_dir=out, charts=args.charts, workers=args.workers,
                     tolerance=args.tolerance, draw=trend_chart, bands=bands)
    write_outputs(trends, out, filters=filters, window=args.window, bands=said)
    print(format_summary(trends, verbose=args.verbose))
    regressed = [t for t in trends if t.regressed]
    took = time.perf_counter() - started
    print(f"\n{len(trends)} series, {sum(len(t.anomalies) for t in trends)} anomalies, "
          f"{sum(t.within_noise for t in trends)} changes within the lab's noise bands not counted, "
          f"{len(regressed)} regressed (newest group or long term); outputs in {out}/ ({took:.1f} s)")
    if regressed:
        print(f"REGRESSION: {len(regressed)} series regressed (exit 1):")
        for t in regressed:
            print(f"  {t.label}: {_why(t, args.tolerance)}")
        return 1
    return 0


def lab_bands(store: HistoryStore, series: list[SeriesTrend], lab_file: str | None
              ) -> tuple[dict[str, NoiseBands], list[str]]:
    """Each lab's noise bands (``lab_file``, else the lab file of the lab's newest run) and a line per lab
    saying which they are."""
    newest: dict[str, tuple[float, str]] = {}
    for t in series:
        for p in t.points:
            if p.started >= newest.get(t.lab, (-math.inf, ""))[0]:
                newest[t.lab] = (p.started, p.run_id)
    bands: dict[str, NoiseBands] = {}
    said: list[str] = []
    for lab, (_, run_id) in sorted(newest.items()):
        bands[lab], line = bands_for_run(store, run_id, lab_file, who=f"its newest run {run_id}")
        said.append(f"lab {lab}: {line}")
    return bands, said


def _why(t: SeriesTrend, tolerance: float) -> str:
    """Why a series counts as regressed, with the numbers."""
    last = t.groups[-1] if t.groups else None
    reasons = []
    if t.last_status == "regression":
        reasons.append("its newest group is a regression (jumpavg)")
    if t.long_term_regression and last is not None:
        gate = max(tolerance * 100, t.bands.pct_of(t.metric))
        reasons.append(f"newest level {_fmt(last.avg)} {t.unit} is {t.long_term_pct:+.1f}% against the long-term "
                       f"best {_fmt(t.long_term_best)} {t.unit} (tolerance {gate:g}%: the larger of --tolerance "
                       f"and the noise band)")
    return "; ".join(reasons)


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


def write_outputs(trends: list[SeriesTrend], out: Path, *, filters: str = "", window: int = DEFAULT_WINDOW,
                  bands: list[str] | None = None) -> None:
    """trend.csv (one row per series), anomalies.csv, overview.png and index.html into ``out``.

    index.html leads with the regressions and progressions of the last 1, 7 and 130 days (as FD.io
    CSIT's trending pages do), each linked to its series' chart; run reports link to it.
    """
    from vdpalab.reports.charts import overview_chart

    out.mkdir(parents=True, exist_ok=True)
    trend_frame(trends).to_csv(out / "trend.csv", index=False)
    anomalies_frame(trends).to_csv(out / "anomalies.csv", index=False)
    (out / "overview.png").write_bytes(overview_chart(trends))
    from vdpalab.reports.html import render_trend_page

    page = render_trend_page(trends, filters=filters, window=window, bands=bands or [])
    (out / "index.html").write_text(page, encoding="utf-8")

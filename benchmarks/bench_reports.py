"""Benchmark of the results/reports/history code (not a pytest module: run it with python).

    .venv/bin/python benchmarks/bench_reports.py

Target: ``vdpalab trend`` (load + jumpavg classification + charts + outputs) over a
synthetic history of 365 nightly runs x 200 metric series in under 10 s on a 2-core box.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

TARGET_TREND_S = 10.0
N_RUNS = 365
N_SERIES = 200


def _history(path: Path, n_runs: int, n_series: int) -> tuple[str, float]:
    from vdpalab.history.store import HistoryStore
    from vdpalab.testing.synthetic import Step, synthetic_runs

    url = f"sqlite:///{path / 'history.sqlite'}"
    steps = [Step(i, 60 + (i * 37) % (n_runs - 90), 0.85 if i % 4 == 0 else 1.15) for i in range(0, n_series, 9)]
    t0 = time.perf_counter()
    with HistoryStore(url) as store:
        for run in synthetic_runs(n_runs, n_series, steps=steps, failed_runs=[n_runs // 2],
                                  failed_tests=[(3, n_runs - 1)]):
            store.import_run(run)
    return url, time.perf_counter() - t0


def _trend(url: str, out: Path, *, window: int | None = None, charts: str = "anomalies") -> tuple[float, int, int]:
    from vdpalab.commands.trend import write_outputs
    from vdpalab.history.store import HistoryStore
    from vdpalab.history.trend import DEFAULT_WINDOW, analyze, load_series
    from vdpalab.reports.charts import trend_chart

    window = DEFAULT_WINDOW if window is None else window
    t0 = time.perf_counter()
    with HistoryStore(url, create=False) as store:
        series = load_series(store)
    trends = analyze(series, window=window, out_dir=out, charts=charts, draw=trend_chart)  # type: ignore[arg-type]
    write_outputs(trends, out, window=window)
    took = time.perf_counter() - t0
    n_charts = sum(1 for t in trends if t.chart)
    return took, len(trends), n_charts


def bench_reports(n_runs: int = N_RUNS, n_series: int = N_SERIES, *, full: bool = True) -> list[tuple[str, float, str]]:
    """Measurements as (what, seconds, target): the trend ones are the targets of the issue."""
    from vdpalab.history.trend import DEFAULT_WINDOW
    from vdpalab.reports import write_reports
    from vdpalab.testing.sample import sample_run

    out: list[tuple[str, float, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="vdpalab-bench-"))
    try:
        url, took = _history(tmp, n_runs, n_series)
        out.append((f"import synthetic history ({n_runs} runs x {n_series} series, SQLite)", took, "info"))
        took, n, charts = _trend(url, tmp / "trend-default")
        out.append((f"trend, default (window {DEFAULT_WINDOW}, charts for the {charts} series with anomalies, "
                    f"overview of {n})", took, f"< {TARGET_TREND_S:g} s"))
        took, n, charts = _trend(url, tmp / "trend-all", charts="all")
        out.append((f"trend --charts all (window {DEFAULT_WINDOW}, {charts} charts)", took, f"< {TARGET_TREND_S:g} s"))
        if full:
            took, n, charts = _trend(url, tmp / "trend-full", window=0)
            out.append((f"trend --window 0 (all {n_runs} points of every series classified)", took, "info"))
        t0 = time.perf_counter()
        write_reports(sample_run(), tmp / "reports")
        out.append(("write_reports of the sample run (HTML with charts, CSV, JUnit, metadata)",
                    time.perf_counter() - t0, "info"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=N_RUNS)
    parser.add_argument("--series", type=int, default=N_SERIES)
    parser.add_argument("--quick", action="store_true", help="skip the --window 0 measurement")
    args = parser.parse_args(argv)
    print(f"vdpalab reports benchmark on {os.cpu_count()} CPU(s)")
    failed = False
    for what, seconds, target in bench_reports(args.runs, args.series, full=not args.quick):
        verdict = ""
        if target.startswith("<"):
            ok = seconds < float(target.split()[1])
            failed |= not ok
            verdict = "  OK" if ok else "  OVER TARGET"
        print(f"{seconds:8.2f} s  (target {target}){verdict}  {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())

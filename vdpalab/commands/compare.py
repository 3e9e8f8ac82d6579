"""``vdpalab compare RUN_A RUN_B``: what changed in the lab, then every shared metric with Δ and Δ%, plus a chart.

RUN_A is the reference. A difference is better/worse only beyond the measurement's noise
(trial spread, else ``[reports] noise_pct`` of ``--lab-file``, else 5%): "within noise" otherwise.
Without ``--lab-file`` the bands come from the lab file run B was run with (its ``--lab``, when it
names one file that still exists here), so compare agrees with that run's terminal summary.
Runs are named by id, unique prefix, ``latest`` or ``latest~N``.
With ``--tolerance 'throughput_gbps:5%,ping_rtt_avg_ms:10%'`` the command judges B against
A like ``pytest --baseline`` does and exits 1 when a metric is worse than tolerated.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

from vdpalab.history.bands import bands_for_run
from vdpalab.history.compare import compare_runs, format_comparison
from vdpalab.history.store import HistoryStore
from vdpalab.reports.charts import compare_chart
from vdpalab.results import parse_baseline_spec


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two runs metric by metric (Δ, Δ%%, chart)",
        description="Print every metric both runs measured with Δ and Δ% (B vs A) and write a chart. "
                    "Exit 1 if --tolerance is given and a metric of B is worse than tolerated.",
    )
    p.add_argument("run_a", metavar="RUN_A", help="reference run: id, unique prefix, latest, latest~N")
    p.add_argument("run_b", metavar="RUN_B", help="candidate run")
    p.add_argument("--db", default=None, metavar="URL", help="history store (default $VDPALAB_RESULTS_DB or "
                                                             "reports/history.sqlite)")
    p.add_argument("--out", default="reports/compare", metavar="DIR", help="where the chart and CSV go")
    p.add_argument("--lab", default=None, metavar="GLOB", help="only these labs")
    p.add_argument("--metric", default=None, metavar="GLOB", help="only these metrics")
    p.add_argument("--lab-file", default=None, metavar="TOML",
                   help="take the per-metric noise tolerances from this lab file's [reports] noise_pct / "
                        "default_noise_pct (default: the lab file run B was run with, if it is here, else 5%%)")
    p.add_argument("--tolerance", default=None, metavar="SPEC",
                   help="judge B against A: 'metric:5%%,other:0.2' (relative or absolute, direction-aware)")
    p.set_defaults(handler=run)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def run(args: argparse.Namespace) -> int:
    tolerances = parse_baseline_spec(args.tolerance)
    with HistoryStore(args.db, create=False) as store:
        store.resolve(args.run_a)  # an unknown run is one error line, before anything else is said
        noise, bands = bands_for_run(store, args.run_b, args.lab_file, who="run B")
        cmp = compare_runs(store, args.run_a, args.run_b, lab=args.lab, metric=args.metric, tolerances=tolerances,
                           noise_pct=noise.pct, default_noise_pct=noise.default_pct, noise_abs=noise.absolute)
    print(bands)
    print(format_comparison(cmp))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"compare-{_slug(cmp.run_a)}-vs-{_slug(cmp.run_b)}"
    chart = out / f"{stem}.png"
    chart.write_bytes(compare_chart(cmp.rows, cmp.run_a, cmp.run_b))
    pd.DataFrame(cmp.rows).to_csv(out / f"{stem}.csv", index=False)
    print(f"\nchart: {chart}\ntable: {out / (stem + '.csv')}")
    if cmp.failed:
        print(f"FAIL: {sum(v.failed for v in cmp.verdicts)} metric(s) of B are worse than tolerated (exit 1)")
        return 1
    return 0

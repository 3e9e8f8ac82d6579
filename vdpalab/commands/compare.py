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

from vdpalab.config import load_lab
from vdpalab.history.change import DEFAULT_NOISE_PCT
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


def lab_file_of_run(store: HistoryStore, ref: str, problems: list[str] | None = None) -> str | None:
    """The one lab file a run was started with (``--lab FILE`` in its pytest arguments), if it loads here
    (why not goes to ``problems``)."""
    args = list(store.load_run(store.resolve(ref)).pytest_args)
    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--lab"]
    files += [a.split("=", 1)[1] for a in args if a.startswith("--lab=")]
    if len(files) != 1 or not Path(files[0]).is_file():
        return None
    try:
        load_lab(files[0])
    except Exception as exc:  # changed or broken since: the default bands, said so, rather than no comparison
        if problems is not None:
            problems.append(f"{files[0]}, the --lab of run B, does not load: {str(exc).splitlines()[0]}")
        return None
    return files[0]


def run(args: argparse.Namespace) -> int:
    tolerances = parse_baseline_spec(args.tolerance)
    noise: dict[str, float] = {}
    default_noise = DEFAULT_NOISE_PCT
    with HistoryStore(args.db, create=False) as store:
        store.resolve(args.run_a)  # an unknown run is one error line, before anything else is said
        problems: list[str] = []
        lab_file = args.lab_file or lab_file_of_run(store, args.run_b, problems)
        if lab_file:
            settings = load_lab(lab_file).reports
            noise, default_noise = dict(settings.noise_pct), settings.default_noise_pct
            how = "--lab-file" if args.lab_file else "the --lab of run B"
            bands = f"noise bands: {lab_file} ({how}) [reports] noise_pct, default ±{default_noise:g}%"
        else:
            bands = (f"noise bands: ±{default_noise:g}% default ("
                     f"{problems[0] if problems else 'run B names no lab file here'}; see --lab-file)")
        cmp = compare_runs(store, args.run_a, args.run_b, lab=args.lab, metric=args.metric, tolerances=tolerances,
                           noise_pct=noise, default_noise_pct=default_noise)
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

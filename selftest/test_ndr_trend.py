"""NDR/PDR series flow through the history and the trend like any other metric: one series per frame size
and direction (params), higher is better, a firmware bump that drops the 64 B NDR is found as a regression at
that run, points carry kernel and firmware, and each series gets its own chart."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from vdpalab.history import HistoryStore
from vdpalab.history.trend import analyze, load_series
from vdpalab.reports.charts import trend_chart
from vdpalab.results import Result
from vdpalab.testing.synthetic import synthetic_runs

pytestmark = pytest.mark.selftest

N_RUNS = 30
DROP_AT = 20  # the synthetic history's firmware change (two thirds of 30)
CASES = [(64, "c77g153->c77g159"), (64, "c77g159->c77g153"), (1400, "c77g153->c77g159")]


def test_ndr_series_are_trended_per_frame_size_and_direction(tmp_path: Path) -> None:
    rng = random.Random(3)
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    with HistoryStore(url) as store:
        for k, run in enumerate(synthetic_runs(N_RUNS, 0, labs=("cx6dx",))):
            results = []
            for size, direction in CASES:
                base = {64: 2_000_000.0, 1400: 900_000.0}[size]
                level = base * (0.8 if size == 64 and k >= DROP_AT else 1.0)
                for metric, factor in (("ndr_pps", 1.0), ("pdr_pps", 1.1)):
                    results.append(Result(metric, level * factor * (1 + rng.gauss(0, 0.003)), "pps",
                                          params={"frame_size": size, "direction": direction},
                                          test_id=f"benchmarks/test_ndr.py::test_ndr_pdr[cx6dx-{size}B]",
                                          lab="cx6dx", better="higher", started=run.started, ended=run.started + 30))
            store.import_run(replace(run, results=results))
        series = [s for s in load_series(store) if s.metric in ("ndr_pps", "pdr_pps")]
    assert len(series) == 2 * len(CASES) and all(len(s.points) == N_RUNS for s in series)
    trends = analyze(series, window=0, workers=1, out_dir=tmp_path / "charts", draw=trend_chart)
    found = {(t.metric, t.params_text, a.kind, a.index) for t in trends for a in t.anomalies}
    want = {("ndr_pps", "regression", DROP_AT), ("pdr_pps", "regression", DROP_AT)}
    assert {(m, k, i) for m, _, k, i in found} == want
    assert all("64" in p for _, p, _, _ in found)
    assert all(t.better == "higher" for t in trends)
    assert {p.env for p in trends[0].points} >= {"6.1.0-18-amd64 · fw 22.29.2002", "6.1.0-18-amd64 · fw 22.31.1014"}
    charts = {t.chart for t in trends}
    assert len(charts) == len(trends) and all(c and (tmp_path / "charts" / c).is_file() for c in charts)

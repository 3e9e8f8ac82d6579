"""Trend (jumpavg) and compare over synthetic histories with known, injected changes.

The synthetic history (``vdpalab.testing.synthetic``) alternates throughput series (higher
is better) and rtt series (lower is better) with 0.4-0.6 % noise; steps of 10-25 % are
injected at known runs. The detector must find each of them, at the exact run, with the
right direction, and nothing else.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vdpalab.commands import compare as compare_cmd
from vdpalab.commands import trend as trend_cmd
from vdpalab.history import HistoryStore
from vdpalab.history.trend import SeriesTrend, analyze, classify_series, goodness, load_series, parse_since
from vdpalab.reports.charts import image_stats
from vdpalab.results import Result
from vdpalab.testing.synthetic import Step, series_specs, synthetic_runs

pytestmark = pytest.mark.selftest


def assert_real_image(png: Path) -> None:
    stats = image_stats(png)
    assert stats["width"] >= 300 and stats["height"] >= 150 and stats["std"] > 0.02 and stats["drawn"] > 0.01, stats

N_RUNS = 60
N_SERIES = 8
SPECS = series_specs(N_SERIES)
STEPS = [
    Step(0, 20, 0.90),  # throughput -10 %: regression ...
    Step(0, 45, 1 / 0.90),  # ... fixed 25 runs later: progression
    Step(2, 35, 1.12),  # throughput +12 %: progression
    Step(1, 25, 1.25),  # rtt +25 %: regression (lower is better) ...
    Step(1, 50, 0.80),  # ... and back: progression
    Step(5, 40, 0.80),  # rtt -20 %: progression
]
FAILED_TEST = (6, 30)  # series 6's test fails without a value at run 30: counted as 0


def expected(steps: list[Step], failed_tests: list[tuple[int, int]] = (), failed_runs: list[int] = (),
             window_start: int = 0) -> set[tuple[str, int, str]]:
    out = {(SPECS[s.series].test_id, s.at, s.kind(SPECS[s.series].better)) for s in steps if s.at >= window_start}
    for series, k in failed_tests:
        if k >= window_start:
            out.add((SPECS[series].test_id, k, "regression"))
        out.add((SPECS[series].test_id, k + 1, "progression"))
    for k in failed_runs:
        out |= {(spec.test_id, k, "regression") for spec in SPECS}
    return out


def build(tmp_path: Path, name: str, **kwargs: object) -> str:
    url = f"sqlite:///{tmp_path / name}"
    with HistoryStore(url) as store:
        for run in synthetic_runs(N_RUNS, N_SERIES, **kwargs):  # type: ignore[arg-type]
            store.import_run(run)
    return url


def found(trends: list[SeriesTrend]) -> set[tuple[str, int, str]]:
    return {(t.test_id, a.index, a.kind) for t in trends for a in t.anomalies}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build(tmp_path_factory.mktemp("trend"), "h.sqlite", steps=STEPS, failed_tests=[FAILED_TEST])


def test_every_injected_change_is_found_at_its_run_and_nothing_else(history: str) -> None:
    with HistoryStore(history, create=False) as store:
        series = load_series(store)
    assert len(series) == N_SERIES and all(len(s.points) == N_RUNS for s in series)
    trends = analyze(series, window=0, workers=1)
    assert found(trends) == expected(STEPS, [FAILED_TEST])
    by_test = {t.test_id: t for t in trends}
    rtt = by_test[SPECS[1].test_id]
    a, back = rtt.anomalies
    assert rtt.better == "lower" and a.kind == "regression" and a.delta_pct == pytest.approx(25, abs=2)
    assert back.kind == "progression" and back.delta_pct == pytest.approx(-20, abs=2)
    assert a.run_id.endswith("-0025") and a.before == pytest.approx(0.113, rel=0.02)
    failed = by_test[SPECS[6].test_id]
    assert failed.points[30].failed and math.isnan(failed.points[30].value)
    assert [g.comment for g in failed.groups] == ["normal", "regression", "progression"]
    assert not any(t.regressed for t in trends)  # every series ends in a normal or progression group
    # The kernel changes at run 20 (one third), the firmware at run 40: points carry both.
    tp = by_test[SPECS[0].test_id]
    assert {p.env for p in tp.points} == {"5.11.11-1.el8.elrepo · fw 22.29.2002", "6.1.0-18-amd64 · fw 22.29.2002",
                                          "6.1.0-18-amd64 · fw 22.31.1014"}


def test_a_window_classifies_only_the_newest_points(history: str) -> None:
    with HistoryStore(history, create=False) as store:
        trends = analyze(load_series(store), window=30, workers=1)
    assert all(t.window_start == 30 for t in trends)
    assert found(trends) == expected(STEPS, [FAILED_TEST], window_start=30) - {
        (SPECS[6].test_id, 30, "regression")}  # the failed point opens the window: nothing before it to compare


def test_parallel_workers_give_the_same_answer(history: str) -> None:
    with HistoryStore(history, create=False) as store:
        series = load_series(store)
    one = analyze(series, window=0, workers=1)
    two = analyze(series, window=0, workers=2)
    assert repr([(t.key, t.groups, t.anomalies) for t in one]) == repr([(t.key, t.groups, t.anomalies) for t in two])


def test_goodness_inverts_lower_is_better_and_zeroes_failures() -> None:
    g = goodness([0.10, 0.12, math.nan], [False, False, True], "lower")
    assert g[0] > g[1] > 0 and g[2] == 0.0
    assert goodness([9.0, 8.0, 0.0], [False, False, True], "higher") == [9.0, 8.0, 0.0]
    flat = SeriesTrend("l", "t", "frames", "{}", "", None, [])
    assert classify_series(flat).groups == []


def test_parse_since() -> None:
    assert parse_since("2d", now=1_000_000.0) == 1_000_000.0 - 2 * 86400
    assert parse_since("2026-01-01") == 1767225600.0
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday-ish")


# --------------------------------------------------------------------------- the CLIs


def _cli(module: object, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())  # type: ignore[attr-defined]
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_trend_cli_exits_0_without_a_newest_regression(history: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trend"
    assert _cli(trend_cmd, ["trend", "--db", history, "--out", str(out), "--window", "0", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "0 regressed (newest group or long term)" in text
    kinds = [line.split()[0].lower() for line in text.splitlines() if line.lower().startswith(("regr", "progr"))]
    assert sorted(kinds) == ["progression"] * 5 + ["regression"] * 3
    for name in ("trend.csv", "anomalies.csv", "index.html", "overview.png"):
        assert (out / name).exists(), name
    assert_real_image(out / "overview.png")
    charts = sorted(out.glob("*__*.png"))
    assert len(charts) == 5  # --charts anomalies: only the five series with a change
    for chart in charts:
        assert_real_image(chart)


def test_trend_cli_exits_1_when_the_newest_group_regressed(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Series 3 (rtt) gets 30 % slower for the last 6 runs; series 0 (throughput) fails in the last run.
    url = build(tmp_path, "bad.sqlite", steps=[Step(3, N_RUNS - 6, 1.3)], failed_tests=[(0, N_RUNS - 1)])
    argv = ["trend", "--db", url, "--out", str(tmp_path / "t"), "--workers", "1", "--charts", "all"]
    assert _cli(trend_cmd, argv) == 1
    text = capsys.readouterr().out
    assert "REGRESSION: 2 series regressed (exit 1):" in text
    assert len(list((tmp_path / "t").glob("*__*.png"))) == N_SERIES
    with HistoryStore(url, create=False) as store:
        trends = analyze(load_series(store), window=0, workers=1)
    assert found(trends) == {(SPECS[3].test_id, N_RUNS - 6, "regression"),
                             (SPECS[0].test_id, N_RUNS - 1, "regression")}
    # Selecting only the metrics that did not regress: exit 0. A filter matching nothing: exit 2.
    assert _cli(trend_cmd, [*argv[:-2], "--test", "*[[]cx6dx-2]"]) == 0
    assert _cli(trend_cmd, [*argv, "--metric", "ping_rtt_avg_ms"]) == 1
    assert _cli(trend_cmd, [*argv, "--metric", "nope_*"]) == 2
    assert "no series match" in capsys.readouterr().err


def test_trend_cli_failed_run_is_a_regression_everywhere(tmp_path: Path) -> None:
    url = build(tmp_path, "dead.sqlite", failed_runs=[N_RUNS - 1])
    with HistoryStore(url, create=False) as store:
        trends = analyze(load_series(store), window=0, workers=1)
    assert found(trends) == expected([], failed_runs=[N_RUNS - 1])
    assert all(t.regressed for t in trends)
    assert _cli(trend_cmd, ["trend", "--db", url, "--out", str(tmp_path / "o"), "--workers", "1"]) == 1


def test_trend_cli_on_an_empty_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    HistoryStore(url).close()
    assert _cli(trend_cmd, ["trend", "--db", url, "--out", str(tmp_path / "o")]) == 0
    assert "no runs yet" in capsys.readouterr().out


def test_compare_cli_table_chart_and_no_baseline(history: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with HistoryStore(history) as store:
        run_a = store.resolve("latest~40")  # run 19: before the first step
        run_b = store.resolve("latest~20")  # run 39: series 0 and 1 regressed, not yet fixed
        extra = Result("new_metric_gbps", 1.0, "Gbit/s", test_id="t::new", lab="cx6dx")
        store.put_results(run_b, [extra])  # only in B: no baseline
    out = tmp_path / "cmp"
    assert _cli(compare_cmd, ["compare", run_a, run_b, "--db", history, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if "test_tcp_throughput[cx6dx-0]" in ln]
    assert len(lines) == 1 and "worse" in lines[0]
    pct = float(next(tok for tok in lines[0].split() if tok.endswith("%")).rstrip("%"))
    assert pct == pytest.approx(-10, abs=2)
    rtt = next(ln for ln in text.splitlines() if "test_flood_rtt[emu-1]" in ln)
    assert "worse" in rtt and "Δ" not in rtt  # rtt went up: worse for a lower-is-better metric
    assert "8 shared metrics" in text
    assert "no baseline: cx6dx t::new new_metric_gbps" in text
    (chart,) = out.glob("compare-*.png")
    assert_real_image(chart)
    assert len(list(out.glob("compare-*.csv"))) == 1
    # With tolerances, B is judged against A: the -10 % throughput fails, the new metric has no baseline.
    argv = ["compare", run_a, run_b[:24], "--db", history, "--out", str(out), "--tolerance",
            "tcp_throughput_gbps:5%,new_metric_gbps:5%,absent_metric:1%"]
    assert _cli(compare_cmd, argv) == 1
    text = capsys.readouterr().out
    assert "[FAIL]" in text and "worse than tolerated" in text
    assert "[NO BASELINE]" in text and "new_metric_gbps: no baseline" in text
    assert "absent_metric: not measured" in text


CONSOLE = Path(sys.executable).parent / "vdpalab"


def _history(tmp_path: Path, name: str, steps: list[Step]) -> str:
    """120 nights of one throughput series: 15 % drop at night 80, a failed run at night 100, then ``steps``."""
    return build_n(tmp_path, name, 120, 1, steps=[Step(0, 80, 0.85), *steps], failed_runs=[100])


def build_n(tmp_path: Path, name: str, n_runs: int, n_series: int, **kwargs: object) -> str:
    url = f"sqlite:///{tmp_path / name}"
    with HistoryStore(url) as store:
        for run in synthetic_runs(n_runs, n_series, **kwargs):  # type: ignore[arg-type]
            store.import_run(run)
    return url


def test_a_regression_stays_until_the_level_recovers(tmp_path: Path) -> None:
    """CSIT's long-term rule through the installed console script: a failed night followed by nights at
    the 15 %-lower level (jumpavg: "progression") still exits 1 and names the series; a recovery exits 0."""
    stuck = _history(tmp_path, "stuck.sqlite", [])
    proc = subprocess.run([str(CONSOLE), "trend", "--db", stuck, "--out", str(tmp_path / "t1"), "--workers", "1",
                           "--charts", "none"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REGRESSION: 1 series regressed (exit 1):" in proc.stdout
    assert "cx6dx tests_datapath/test_iperf3.py::test_tcp_throughput[cx6dx-0] tcp_throughput_gbps" in proc.stdout
    assert re.search(r"is -1[45]\.\d% against the long-term best", proc.stdout), proc.stdout
    # jumpavg alone calls the newest group a progression (back from the failed night): the old exit 0
    from vdpalab.history.trend import load_series
    with HistoryStore(stuck, create=False) as store:
        (series,) = analyze(load_series(store), workers=1)
    assert series.last_status == "progression" and series.long_term_regression and series.regressed
    # a looser tolerance accepts the drop
    loose = subprocess.run([str(CONSOLE), "trend", "--db", stuck, "--out", str(tmp_path / "t2"), "--workers", "1",
                            "--charts", "none", "--tolerance", "20%"], capture_output=True, text=True, timeout=120)
    assert loose.returncode == 0, loose.stdout + loose.stderr
    recovered = _history(tmp_path, "recovered.sqlite", [Step(0, 101, 1 / 0.85)])
    ok = subprocess.run([str(CONSOLE), "trend", "--db", recovered, "--out", str(tmp_path / "t3"), "--workers", "1",
                         "--charts", "none"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 regressed (newest group or long term)" in ok.stdout

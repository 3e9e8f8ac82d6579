"""The run as people see it: change classification, terminal summary, headline-first report, compare, trend page.

Proves that one classification (better / worse / within noise) is used by compare, the summary
and the report; that failed checks come first with their verdict and their change against the
baseline run; that report.html leads with the headline figures and escapes what tests write;
that `vdpalab compare` shows version changes before the metrics and never cuts chart labels;
that the trend page has the 1/7/130-day regression tables linked to existing charts; and that
Chromium renders both pages without console errors with the headline on the first screen
(and that this check fails on a page that breaks it).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from vdpalab.config import load_lab
from vdpalab.history.change import classify_change
from vdpalab.history.compare import compare_results
from vdpalab.history.store import HistoryStore
from vdpalab.reports.browser import find_chromium, inspect_page
from vdpalab.reports.charts import wrap_label
from vdpalab.reports.html import render_html, write_html
from vdpalab.reports.terminal import format_summary
from vdpalab.reports.view import build_context, build_view
from vdpalab.results import (
    LayerRecord,
    Result,
    RunFingerprint,
    RunRecord,
    TestOutcome,
    Threshold,
    judge_thresholds,
)

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
VDPALAB = ROOT / ".venv" / "bin" / "vdpalab"
LAB = "emu"
DAY = 86400.0
T0 = 1_790_000_000.0
PING = "tests_datapath/test_ping.py::test_flood_ping[emu-56B-a_to_b]"
TCP = "tests_datapath/test_iperf3.py::test_tcp_throughput[emu-forward-P1]"
TCP2 = "tests_datapath/test_iperf3.py::test_tcp_throughput[emu-reverse-P1]"
CNT = "tests_datapath/test_counters.py::test_counter_symmetry[emu-ping]"
LIMITS = [Threshold("throughput_gbps", ">=", 0.1, "Gbit/s", "lab.toml thresholds.tcp_throughput_gbps_min",
                    test="test_tcp_throughput"),
          Threshold("rtt_avg_ms", "<=", 2.0, "ms", "lab.toml thresholds.ping_rtt_avg_ms_max", test="test_flood_ping")]


def make_run(run_id: str, started: float, *, tcp: float, rtt: float, tcp2: float = 1.0, counters_ok: bool = True,
             kernel: str = "6.1.0-18-amd64", message: str = "") -> RunRecord:
    """A small run with the suite's real test ids and metric names."""
    results = [
        Result("loss_pct", 0.0, "%", test_id=PING, lab=LAB, better="lower", params={"size": 56}),
        Result("rtt_avg_ms", rtt, "ms", test_id=PING, lab=LAB, better="lower", params={"size": 56}),
        Result("throughput_gbps", tcp, "Gbit/s", test_id=TCP, lab=LAB, better="higher", params={"streams": 1}),
        Result("throughput_gbps", tcp2, "Gbit/s", test_id=TCP2, lab=LAB, better="higher", params={"streams": 1}),
        Result("uplink_rx_minus_rep_tx", 0.0 if counters_ok else 7.0, "packets", test_id=CNT, lab=LAB,
               better="lower", params={"bridge": "br30-ovs"}),
    ]
    outcomes = [TestOutcome(PING, "passed", 20.0, lab=LAB), TestOutcome(TCP, "passed", 10.0, lab=LAB),
                TestOutcome(TCP2, "passed", 10.0, lab=LAB),
                TestOutcome(CNT, "passed" if counters_ok else "failed", 1.0, lab=LAB,
                            message=message or ("" if counters_ok else "br30-ovs: 7 packets lost")),
                TestOutcome("tests_datapath/test_vdpa_evidence.py::test_vdpa_evidence[emu]", "skipped", 0.0, lab=LAB,
                            message="layer vdpa not available: not available in the emulated lab")]
    return RunRecord(run_id=run_id, started=started, ended=started + 60, status="complete",
                     fingerprints={LAB: RunFingerprint(LAB, {"kernel": kernel, "ovs": "3.1.0"}, host="h")},
                     outcomes=outcomes, results=results, verdicts=judge_thresholds(results, LIMITS))


@pytest.fixture
def history(tmp_path: Path) -> tuple[str, RunRecord, RunRecord]:
    """Two runs: a good one, then one with TCP -6.65%, rtt +40% and a failed counter check."""
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    good = make_run("20260101-000000-emu-aaaaaa", T0, tcp=1.0, rtt=0.1)
    bad = make_run("20260102-000000-emu-bbbbbb", T0 + DAY, tcp=0.9335, rtt=0.14, counters_ok=False,
                   kernel="6.1.0-21-amd64", message="br30-ovs: 7 packets lost <script>alert(1)</script>")
    with HistoryStore(url) as store:
        store.import_run(good)
        store.import_run(bad)
    return url, good, bad


# --------------------------------------------------------------------------- the one classification


def test_a_change_is_better_or_worse_only_beyond_the_noise_band() -> None:
    one_sample = classify_change("throughput_gbps", 1.0, 0.9335, "higher")  # -6.65%, one sample each
    assert one_sample.kind == "worse" and one_sample.noise_source == "±5% default"
    assert math.isclose(one_sample.delta_pct, -6.65, abs_tol=1e-9)
    lab_band = classify_change("throughput_gbps", 1.0, 0.9335, "higher", tolerances_pct={"throughput_gbps": 8})
    assert lab_band.kind == "within noise" and "8% lab tolerance" in lab_band.describe()
    assert classify_change("throughput_gbps", 1.0, 0.97, "higher").kind == "within noise"
    noisy = classify_change("throughput_gbps", 1.0, 0.9335, "higher", base_trials=[0.9, 1.0, 1.1],
                            new_trials=[0.85, 0.93, 1.02])
    assert noisy.kind == "within noise" and noisy.noise_source.startswith("±2σ of trials")
    tight = classify_change("throughput_gbps", 1.0, 0.9335, "higher", base_trials=[0.999, 1.0, 1.001],
                            new_trials=[0.933, 0.9335, 0.934], tolerances_pct={"throughput_gbps": 50})
    assert tight.kind == "worse", "the trial spread wins over the lab's tolerance"
    assert classify_change("rtt_avg_ms", 0.1, 0.14, "lower").kind == "worse"
    assert classify_change("rtt_avg_ms", 0.1, 0.06, "lower").kind == "better"
    assert classify_change("rep_rx_delta", 100, 130, None).kind == "changed"
    assert classify_change("x", None, 1.0, "higher").kind == "new"
    assert classify_change("x", 1.0, None, "higher").kind == "missing"
    assert classify_change("x", 2.0, 2.0, "higher").kind == "same"
    assert classify_change("loss_pct", 0.0, 0.1, "lower").kind == "worse", "any loss beyond a zero baseline"


def test_compare_uses_the_same_classification_and_names_version_changes(history) -> None:
    _url, good, bad = history
    plain = compare_results(good.results, bad.results)
    row = next(r for r in plain.rows if r["test_id"] == TCP)
    assert row["change"] == classify_change("throughput_gbps", 1.0, 0.9335, "higher").kind == "worse"
    assert row["label"].startswith("throughput_gbps · test_tcp_throughput[forward-P1]")
    banded = compare_results(good.results, bad.results, noise_pct={"throughput_gbps": 8})
    assert next(r for r in banded.rows if r["test_id"] == TCP)["change"] == "within noise"


def test_wrapped_chart_labels_keep_every_character() -> None:
    label = "throughput_gbps · test_tcp_throughput[forward-P1] · bridge=br30-ovs, direction=c77g153->c77g159"
    wrapped = wrap_label(label, 40)
    assert wrapped.startswith("throughput_gbps")
    assert all(len(line) <= 40 for line in wrapped.splitlines())
    assert re.sub(r"\s+", "", wrapped) == re.sub(r"\s+", "", label)


# --------------------------------------------------------------------------- view, terminal, report


def test_view_failed_checks_first_with_baseline_changes_and_sparklines(history) -> None:
    url, good, bad = history
    with HistoryStore(url, create=False) as store:
        ctx = build_context(store, bad, noise_pct={LAB: {"rtt_avg_ms": 10}})
    assert ctx.baselines[LAB].run_id == good.run_id
    view = build_view(bad, ctx)
    (lab,) = view.labs
    assert lab.verdict == "failed" and view.verdict == "failed"
    assert lab.checks[0].test_id == CNT and lab.checks[0].bad
    assert lab.checks[-1].outcome == "skipped"
    tcp = next(c for c in lab.checks if c.test_id == TCP).figures[0]
    assert (tcp.change.kind, tcp.change.base) == ("worse", 1.0)
    assert [v.ok for v in tcp.verdicts] == [True]
    heads = {h.spec.key: h for h in lab.headlines}
    assert set(heads) == {"ping_loss", "ping_rtt", "tcp"}
    assert heads["tcp"].sets == 2 and math.isclose(heads["tcp"].value, (0.9335 + 1.0) / 2)
    assert heads["ping_rtt"].change.kind == "worse" and heads["ping_rtt"].change.noise_source == "±10% lab tolerance"
    assert [p.run_id for p in heads["tcp"].spark] == [good.run_id, bad.run_id]
    statuses = {s.title: s for s in lab.statuses}
    assert statuses["Counter symmetry"].outcome == "failed" and statuses["Counter symmetry"].text == "0/1 symmetric"
    assert statuses["vDPA evidence used"].text == "not applicable"


def test_terminal_summary_failures_first_with_verdicts_and_changes(history) -> None:
    url, good, bad = history
    with HistoryStore(url, create=False) as store:
        ctx = build_context(store, bad, noise_pct={LAB: {"rtt_avg_ms": 50}})
    text = format_summary(build_view(bad, ctx))
    lines = text.splitlines()
    assert f"baseline {good.run_id} (last good run)" in text
    assert "verdict FAILED" in text
    failed = next(i for i, line in enumerate(lines) if line.startswith("FAILED test_counter_symmetry[ping]"))
    passed = next(i for i, line in enumerate(lines) if line.startswith("test_tcp_throughput[forward-P1]"))
    assert failed < passed
    assert "br30-ovs: 7 packets lost" in lines[failed + 1]
    tcp = lines[passed]
    assert "0.9335 Gbit/s" in tcp and "✓ ≥ 0.1 Gbit/s" in tcp and "1 Gbit/s" in tcp and "-6.65%" in tcp
    assert tcp.rstrip().endswith("worse")
    rtt = next(line for line in lines if "rtt_avg_ms" in line)
    assert "+40.00%" in rtt and "within noise (±50% lab tolerance)" in rtt
    assert "skipped test_vdpa_evidence" in text


def test_report_leads_with_the_headline_and_escapes_test_text(history, tmp_path: Path) -> None:
    url, good, bad = history
    with HistoryStore(url, create=False) as store:
        ctx = build_context(store, bad, trend_href="../trend/index.html")
    html = render_html(bad, context=ctx)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    order = [html.index(f'id="{s}"') for s in ("headline", "failures", "checks", "fingerprint", "commands")]
    assert order == sorted(order), "headline, failures, checks, fingerprint, command log"
    head = html[order[0]:order[1]]
    for needle in ("FAILED", "TCP throughput", "0.9667 Gbit/s", "Flood ping rtt (avg)", "worse", good.run_id,
                   "Counter symmetry", "<svg", 'href="../trend/index.html"'):
        assert needle in head, needle
    assert 'class="mono changed">6.1.0-21-amd64' in html, "the kernel changed since the baseline"
    checks = html[order[2]:order[3]]
    assert checks.count('class="check') == 4, "one section per check, not per metric"


def test_a_failed_teardown_makes_the_headline_red_even_when_every_check_passed() -> None:
    run = make_run("20260103-000000-emu-cccccc", T0 + 2 * DAY, tcp=1.0, rtt=0.1)
    run.layers.append(LayerRecord(LAB, "guests", "down", "broken", "AttributeError: no attribute 'forget'"))
    view = build_view(run)
    (lab,) = view.labs
    assert all(not c.bad for c in lab.checks)
    assert (lab.verdict, view.verdict, lab.teardown_failed) == ("failed", "failed", ("guests",))
    text = format_summary(view)
    assert "verdict FAILED" in text and "teardown of guests failed" in text
    head = render_html(run)
    head = head[head.index('id="headline"'):head.index('id="failures"')]
    assert "DATAPATH OK" not in head and "FAILED" in head and "teardown of guests failed" in head


# --------------------------------------------------------------------------- through the console script


def _vdpalab(*args: str) -> subprocess.CompletedProcess[str]:
    exe = [str(VDPALAB)] if VDPALAB.exists() else [sys.executable, "-m", "vdpalab.cli"]
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_compare_command_versions_first_then_metrics_within_noise(history, tmp_path: Path) -> None:
    url = history[0]
    proc = _vdpalab("compare", "latest~1", "latest", "--db", url, "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.index("What changed in the lab") < out.index("kernel: 6.1.0-18-amd64 -> 6.1.0-21-amd64") \
        < out.index("Metrics (B vs A")
    tcp = next(line for line in out.splitlines() if "test_tcp_throughput[emu-forward-P1]" in line)
    assert "-6.65%" in tcp and " worse " in f"{tcp} " and "±5% default" in tcp
    lab_file = tmp_path / "lab.toml"
    text = (ROOT / "lab.toml").read_text()
    text = re.sub(r"noise_pct = \{[^}]*\}", "noise_pct = { throughput_gbps = 8.0 }", text)
    lab_file.write_text(text)
    proc = _vdpalab("compare", "latest~1", "latest", "--db", url, "--out", str(tmp_path / "cmp"),
                    "--lab-file", str(lab_file))
    assert proc.returncode == 0, proc.stderr
    tcp = next(line for line in proc.stdout.splitlines() if "test_tcp_throughput[emu-forward-P1]" in line)
    assert "within noise" in tcp and "±8% lab tolerance" in tcp
    frame = pd.read_csv(next((tmp_path / "cmp").glob("*.csv")))
    assert all(label.startswith(metric) for label, metric in zip(frame["label"], frame["metric"], strict=True))


def test_compare_takes_the_noise_bands_from_the_lab_file_run_b_was_run_with(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    with HistoryStore(url) as store:
        for k, tcp in enumerate((1.0, 0.9335)):
            run = make_run(f"2026010{k + 1}-000000-emu-{k:06x}", T0 + k * DAY, tcp=tcp, rtt=0.1)
            store.import_run(replace(run, pytest_args=("-m", "datapath", "--lab", "lab.toml")))
    proc = _vdpalab("compare", "latest~1", "latest", "--db", url, "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    assert "noise bands: lab.toml (the --lab of run B)" in proc.stdout
    tcp = next(line for line in proc.stdout.splitlines() if "test_tcp_throughput[emu-forward-P1]" in line)
    band = load_lab(ROOT / "lab.toml").reports.noise_pct["throughput_gbps"]
    assert "within noise" in tcp and f"±{band:g}% lab tolerance" in tcp, tcp


def _trend_history(url: str) -> tuple[float, float]:
    """Runs every 12 h for 40 days: TCP drops 30% 20 days before the end, rtt doubles in the last day."""
    n = 80
    with HistoryStore(url) as store:
        for k in range(n):
            started = T0 + k * DAY / 2
            wobble = 1 + 0.003 * ((k * 7) % 5 - 2)
            tcp = (1.0 if k < n - 40 else 0.7) * wobble
            rtt = (0.1 if k < n - 2 else 0.2) * wobble
            store.import_run(make_run(f"2026{k:04d}-emu-{k:06x}", started, tcp=tcp, rtt=rtt))
    return T0 + (n - 40) * DAY / 2, T0 + (n - 2) * DAY / 2


def test_trend_page_tables_for_1_7_and_130_days_link_to_charts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.sqlite'}"
    _trend_history(url)
    out = tmp_path / "trend"
    proc = _vdpalab("trend", "--db", url, "--out", str(out), "--workers", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the rtt regression is in the newest group
    html = (out / "index.html").read_text()

    def period(days: int) -> str:
        start = html.index(f'id="last-{days}d"')
        return html[start:html.index("</div>", start)]

    assert "rtt_avg_ms" in period(1) and "throughput_gbps" not in period(1)
    assert "rtt_avg_ms" in period(7) and "throughput_gbps" not in period(7)
    assert "rtt_avg_ms" in period(130) and "throughput_gbps" in period(130)
    links = re.findall(r'<a href="([^"#]+\.png)">', period(130))
    assert len(links) >= 2 and all((out / link).is_file() for link in links)


# --------------------------------------------------------------------------- looked at, in Chromium


def _chromium() -> None:
    if find_chromium() is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")


def test_report_and_trend_page_render_clean_with_the_headline_on_the_first_screen(history, tmp_path: Path) -> None:
    _chromium()
    url, _good, bad = history
    with HistoryStore(url, create=False) as store:
        ctx = build_context(store, bad, trend_href="../trend/index.html")
    page = write_html(bad, tmp_path / "report.html", context=ctx)
    seen = inspect_page(page)
    assert seen.console_errors == [], seen.console_errors
    assert seen.element is not None and seen.element["visible"] and seen.element["top"] < 900
    assert "TCP THROUGHPUT" in seen.element["text"].upper() and "FAILED" in seen.element["text"]
    assert seen.png[:8] == b"\x89PNG\r\n\x1a\n"
    trend_url = f"sqlite:///{tmp_path / 't.sqlite'}"
    _trend_history(trend_url)
    _vdpalab("trend", "--db", trend_url, "--out", str(tmp_path / "trend"), "--workers", "1")
    seen = inspect_page(tmp_path / "trend" / "index.html")
    assert seen.console_errors == [], seen.console_errors
    assert seen.element is not None and seen.element["visible"] and seen.element["top"] < 900
    assert "Last 1 day" in seen.element["text"] and "REGRESSION" in seen.element["text"]


def test_the_browser_check_catches_console_errors_and_a_buried_headline(tmp_path: Path) -> None:
    _chromium()
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><div style="height:1500px">filler</div>'
                      '<section id="headline">late</section><script>undefinedFunction();</script>'
                      '<img src="missing.png"></body></html>')
    seen = inspect_page(broken)
    assert any("undefinedFunction" in e for e in seen.console_errors), seen.console_errors
    assert seen.element is not None and seen.element["top"] >= 900
    hidden = tmp_path / "hidden.html"
    hidden.write_text('<!DOCTYPE html><html><body><section id="headline" style="display:none">x</section></body>'
                      "</html>")
    assert inspect_page(hidden).element["visible"] is False
    assert inspect_page(hidden, selector="#nothing").element is None



def test_an_absolute_band_covers_a_metric_whose_baseline_is_zero() -> None:
    """0 % -> 0.4 % UDP loss has no relative band; the lab's ``noise_abs`` (lab.toml: 0.5 points) makes it noise,
    in compare, the summary and the report alike, while a loss beyond it is still worse."""
    absolute = dict(load_lab(ROOT / "lab.toml").reports.noise_abs)
    assert classify_change("loss_pct", 0.0, 0.4, "lower").kind == "worse"
    inside = classify_change("loss_pct", 0.0, 0.4, "lower", absolute=absolute)
    assert inside.kind == "within noise" and inside.noise_source == f"±{absolute['loss_pct']:g} absolute lab tolerance"
    assert classify_change("loss_pct", 0.0, 3.0, "lower", absolute=absolute).kind == "worse"
    # a relative band wider than the absolute one still wins
    assert classify_change("rtt_avg_ms", 1.0, 1.3, "lower", tolerances_pct={"rtt_avg_ms": 40},
                           absolute={"rtt_avg_ms": 0.1}).kind == "within noise"


def test_a_report_rebuilt_from_the_history_compares_as_the_runs_own_did(history, tmp_path: Path) -> None:
    """``vdpalab report RUN`` rebuilds report.html with the baseline the history had then (the good run
    before it) and says which noise bands it used, instead of a report with "No baseline"."""
    url, good, bad = history
    proc = _vdpalab("report", "latest", "--db", url, "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "noise bands: ±5% default (run 20260102-000000-emu-bbbbbb names no lab file that is here" in proc.stdout
    html = (tmp_path / "r" / bad.run_id / "report.html").read_text()
    assert f"Compared with the last good run <code>{good.run_id}</code>" in html and "No baseline" not in html
    assert 'href="../trend/index.html"' in html
    # the older run had no earlier good run: its rebuilt report says so, it is not compared with the newer one
    proc = _vdpalab("report", good.run_id, "--db", url, "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "No baseline" in (tmp_path / "r" / good.run_id / "report.html").read_text()

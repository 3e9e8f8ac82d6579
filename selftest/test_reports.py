"""Run reports: tidy CSV, valid JUnit with the fingerprint, metadata.json, the ``latest`` link,
a self-contained HTML file whose charts are real images, rendered by headless Chromium,
and ``vdpalab report`` regenerating all of it from the history store or a run directory."""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

from vdpalab.commands import report as report_cmd
from vdpalab.history import HistoryStore
from vdpalab.reports import LATEST, charts, write_reports
from vdpalab.reports.browser import find_chromium, screenshot
from vdpalab.reports.charts import image_stats
from vdpalab.reports.junit import split_test_id
from vdpalab.reports.meta import load_run_dir
from vdpalab.results import Result, RunRecord
from vdpalab.testing.sample import LAB, sample_run

pytestmark = pytest.mark.selftest


def assert_real_image(png: bytes | Path, *, min_w: int = 200, min_h: int = 100) -> dict[str, float]:
    """A chart is not blank: big enough, and its pixels vary (not one flat colour)."""
    stats = image_stats(png)
    assert stats["width"] >= min_w and stats["height"] >= min_h, f"image too small: {stats}"
    assert stats["std"] > 0.02, f"image is (nearly) one flat colour: {stats}"
    assert stats["drawn"] > 0.01, f"almost nothing is drawn: {stats}"
    return stats


@pytest.fixture(scope="module")
def run() -> RunRecord:
    return sample_run()


@pytest.fixture(scope="module")
def written(run: RunRecord, tmp_path_factory: pytest.TempPathFactory):
    return write_reports(run, tmp_path_factory.mktemp("reports"))


def test_every_file_is_written_into_the_run_directory(written, run: RunRecord) -> None:
    assert written.run_dir.name == run.run_id
    assert sorted(p.name for p in written.run_dir.iterdir()) == ["junit.xml", "metadata.json", "report.html",
                                                                  "results.csv", "verdicts.csv"]
    assert not list(written.run_dir.glob(".*")), "temporary files were left behind"


def test_verdict_rows_in_csv_and_junit(written, run: RunRecord) -> None:
    """Every verdict is a row (metric, limit, measured, verdict, direction) in verdicts.csv and a JUnit property."""
    frame = pd.read_csv(written.verdicts_csv, keep_default_na=False)
    assert len(frame) == len(run.verdicts) > 0
    for column in ("metric", "limit", "measured", "verdict", "direction", "kind"):
        assert column in frame.columns
    assert (frame["verdict"] == "fail").sum() == sum(v.failed for v in run.verdicts)
    assert (frame["verdict"] == "pass").sum() == sum(v.ok for v in run.verdicts) > 0
    assert set(frame["direction"]) <= {"higher", "lower"} and "higher" in set(frame["direction"])
    junit = written.junit_xml.read_text()
    assert junit.count('name="verdict.') == len(run.verdicts)
    first = next(v for v in run.verdicts if v.ok and v.limit is not None)
    assert f"pass: measured {first.seen:.6g} {first.unit}, limit {first.limit:.6g}" in junit


def test_results_csv_is_tidy(written, run: RunRecord) -> None:
    frame = pd.read_csv(written.results_csv)
    for column in ("run_id", "lab", "test_id", "metric", "value", "unit", "params", "n_samples", "started", "ended"):
        assert column in frame.columns
    assert len(frame) == len(run.results)
    assert set(frame["run_id"]) == {run.run_id} and set(frame["lab"]) == {LAB}
    keys = frame[["lab", "test_id", "metric", "params", "trial"]].astype(str).agg("|".join, axis=1)
    assert keys.is_unique, "one row per metric per test per parameter set"
    assert frame["value"].dtype.kind == "f" and frame["n_samples"].dtype.kind == "i"
    for _, row in frame.iterrows():
        params = json.loads(row["params"])
        for name, value in params.items():
            cell = row[f"param.{name}"]
            assert float(cell) == value if isinstance(value, int | float) else str(cell) == str(value)
    pd.to_datetime(frame["started"], utc=True)  # ISO 8601, parseable
    rtt = frame[(frame.metric == "rtt_avg_ms") & (frame["param.size"] == 56)]
    assert len(rtt) == 2 and (rtt["n_samples"] == 2000).all() and (rtt["unit"] == "ms").all()


def test_junit_is_valid_and_carries_the_fingerprint(written, run: RunRecord) -> None:
    root = ET.parse(written.junit_xml).getroot()
    assert root.tag == "testsuites"
    counts = run.counts()
    assert root.get("tests") == str(len(run.outcomes))
    assert (root.get("failures"), root.get("errors"), root.get("skipped")) == (
        str(counts["failed"]), str(counts["error"]), str(counts["skipped"]))
    (suite,) = root.findall("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["run_id"] == run.run_id and props["run_status"] == "complete"
    assert props["fingerprint.kernel"] == "5.11.11-1.el8.elrepo.x86_64"
    assert props["fingerprint.nic_firmware"].startswith("22.29.2002")
    for component in ("nic_driver", "ofed", "ovs", "dpdk", "qemu", "libvirt"):
        assert props[f"fingerprint.{component}"]
    cases = {f"{c.get('classname')}::{c.get('name')}": c for c in suite.findall("testcase")}
    assert len(cases) == len(run.outcomes)
    failed = cases[f"tests_datapath.test_counters::test_counter_symmetry[{LAB}-udp]"]
    assert "br31-ovs" in failed.find("failure").get("message")
    out = failed.find("system-out").text
    assert "port  ens2f1_0" in out and "mlx5_vdpa_handle_set_map" in out  # diagnostics
    assert cases[f"tests_datapath.test_ping::test_flood_ping[{LAB}-8972B-a_to_b]"].find("skipped") is not None
    assert cases[f"tests_datapath.test_frames::test_crafted_frame[{LAB}-vlan]"].find("error") is not None
    ping = cases[f"tests_datapath.test_ping::test_flood_ping[{LAB}-56B-a_to_b]"]
    metric_props = {p.get("name") for p in ping.find("properties")}
    assert any(n.startswith("metric.rtt_avg_ms") for n in metric_props)
    assert split_test_id("a/b.py::C::t[x]") == ("a.b.C", "t[x]")


def test_metadata_json(written, run: RunRecord) -> None:
    meta = json.loads(written.metadata_json.read_text())
    assert meta["format"] == "vdpalab-run/1" and meta["run_id"] == run.run_id
    assert meta["status"] == "complete" and meta["duration_s"] == pytest.approx(1894.0)
    assert meta["counts"] == run.counts() and meta["n_results"] == len(run.results)
    assert meta["fingerprints"][LAB]["components"]["qemu"] == "6.0.0-rc1"
    assert meta["suite_revision"] == run.suite_revision and meta["pytest_args"] == list(run.pytest_args)
    assert len(meta["commands"]) == len(run.commands) and len(meta["outcomes"]) == len(run.outcomes)
    failed = next(o for o in meta["outcomes"] if o["outcome"] == "failed")
    assert "host: kernel log since the test's marker" in failed["diagnostics"]
    assert {v["status"] for v in meta["verdicts"]} == {"pass", "no baseline"}


def test_latest_symlink_only_moves_forward(tmp_path: Path, run: RunRecord) -> None:
    first = write_reports(run, tmp_path)
    link = tmp_path / LATEST
    assert link.is_symlink() and os.readlink(link) == run.run_id and first.latest == link
    assert (link / "report.html").exists()
    newer = replace(run, run_id="20260528-011500-cx6dx-qemu-aaaaaa", started=run.started + 86400)
    write_reports(newer, tmp_path)
    assert os.readlink(link) == newer.run_id
    again = write_reports(run, tmp_path)  # regenerating an older run does not steal "latest"
    assert os.readlink(link) == newer.run_id and again.latest is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".latest")], "temporary link left behind"


def _inline_images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_html_is_self_contained_with_real_charts(written, run: RunRecord) -> None:
    html = written.report_html.read_text()
    assert "<script" not in html.lower() and "<link" not in html.lower()
    external = re.findall(r'(?:src|href)="(?!data:|#)([^"]*)"', html)
    assert external == [], f"external references: {external}"
    assert "http://" not in html and "https://" not in html
    for needle in (run.run_id, "5.11.11-1.el8.elrepo.x86_64", "MLNX_OFED_LINUX-5.2-2.2.0.0", "<details",
                   "ovs-ofctl -O OpenFlow14 dump-ports br31-ovs", "no baseline", "21 passed", "FAILED",
                   "vDPA evidence used", "NDR", "PDR", 'id="headline"'):
        assert needle in html, needle
    images = _inline_images(html)
    assert len(images) >= 3  # per-check bars and raw-sample charts (flat metrics get none)
    for png in images:
        assert_real_image(png)


def test_chart_functions_draw_real_images(run: RunRecord) -> None:
    tp = [r for r in run.results if r.name == "throughput_gbps" and "tcp_throughput" in r.test_id]
    assert_real_image(charts.metric_chart(tp))
    assert_real_image(charts.samples_chart(tp))
    rtt = [r for r in run.results if r.name == "rtt_avg_ms"]
    assert_real_image(charts.samples_chart(rtt))  # histogram branch (2000 samples)
    rows = [{"label": "a", "delta_pct": 5.0, "change": "better"}, {"label": "b", "delta_pct": -3.0, "change": "worse"}]
    assert_real_image(charts.compare_chart(rows, "A", "B"))


def test_chromium_renders_the_report(written, tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    png = screenshot(written.report_html, tmp_path / "shot.png", width=1280, height=1600)
    assert_real_image(png, min_w=1200, min_h=1500)
    img = mpimg.imread(png)
    assert float(img[:60, :, :3].mean()) < 0.35, "the dark header band is missing: the page did not render"
    assert float(img[300:, :, :3].mean()) > 0.8, "the body should be mostly white (tables on white)"


def test_report_command_regenerates_from_the_store_and_from_a_directory(tmp_path: Path, run: RunRecord,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    with HistoryStore(db) as store:
        store.import_run(run)
    parser = argparse.ArgumentParser()
    report_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["report", "latest", "--db", db, "--out", str(tmp_path / "out")])
    assert args.handler(args) == 0
    assert f"run {run.run_id} (complete): 21 passed, 1 failed, 1 errors, 1 skipped" in capsys.readouterr().out
    regenerated = tmp_path / "out" / run.run_id
    again = load_run_dir(regenerated)
    assert again.run_id == run.run_id and len(again.results) == len(run.results)
    assert {r.key: r.value for r in again.results} == pytest.approx({r.key: r.value for r in run.results})
    assert os.readlink(tmp_path / "out" / LATEST) == run.run_id
    # A run directory whose run is not in the store: rebuilt from metadata.json + results.csv.
    other = replace(run, run_id="20260601-000000-elsewhere-000001",
                    results=[Result("x_gbps", 1.0, "Gbit/s", test_id="t", lab=LAB)])
    write_reports(other, tmp_path / "far")
    args = parser.parse_args(["report", str(tmp_path / "far" / other.run_id), "--db", db])
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    assert "rebuilding from" in captured.err and "from " + str(tmp_path / "far" / other.run_id) in captured.out


def test_headline_of_the_sample_has_vdpa_evidence_and_ndr_pdr_per_frame_size(run: RunRecord) -> None:
    from vdpalab.reports.terminal import format_summary
    from vdpalab.reports.view import build_view

    view = build_view(run)
    (lab,) = view.labs
    heads = {h.spec.key: h for h in lab.headlines}
    ndr, pdr = heads["ndr"], heads["pdr"]
    # 64 B and 1518 B NDRs are never averaged: the figure is the smallest frame size's, and says so
    assert (ndr.value, ndr.sets, ndr.scope) == (9.62e6, 1, "64 B frames")
    assert pdr.value == pytest.approx(9.62e6 * 1.04)
    # the failed counter check elsewhere in the run does not paint the NDR figure red
    assert (ndr.outcome, heads["ping_rtt"].outcome) == ("passed", "passed")
    evidence = next(s for s in lab.statuses if s.title == "vDPA evidence used")
    assert (evidence.outcome, evidence.text, evidence.detail) == ("passed", "yes", "evidence: vstats")
    text = format_summary(view)
    assert "NDR (64 B frames) 9,620,000 pps" in text and "vDPA evidence used: yes (evidence: vstats)" in text


def _ndr_run(cases: dict[tuple[int, str], float | None]) -> RunRecord:
    """NDR/PDR results as benchmarks/test_ndr.py records them: ``ndr_pps``/``pdr_pps`` when the number is the
    datapath's, ``tester_limit_pps`` (params goal, frame_size, direction) when it was the generator's (None)."""
    from vdpalab.results import TestOutcome

    outcomes, results = [], []
    limit = 35_000.0  # lab file's [traffic.ndr] max_load_pps of the real tester-limited run
    for (size, direction), ndr in cases.items():
        tid = f"benchmarks/test_ndr.py::test_ndr_pdr[emu-{size}B-{direction}]"
        params = {"frame_size": size, "direction": direction}
        outcomes.append(TestOutcome(tid, "passed", 60.0, lab="emu"))
        for goal in ("ndr", "pdr"):
            if ndr is None:
                results.append(Result("tester_limit_pps", limit, "pps", test_id=tid, lab="emu", better="higher",
                                      params={**params, "goal": goal}))
            else:
                results.append(Result(f"{goal}_pps", ndr, "pps", test_id=tid, lab="emu", better="higher",
                                      params=params))
    return RunRecord(run_id="20261205-190000-emu-ndr000", started=1.79e9, ended=1.79e9 + 300, status="complete",
                     outcomes=outcomes, results=results)


def test_a_tester_limited_ndr_reads_as_the_generators_limit_never_as_the_datapaths(tmp_path: Path) -> None:
    from vdpalab.reports.html import render_html
    from vdpalab.reports.terminal import format_summary
    from vdpalab.reports.view import build_view

    # One direction measured, the other tester-limited: the figure is the measured one and says the other was not.
    mixed = build_view(_ndr_run({(64, "forward"): 32_853.0, (64, "reverse"): None, (1400, "forward"): 13_255.0}))
    ndr = next(h for h in mixed.labs[0].headlines if h.spec.key == "ndr")
    assert (ndr.value, ndr.sets, ndr.scope, ndr.limited, ndr.tester_limited) == (32_853.0, 1, "64 B frames", 1, False)
    assert ("NDR (64 B frames) 32,853 pps (no baseline; 1 parameter set tester-limited (≥ 35,000 pps, the "
            "generator's limit), not in this figure)") in format_summary(mixed).replace("\n          ", " ")
    # Every 64 B set tester-limited: the headline stays at 64 B (it does not slide to the 1400 B figure) and reads
    # as a lower bound that is the generator's, in the terminal summary and on the report's first screen.
    run = _ndr_run({(64, "forward"): None, (64, "reverse"): None, (1400, "forward"): 13_255.0})
    view = build_view(run)
    ndr = next(h for h in view.labs[0].headlines if h.spec.key == "ndr")
    assert (ndr.scope, ndr.sets, ndr.limited, ndr.tester_limited, ndr.shown) == ("64 B frames", 0, 2, True,
                                                                                 "≥ 35,000 pps")
    text = format_summary(view).replace("\n          ", " ")
    assert ("NDR (64 B frames) ≥ 35,000 pps (tester-limited (2 parameter sets): no loss up to the generator's limit "
            "35,000 pps; the datapath's figure is at least that and was not measured)") in text
    assert "13,255" not in text.split("check [parameters]")[0]  # the 1400 B number is not the headline
    html = render_html(run)
    headline = html[html.index('id="headline"'):html.index('id="failures"')]
    card = headline[headline.rindex('<div class="fig', 0, headline.index('id="fig-emu-ndr"')):]
    card = card[:card.index('id="fig-emu-pdr"')]
    assert " limited" in card.split(">", 1)[0] and "≥ 35,000 pps" in card
    assert "tester-limited: the generator's limit, not the datapath's" in card.replace("&#39;", "'")
    assert "13,255" not in headline and "no baseline" not in card and "first run of this figure" not in card
    assert "no datapath figure in this run" in card

"""Two real runs of a private copy of the emulated lab, seen through the user's door.

`pytest -m datapath --lab COPY` in a subprocess, twice, into one history: the first with pytest's
own `--no-summary` (no vdpalab summary appears), the second prints the vdpalab summary with the
first run as its baseline, the key figures with units and their change. Its report.html renders
in Chromium without console errors, with the headline figures on the first screen, and links to
the trend page that the installed `vdpalab trend` then writes next to it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_faults import ROOT, cleanup, make_lab

from vdpalab.reports.browser import find_chromium, inspect_page

pytestmark = [pytest.mark.selftest, pytest.mark.emulated, pytest.mark.slow]

TESTS = ["tests_datapath/test_ping.py", "tests_datapath/test_iperf3.py::test_tcp_throughput",
         "tests_datapath/test_counters.py"]


def _run(lab: Path, reports: Path, db: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", *TESTS, "-m", "datapath", "--lab", str(lab), "--reports-dir", str(reports),
           "--results-db", db, "-p", "no:cacheprovider", "-q", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.timeout(600)
def test_two_runs_print_the_summary_against_the_first_and_the_report_reads_headline_first(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (builds an emulated lab)")
    lab, name = make_lab(tmp_path, "s")
    reports = tmp_path / "reports"
    db = f"sqlite:///{tmp_path / 'history.sqlite'}"
    try:
        first = _run(lab, reports, db, "--no-summary")
        # the second run holds TCP to an impossible limit: its checks fail by the judge's verdict alone
        lab.write_text(re.sub(r"(?m)^tcp_throughput_gbps_min = .*$", "tcp_throughput_gbps_min = 1000", lab.read_text()))
        second = _run(lab, reports, db)
    finally:
        cleanup(lab, name)
    assert first.returncode in (0, 1), first.stdout[-3000:] + first.stderr[-2000:]
    assert "vdpalab summary" not in first.stdout, "--no-summary must switch the summary off"
    runs = sorted(p.name for p in reports.iterdir() if p.is_dir() and p.name not in ("latest", "trend"))
    assert len(runs) == 2, runs
    first_id, second_id = runs
    out = second.stdout
    assert second.returncode in (0, 1), out[-3000:] + second.stderr[-2000:]
    assert f"vdpalab summary: lab {name}" in out, out[-3000:]
    summary = out[out.index(f"vdpalab summary: lab {name}"):]
    # pytest's own short summary follows; on a wide terminal it repeats a failure's message lines
    summary = summary.split("short test summary info")[0]
    if first.returncode == 0:  # a good first run is the second one's baseline
        assert f"baseline {first_id} (last good run)" in summary, summary[:600]
    else:  # a failed run is never a baseline
        assert "no baseline run in the history" in summary, summary[:600]
    for needle in ("test_flood_ping[56B-a_to_b]", "loss_pct", " ms ", "throughput_gbps", "Gbit/s",
                   "test_counter_symmetry[ping]", "headline: Flood ping loss"):
        assert needle in summary, needle
    lines = summary.splitlines()
    rows = [line for line in lines if "throughput_gbps" in line and not line.lstrip().startswith("└")]
    assert rows and all(any(k in line for k in ("better", "worse", "within noise", "same", "no baseline"))
                                  for line in rows), "\n".join(lines)
    assert all("✗ ≥ 1000 Gbit/s" in line for line in rows), "the failed verdict is on each failed figure"
    assert second.returncode == 1
    first_failed = min(i for i, line in enumerate(lines) if line.startswith("FAILED test_tcp_throughput"))
    passed_rows = [i for i, line in enumerate(lines) if line.startswith("test_")]
    assert passed_rows and first_failed < passed_rows[0], "failed checks come first"
    assert "tcp_throughput_gbps_min" in lines[first_failed + 1], "the failure line names the limit"
    if find_chromium() is None:
        pytest.skip("chromium is not installed: the report was not looked at")
    report = reports / second_id / "report.html"
    seen = inspect_page(report)
    assert seen.console_errors == [], seen.console_errors
    assert seen.element is not None and seen.element["visible"] and seen.element["top"] < 900
    text = seen.element["text"].upper()
    assert "FLOOD PING LOSS" in text and "TCP THROUGHPUT" in text and "COUNTER SYMMETRY" in text
    vdpalab = ROOT / ".venv" / "bin" / "vdpalab"
    trend = subprocess.run([str(vdpalab), "trend", "--db", db, "--out", str(reports / "trend"), "--workers", "1"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert trend.returncode in (0, 1), trend.stderr
    assert 'href="../trend/index.html"' in report.read_text()
    assert (report.parent / "../trend/index.html").resolve().is_file()
    seen = inspect_page(reports / "trend" / "index.html")
    assert seen.console_errors == [] and seen.element is not None and seen.element["top"] < 900

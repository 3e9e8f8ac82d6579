"""A pytest session that ran no test is never a green, complete run.

Through pytest itself (a subprocess, the user's door): ``--collect-only`` writes no report and no
history entry and prints no verdict; a run whose selection is empty (pytest exit 5) is stored
``incomplete`` and its summary and report say that nothing ran, never PASSED / DATAPATH OK.
Neither builds a lab: no test body or fixture runs.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests_datapath/test_iperf3.py", "--lab", "lab.toml",
         "--reports-dir", str(tmp_path / "reports"), "--results-db", f"sqlite:///{tmp_path / 'history.sqlite'}",
         "-p", "no:cacheprovider", "-q", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )


def test_collect_only_writes_no_report_and_no_history(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--collect-only")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "test_udp_loss[emu-reverse]" in out  # it did collect
    assert "no report and no history entry written" in out
    assert "vdpalab summary" not in out and "PASSED" not in out
    assert not (tmp_path / "reports").exists()
    assert not (tmp_path / "history.sqlite").exists()


def test_an_empty_selection_is_stored_incomplete_and_says_so(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "-k", "no_such_test_anywhere")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 5, out  # pytest: no tests ran
    assert "verdict INCOMPLETE" in out and "No test ran" in out, out
    assert "PASSED" not in out
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM runs")]
    assert statuses == ["incomplete"]
    html = (tmp_path / "reports" / "latest" / "report.html").read_text(encoding="utf-8")
    assert "Incomplete run." in html and "No test ran" in html
    assert "DATAPATH OK" not in html

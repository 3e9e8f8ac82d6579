"""``--baseline`` cannot ratchet: a 4 %-a-night drift fails a 5 % gate by the second night; pins are honoured.

Each "night" is a real pytest session (a subprocess, the user's door: ``pytest --lab lab.toml
--baseline throughput_gbps:5%``) running one tiny test that records the night's throughput
with the suite's ``record`` fixture, into one history store. Night 1 is -4 % against night 0
(passes); night 2 is -7.8 % against night 0, because night 1 passed its gate against night 0
and hands that baseline on: red. Comparing with "the previous run" would pass every night.
``vdpalab baseline pin`` (the installed console script) then moves the reference on purpose.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.selftest, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = Path(sys.executable).parent / "vdpalab"
NIGHT_TEST = '''
import os


def test_night(lab, record):
    record("throughput_gbps", float(os.environ["NIGHT_GBPS"]), "Gbit/s", better="higher")
'''


def _night(tmp: Path, gbps: float) -> tuple[int, str, list[dict[str, str]]]:
    """One nightly session; returns (exit status, output, the run's verdict rows)."""
    reports = tmp / "reports"
    cmd = [sys.executable, "-m", "pytest", str(tmp / "test_night.py"), "--rootdir", str(tmp), "-p", "no:cacheprovider",
           "-p", "fixtures.lab_options", "-p", "fixtures.lab_session", "-p", "fixtures.recording",
           "--lab", str(tmp / "lab.toml"), "--baseline", "throughput_gbps:5%", f"--reports-dir={reports}",
           f"--results-db=sqlite:///{tmp / 'history.sqlite'}", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "NIGHT_GBPS": repr(gbps)}, capture_output=True,
                          text=True, timeout=120)
    with (reports / "latest" / "verdicts.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return proc.returncode, proc.stdout + proc.stderr, rows


def test_a_four_percent_nightly_drift_is_red_by_the_second_night(tmp_path: Path) -> None:
    shutil.copy(ROOT / "lab.toml", tmp_path / "lab.toml")
    (tmp_path / "test_night.py").write_text(NIGHT_TEST)
    nights = [_night(tmp_path, 10.0 * 0.96**k) for k in range(4)]
    rcs = [rc for rc, _, _ in nights]
    explain = "\n\n".join(out[-1500:] for _, out, _ in nights)
    assert rcs == [0, 0, 1, 1], explain
    first = [r for r in nights[0][2] if r["kind"] == "baseline"]
    assert [r["verdict"] for r in first] == ["no baseline"], first  # never a silent pass
    second = [r for r in nights[2][2] if r["kind"] == "baseline"]
    assert len(second) == 1 and second[0]["verdict"] == "fail", second
    assert float(second[0]["limit"]) == pytest.approx(9.5) and second[0]["direction"] == "higher", second
    assert float(second[0]["measured"]) == pytest.approx(10.0 * 0.96**2)
    assert "last-good's baseline" in second[0]["source"], second  # night 1 handed night 0 on
    # night 3: the newest good run is still night 1, so night 0 stays the reference (-11.5 %)
    assert [r["verdict"] for r in nights[3][2] if r["kind"] == "baseline"] == ["fail"]

    # pin night 1 through the installed console script: the next night is judged against it
    db = f"sqlite:///{tmp_path / 'history.sqlite'}"
    runs = sorted(p.name for p in (tmp_path / "reports").iterdir() if p.is_dir() and not p.is_symlink())
    assert len(runs) == 4
    pin = subprocess.run([str(CONSOLE), "baseline", "--db", db, "pin", runs[1]], capture_output=True, text=True,
                         timeout=60)
    assert pin.returncode == 0 and f"pinned {runs[1]} as the baseline of emu" in pin.stdout, pin.stdout + pin.stderr
    show = subprocess.run([str(CONSOLE), "baseline", "--db", db, "show"], capture_output=True, text=True, timeout=60)
    assert f"emu: {runs[1]} (pinned" in show.stdout, show.stdout + show.stderr
    rc, out, rows = _night(tmp_path, 9.3)  # -3.1 % against the pinned 9.6
    assert rc == 0, out[-2000:]
    (row,) = [r for r in rows if r["kind"] == "baseline"]
    assert row["verdict"] == "pass" and runs[1] in row["source"] and "pinned" in row["source"], row
    unpin = subprocess.run([str(CONSOLE), "baseline", "--db", db, "unpin"], capture_output=True, text=True,
                           timeout=60)
    assert unpin.returncode == 0 and "unpinned emu" in unpin.stdout, unpin.stdout + unpin.stderr

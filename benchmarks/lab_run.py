"""What the lab benchmarks share: the whole ``-m "bringup or datapath"`` run of a lab file as a subprocess (the
user's own command, so its wall time is what a user waits), the rows read from its results.csv, teardown of a
renamed lab copy, and the printed table."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vdpalab import control
from vdpalab.config import Lab

ROOT = Path(__file__).resolve().parent.parent
Row = tuple[str, float, str, str]


def run_lab_tests(lab_file: str | Path, reports: Path | None, timeout: float,
                  extra: Sequence[str] = ()) -> tuple[subprocess.CompletedProcess[str], float]:
    """``pytest -m "bringup or datapath" --lab LAB tests_bringup tests_datapath`` and its wall time in seconds;
    ``reports=None`` writes no reports."""
    where = ["--no-reports"] if reports is None else ["--reports-dir", str(reports)]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "bringup or datapath", "--lab", str(lab_file), *where,
         "-p", "no:cacheprovider", "-q", *extra, "tests_bringup", "tests_datapath"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return proc, time.monotonic() - started


def run_summary(what: str, proc: subprocess.CompletedProcess[str], wall: float, target_s: float) -> Row:
    """The run's row: its wall time, with pytest's last summary line and the exit code when it failed."""
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1].strip("= ")
    status = "" if proc.returncode == 0 else f", FAILED rc={proc.returncode}"
    return (f"{what} bringup+datapath run ({summary}{status})", wall, "s", f"< {target_s:g} s")


def _results(reports: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted({p.resolve() for p in reports.glob("*/results.csv")}):  # "latest" links to a run
        with open(path, newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def run_rows(what: str, proc: subprocess.CompletedProcess[str], wall: float, target_s: float, reports: Path,
             through: str) -> list[Row]:
    """The pytest run's wall time and outcome, and the ping rtt / TCP figures of its results.csv."""
    rows: list[Row] = [run_summary(what, proc, wall, target_s)]
    for row in _results(reports):
        case = row["test_id"].split("[")[-1].rstrip("]")
        if row["metric"] == "rtt_avg_ms" and "flood_ping" in row["test_id"]:
            rows.append((f"ping rtt avg through {through} ({case})", float(row["value"]), "ms", ""))
        if row["metric"] == "throughput_gbps" and "tcp_throughput" in row["test_id"]:
            rows.append((f"TCP through {through} ({case})", float(row["value"]), "Gbit/s", ""))
    return rows


def down_and_remove(lab: Lab, work: Path) -> None:
    """Take a renamed lab copy down (a no-op after a clean run; removes what a failed one left), then its files."""
    try:
        control.lab_down(lab)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_rows(rows: Sequence[Row]) -> None:
    for name, value, unit, target in rows:
        print(f"{name:72s} {value:9.3f} {unit:7s} target {target}")

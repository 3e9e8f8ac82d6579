"""The emulated-vdpa lab's figures: image build (first and cached), VM boot to SSH, lab up, the whole
``-m "bringup or datapath"`` run, and the flood-ping rtt and TCP Gbit/s it measured through VDUSE.

* image build, first: into a fresh temporary cache (private ``apt-get update``, download of the whole package
  closure, unpack, ``mkfs.ext4 -d``); cached: the same call again (reads one manifest);
* lab up: ``vdpalab.control.lab_up`` on a renamed copy of ``labs/emulated-vdpa.toml`` (``vdpalab-bv-*``
  namespace, state in a temporary directory, the machine's image cache), split into the VM's boot to SSH and the
  bring-up layers; then ``lab_down``;
* the run: ``pytest -m "bringup or datapath" --lab COPY`` as a subprocess (bring-up, checks, teardown), its wall
  time, and the ``rtt_avg_ms`` / ``throughput_gbps`` rows of the run's results.csv.
Needs root and network access to Debian's archive (first build only).

    .venv/bin/python benchmarks/bench_vdpa.py [--lab labs/emulated-vdpa.toml] [--no-first-build] [--reports-dir D]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from vdpalab import control  # noqa: E402
from vdpalab.config import load_lab  # noqa: E402
from vdpalab.emulated.relabel import relabel_lab_file  # noqa: E402
from vdpalab.emulated.vm_image import build_vm_image  # noqa: E402

BOOT_TARGET_S = 30.0
RUN_TARGET_S = 180.0
Row = tuple[str, float, str, str]


def _quiet(message: str) -> None:
    return None


def bench_image(first: bool = True) -> list[Row]:
    rows: list[Row] = []
    cache = Path(tempfile.mkdtemp(prefix="vdpalab-bv-cache-")) if first else None
    try:
        if cache is not None:
            t0 = time.monotonic()
            build_vm_image(cache, log=_quiet)
            rows.append(("vdpa VM image build, first (apt update + download + unpack + mkfs)",
                         time.monotonic() - t0, "s", ""))
            t0 = time.monotonic()
            build_vm_image(cache, log=_quiet)
            rows.append(("vdpa VM image build, cached", time.monotonic() - t0, "s", "< 1 s"))
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
    return rows


def _results(reports: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted({p.resolve() for p in reports.glob("*/results.csv")}):  # "latest" links to a run
        with open(path, newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def run_rows(what: str, proc: subprocess.CompletedProcess[str], wall: float, target_s: float, reports: Path,
             through: str) -> list[Row]:
    """The pytest run's wall time and outcome, and the ping rtt / TCP figures of its results.csv."""
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1].strip("= ")
    status = "" if proc.returncode == 0 else f", FAILED rc={proc.returncode}"
    rows: list[Row] = [(f"{what} bringup+datapath run ({summary}{status})", wall, "s", f"< {target_s:g} s")]
    for row in _results(reports):
        case = row["test_id"].split("[")[-1].rstrip("]")
        if row["metric"] == "rtt_avg_ms" and "flood_ping" in row["test_id"]:
            rows.append((f"ping rtt avg through {through} ({case})", float(row["value"]), "ms", ""))
        if row["metric"] == "throughput_gbps" and "tcp_throughput" in row["test_id"]:
            rows.append((f"TCP through {through} ({case})", float(row["value"]), "Gbit/s", ""))
    return rows


def bench_vdpa(lab_file: str | Path = ROOT / "labs" / "emulated-vdpa.toml", first_build: bool = True,
               reports_dir: str | Path | None = None) -> list[Row]:
    """Rows ``(measurement, value, unit, target)``; a failed run is reported in the row's name, never raised."""
    if os.geteuid() != 0:
        return []
    rows = bench_image(first_build)
    work = Path(tempfile.mkdtemp(prefix="vdpalab-bv-"))
    path = relabel_lab_file(lab_file, work, f"bv{os.getpid() % 10000}", state_dir=work / "s")
    lab = load_lab(path)
    try:
        t0 = time.monotonic()
        with control.lab_up(lab) as handle:
            total = time.monotonic() - t0
            timings = getattr(handle.build, "timings", {})
            broken = [n for n, o in handle.outcomes.items() if o.status.value == "broken"]
        control.lab_down(lab)
        if "boot_to_ssh_s" in timings:
            rows.append(("vdpa lab VM boot to SSH (TCG, 2 vCPUs)", timings["boot_to_ssh_s"], "s",
                         f"< {BOOT_TARGET_S:g} s"))
        rows.append((f"vdpa lab up: VM + layers{' (BROKEN: ' + ', '.join(broken) + ')' if broken else ''}",
                     total, "s", ""))
        reports = Path(reports_dir) if reports_dir is not None else work / "reports"
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "bringup or datapath", "--lab", str(path), "--reports-dir",
             str(reports), "-p", "no:cacheprovider", "-q", "tests_bringup", "tests_datapath"],
            cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False,
        )
        rows += run_rows("emulated-vdpa", proc, time.monotonic() - started, RUN_TARGET_S, reports, "VDUSE")
        return rows
    finally:
        try:
            control.lab_down(lab)  # a no-op after a clean run; removes what a failed one left
        finally:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default=str(ROOT / "labs" / "emulated-vdpa.toml"), help="vdpa lab file to copy")
    parser.add_argument("--no-first-build", action="store_true", help="skip the first build into a fresh cache")
    parser.add_argument("--reports-dir", help="keep the run's reports here (default: a temporary directory)")
    args = parser.parse_args(argv)
    for name, value, unit, target in bench_vdpa(args.lab, first_build=not args.no_first_build,
                                                reports_dir=args.reports_dir):
        print(f"{name:72s} {value:8.3f} {unit:7s} target {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

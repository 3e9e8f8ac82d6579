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
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.lab_run import Row, down_and_remove, print_rows, run_lab_tests, run_rows  # noqa: E402
from vdpalab import control  # noqa: E402
from vdpalab.config import load_lab  # noqa: E402
from vdpalab.emulated.relabel import relabel_lab_file  # noqa: E402
from vdpalab.emulated.vm_image import build_vm_image  # noqa: E402

BOOT_TARGET_S = 30.0
RUN_TARGET_S = 180.0


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
        proc, wall = run_lab_tests(path, reports, timeout=1200)
        rows += run_rows("emulated-vdpa", proc, wall, RUN_TARGET_S, reports, "VDUSE")
        return rows
    finally:
        down_and_remove(lab, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default=str(ROOT / "labs" / "emulated-vdpa.toml"), help="vdpa lab file to copy")
    parser.add_argument("--no-first-build", action="store_true", help="skip the first build into a fresh cache")
    parser.add_argument("--reports-dir", help="keep the run's reports here (default: a temporary directory)")
    args = parser.parse_args(argv)
    print_rows(bench_vdpa(args.lab, first_build=not args.no_first_build, reports_dir=args.reports_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())

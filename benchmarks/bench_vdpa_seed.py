"""The emu-vdpa-seed lab's figures: each nested guest's boot to SSH and the whole ``-m "bringup or datapath"`` run.

The seed's QEMU and libvirt guests boot inside the vDPA lab VM under nested TCG, so this lab is by far the slowest
run in ``make test``; these rows say how slow. One run of ``pytest -m "bringup or datapath" --lab LAB`` as a
subprocess (bring-up from nothing, the checks, teardown) with live logging: the guests layer's "guest NAME: SSH
answered after T" lines give the boot-to-SSH times (both guests boot in parallel: the second one's time counts
from the end of the first one's wait), the run's results.csv the ping rtt and TCP figures. Needs root.

    .venv/bin/python benchmarks/bench_vdpa_seed.py [--lab labs/emulated-vdpa-seed-libvirt.toml]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.lab_run import Row, print_rows, run_lab_tests, run_rows  # noqa: E402

LAB = ROOT / "labs" / "emulated-vdpa-seed-libvirt.toml"
RUN_TARGET_S = 900.0
ANSWERED = re.compile(r"guest (\S+): SSH answered after ([\d.]+) (s|min)\b")


def boot_times(log: str) -> dict[str, float]:
    """Seconds to SSH per guest from the guests layer's progress lines."""
    return {m.group(1): float(m.group(2)) * (60 if m.group(3) == "min" else 1) for m in ANSWERED.finditer(log)}


def bench_vdpa_seed(lab_file: str | Path = LAB) -> list[Row]:
    """Rows ``(measurement, value, unit, target)``; a failed run is reported in the row's name, never raised."""
    if os.geteuid() != 0:
        return []
    reports = Path(tempfile.mkdtemp(prefix="vdpalab-bvs-"))
    log_cli = ["-o", "log_cli=true", "-o", "log_cli_level=INFO"]  # the guests' "SSH answered after" lines
    proc, wall = run_lab_tests(lab_file, reports, timeout=3600, extra=log_cli)
    rows: list[Row] = [
        (f"nested guest {guest}: start to SSH (nested TCG)", seconds, "s", "")
        for guest, seconds in boot_times(proc.stdout + proc.stderr).items()
    ]
    rows += run_rows("emu-vdpa-seed", proc, wall, RUN_TARGET_S, reports, "vhost_vdpa + VDUSE (nested guests)")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default=str(LAB), help="the nested-guests lab file")
    args = parser.parse_args(argv)
    print_rows(bench_vdpa_seed(args.lab))
    return 0


if __name__ == "__main__":
    sys.exit(main())

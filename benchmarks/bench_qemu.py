"""The emulated-qemu lab's figures: boot-to-SSH per guest and the wall time of a whole bring-up + datapath run.

Runs ``pytest -m "bringup or datapath" --lab COPY tests_bringup tests_datapath --no-reports`` as a subprocess on
a renamed copy of ``labs/emulated-qemu.toml`` (``vdpalab-bq-*`` namespaces, state in a temporary directory,
the cached guest image), so a default ``emu-qemu`` lab that is up is not disturbed. Boot-to-SSH is what the
guests layer measured (QEMU started -> ``true`` answered over SSH), read from the run's ``session.json``.
Needs root.

    .venv/bin/python benchmarks/bench_qemu.py [--lab labs/emulated-qemu.toml]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.lab_run import Row, down_and_remove, print_rows, run_lab_tests, run_summary  # noqa: E402
from vdpalab.config import load_lab  # noqa: E402
from vdpalab.emulated.qemu_lab import relabeled_qemu_lab  # noqa: E402

BOOT_TARGET_S = 20.0
RUN_TARGET_S = 240.0
_BOOT_RE = re.compile(r"^(\S+): qemu pid \d+, boot to SSH ([\d.]+) s")


def boot_times(state_dir: Path) -> dict[str, float]:
    """guest -> boot-to-SSH seconds, from the guests layer's evidence in the run's session.json."""
    try:
        record = json.loads((state_dir / "session.json").read_text())
    except (OSError, ValueError):
        return {}
    evidence = (record.get("outcomes", {}).get("guests") or {}).get("evidence") or {}
    times = {}
    for line in evidence.get("details", []):
        m = _BOOT_RE.match(line)
        if m:
            times[m.group(1)] = float(m.group(2))
    return times


def bench_qemu(lab_file: str | Path = ROOT / "labs" / "emulated-qemu.toml") -> list[Row]:
    """Rows ``(measurement, value, unit, target)``; a failed run is reported in the row's name, never raised."""
    if os.geteuid() != 0:
        return []
    work = Path(tempfile.mkdtemp(prefix="vdpalab-bq-"))
    path = relabeled_qemu_lab(lab_file, work, f"bq{os.getpid() % 100000}")
    lab = load_lab(path)
    try:
        proc, wall = run_lab_tests(path, None, timeout=900)
        rows: list[Row] = [(f"guest {guest} boot to SSH (TCG)", seconds, "s", f"< {BOOT_TARGET_S:g} s")
                           for guest, seconds in sorted(boot_times(lab.state_dir).items())]
        rows.append(run_summary("emulated-qemu", proc, wall, RUN_TARGET_S))
        return rows
    finally:
        down_and_remove(lab, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default=str(ROOT / "labs" / "emulated-qemu.toml"), help="qemu lab file to copy")
    args = parser.parse_args(argv)
    print_rows(bench_qemu(args.lab))
    return 0


if __name__ == "__main__":
    sys.exit(main())

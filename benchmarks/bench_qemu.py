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


def bench_qemu(lab_file: str | Path = ROOT / "labs" / "emulated-qemu.toml") -> list[tuple[str, float, str, str]]:
    """Rows ``(measurement, value, unit, target)``; a failed run is reported in the row's name, never raised."""
    if os.geteuid() != 0:
        return []
    work = Path(tempfile.mkdtemp(prefix="vdpalab-bq-"))
    path = relabeled_qemu_lab(lab_file, work, f"bq{os.getpid() % 100000}")
    lab = load_lab(path)
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "bringup or datapath", "--lab", str(path), "--no-reports",
             "-p", "no:cacheprovider", "-q", "tests_bringup", "tests_datapath"],
            cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
        )
        wall = time.monotonic() - started
        summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1].strip("= ")
        rows = [(f"guest {guest} boot to SSH (TCG)", seconds, "s", f"< {BOOT_TARGET_S:g} s")
                for guest, seconds in sorted(boot_times(lab.state_dir).items())]
        status = "" if proc.returncode == 0 else f", FAILED rc={proc.returncode}"
        rows.append((f"emulated-qemu bringup+datapath run ({summary}{status})", wall, "s", f"< {RUN_TARGET_S:g} s"))
        return rows
    finally:
        try:
            control.lab_down(lab)  # a no-op after a clean run; removes what a failed one left
        finally:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default=str(ROOT / "labs" / "emulated-qemu.toml"), help="qemu lab file to copy")
    args = parser.parse_args(argv)
    for name, value, unit, target in bench_qemu(args.lab):
        print(f"{name:70s} {value:8.2f} {unit}   target {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

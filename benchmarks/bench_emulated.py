"""How long the emulated lab takes to come up and go down (cold up < 2 s, down < 1 s, warm up < 0.5 s).

Runs on a renamed copy of lab.toml (``vdpalab-bench-*`` namespaces, state in a temporary
directory), so a default lab that is up is not disturbed. Cold up and down include the
bring-up layers over SSH when ``vdpalab.bringup`` is installed. Needs root.

    .venv/bin/python benchmarks/bench_emulated.py [--lab lab.toml] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from vdpalab import control  # noqa: E402
from vdpalab.emulated.relabel import relabeled_lab  # noqa: E402

TARGETS_S = {"cold up": 2.0, "warm up": 0.5, "down": 1.0}


def bench_emulated(lab_file: str | Path = ROOT / "lab.toml", rounds: int = 3) -> list[tuple[str, float, str]]:
    """Rows ``(measurement, seconds, "s")``: the median of ``rounds`` cold ups, warm ups and downs.

    The measurement's name carries its target (``benchmarks/suite.py`` prints rows as they come).
    """
    samples: dict[str, list[float]] = {name: [] for name in TARGETS_S}
    layers = True
    for _ in range(rounds):
        work = Path(tempfile.mkdtemp(prefix="vdpalab-bench-"))
        lab = relabeled_lab(lab_file, work, "bench", state_dir=work / "s")
        try:
            t0 = time.monotonic()
            with control.lab_up(lab) as handle:
                samples["cold up"].append(time.monotonic() - t0)
                layers = handle.bringup_available
            t0 = time.monotonic()
            with control.lab_up(lab) as handle:
                samples["warm up"].append(time.monotonic() - t0)
                if handle.changed:  # e.g. another lab's down took back the hugepages this one reserved
                    what = list(handle.build.changed) + [n for n, o in handle.outcomes.items() if o.changed]
                    print(f"note: a warm up changed {what} (it should only probe)", file=sys.stderr)
            t0 = time.monotonic()
            control.lab_down(lab)
            samples["down"].append(time.monotonic() - t0)
        finally:
            try:
                control.lab_down(lab)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    note = "" if layers else ", infrastructure only"
    return [
        (f"emulated lab {name} (target < {TARGETS_S[name]:g} s{note})", statistics.median(values), "s")
        for name, values in samples.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default=str(ROOT / "lab.toml"), help="emulated lab file to copy (default lab.toml)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (default 3)")
    args = parser.parse_args(argv)
    results = bench_emulated(args.lab, args.rounds)
    failed = False
    for (label, seconds, unit), name in zip(results, TARGETS_S, strict=True):
        ok = seconds < TARGETS_S[name]
        failed |= not ok
        verdict = "ok" if ok else "SLOWER THAN TARGET"
        print(f"{name:8s} measured {seconds:6.3f} {unit}   target < {TARGETS_S[name]:g} {unit}   {verdict}   [{label}]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""``make bench-suite``: the suite's own overhead figures, one row per measurement.

Each ``benchmarks/bench_*.py`` module exposes a ``bench_*()`` function returning rows
``(name, value, unit)`` or ``(name, value, unit, target)``. Targets are printed next to
the figures; this is a benchmark, not a timed test, so it never fails a build.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

MODULES = [
    ("bench_ssh", "bench_ssh"),
    ("bench_parsers", "bench_parsers"),
    ("bench_emulated", "bench_emulated"),
    ("bench_reports", "bench_reports"),
    ("bench_xdist", "bench_xdist"),
    ("bench_qemu", "bench_qemu"),
    ("bench_vdpa", "bench_vdpa"),
]


# targets of rows whose module reports none itself (the issues' figures)
TARGETS = {
    "sshhost_reused_median": "<= 5 ms",
    "speedup_median": ">= 20 x (one ssh process per command / reused SSHHost)",
    "speedup_vs_controlmaster": "printed: OpenSSH ControlMaster (the fair anchor) / SSHHost",
    "kernel_log_100k_lines_parse": "< 1 s",
    "dump_ports_500_ports_parse": "< 1 s",
}


def main(argv: list[str]) -> int:
    only = set(argv)
    print(f"{'measurement':58} {'value':>12} {'unit':8} target")
    print("-" * 100)
    for module_name, func_name in MODULES:
        if only and module_name not in only:
            continue
        try:
            module = importlib.import_module(f"benchmarks.{module_name}")
        except ModuleNotFoundError:
            continue
        started = time.monotonic()
        try:
            rows = getattr(module, func_name)()
        except Exception:
            print(f"{module_name}: FAILED")
            traceback.print_exc()
            continue
        for row in rows:
            name, value, unit = row[0], row[1], row[2]
            target = row[3] if len(row) > 3 else TARGETS.get(name, "")
            print(f"{name:58} {value:12.3f} {unit:8} {target}")
        print(f"{'  (' + module_name + ' took)':58} {time.monotonic() - started:12.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

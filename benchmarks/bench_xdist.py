"""Two emulated labs under pytest-xdist: ``-n 2`` (labs in parallel) against ``-n 0`` (one lab after the other).

Both runs use the datapath suite (``-m datapath``) on renamed copies of ``lab.toml`` and
``labs/emulated-b.toml``. The copies have their own names, namespaces and state dirs under
``/tmp/vdl-<name>``, so a default lab that is up is not disturbed, and a small traffic profile
(200 pings, 1 s iperf3). Each lab's measurements stay serial on one worker, so the speedup
comes from running the two labs side by side. It is bounded by the slower lab and by the cores.
Needs root.

    .venv/bin/python benchmarks/bench_xdist.py [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from vdpalab.emulated.relabel import relabel_lab_file  # noqa: E402

SOURCES = (ROOT / "lab.toml", ROOT / "labs" / "emulated-b.toml")

# seconds, not minutes: the plumbing is under test, not the datapath; thresholds are lenient for a busy machine
SMALL_TRAFFIC = """[traffic.ping]
count = 200
deadline_s = 10
flood = true
payload_sizes = [56]
symmetry_count = 200

[traffic.iperf3]
duration_s = 1
omit_s = 0
streams = [1]
reverse = false
udp_rate = "50M"
symmetry_udp_rate = "10M"
symmetry_duration_s = 1
timeout_s = {timeout_s}
{extra}"""

SMALL_PROFILE = SMALL_TRAFFIC.format(timeout_s=10, extra="") + """
[traffic.benchmark]
trials = 1
warmup = false
duration_s = 1
protocols = ["tcp"]
latency_count = 100
latency_interval_s = 0.002

[thresholds]
ping_loss_pct_max = 5
ping_rtt_avg_ms_max = 50
ping_rtt_max_ms_max = 1000
tcp_throughput_gbps_min = 0.01
udp_loss_pct_max = 25
"""


def small_lab_copy(source: str | Path, dest_dir: str | Path, name: str, *, kernel_min: str | None = None) -> Path:
    """A renamed copy of an emulated lab (state in ``/tmp/vdl-<name>/s``) with the small traffic profile.

    ``kernel_min`` replaces ``[kernel] min_version``. A version above the running kernel breaks
    preflight at bring-up, which gives a lab that passes ``check-lab`` but comes up BROKEN.
    """
    path = relabel_lab_file(source, dest_dir, name, state_dir=Path(f"/tmp/vdl-{name}") / "s")
    text = path.read_text()
    start, end = text.index("[traffic.ping]"), text.index("[reports]")
    text = text[:start] + SMALL_PROFILE + "\n" + text[end:]
    if kernel_min is not None:
        text = text.replace('min_version = "4.19"', f'min_version = "{kernel_min}"', 1)
        if f'min_version = "{kernel_min}"' not in text:
            raise ValueError(f"{source}: no [kernel] min_version = \"4.19\" to replace")
    path.write_text(text)
    return path


def remove_lab(path: Path, name: str) -> list[str]:
    """Whatever the run's teardown left of the copy (it should be nothing), then its state dir."""
    from vdpalab import control
    from vdpalab.config import load_lab

    left: list[str] = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    if any(line.startswith(f"vdpalab-{name}-") for line in namespaces.splitlines()):
        try:
            left = control.infra_down(load_lab(path)) or ["(infra_down removed nothing)"]
        except Exception as exc:  # reported, then the state dir goes anyway
            left = [f"infra_down failed: {type(exc).__name__}: {exc}"]
    shutil.rmtree(f"/tmp/vdl-{name}", ignore_errors=True)
    return left


def timed_run(labs: list[Path], workers: int, cwd: Path = ROOT) -> float:
    """Wall time of ``pytest -m datapath`` on ``labs`` with ``-n workers``; RuntimeError when it does not pass."""
    cmd = [sys.executable, "-m", "pytest", "-m", "datapath", *[f"--lab={p}" for p in labs], "-n", str(workers),
           "-p", "no:cacheprovider", "--no-reports", "-q"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> rc {proc.returncode}\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds


def bench_xdist(rounds: int = 1) -> list[tuple[str, float, str] | tuple[str, float, str, str]]:
    """Rows: wall time of two labs with ``-n 2``, the same with ``-n 0``, and their ratio (the medians)."""
    if os.geteuid() != 0:
        raise RuntimeError("needs root (builds emulated labs)")
    parallel: list[float] = []
    serial: list[float] = []
    for _ in range(rounds):
        work = Path(tempfile.mkdtemp(prefix="vdpalab-bench-xdist-"))
        names = [f"xb{os.getpid() % 10000}{tag}" for tag in "ab"]
        labs = [small_lab_copy(src, work, name) for src, name in zip(SOURCES, names, strict=True)]
        try:
            parallel.append(timed_run(labs, 2))
            serial.append(timed_run(labs, 0))
        finally:
            for lab, name in zip(labs, names, strict=True):
                remove_lab(lab, name)
            shutil.rmtree(work, ignore_errors=True)
    par, ser = statistics.median(parallel), statistics.median(serial)
    cores = os.cpu_count() or 1
    return [
        ("xdist: 2 emulated labs, -n 2 (datapath, small profile)", par, "s"),
        ("xdist: the same 2 labs one after the other (-n 0)", ser, "s"),
        ("xdist: speedup, one after the other / -n 2", ser / par, "x", f"> 1 ({cores} cores; at most 2)"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the median is reported (default 1)")
    args = parser.parse_args(argv)
    for row in bench_xdist(args.rounds):
        target = row[3] if len(row) > 3 else ""
        print(f"{row[0]:58} {row[1]:10.3f} {row[2]:3} {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-command cost of SSHHost's reused connection versus OpenSSH: one process per command, and the
fair anchor, OpenSSH's own connection reuse (ControlMaster: each `ssh` process is a new channel on
one master connection, as SSHHost's commands are).

Runs against a private sshd on 127.0.0.1 (vdpalab.emulated.sshd), so it needs
root and openssh-server. Usage: ``.venv/bin/python benchmarks/bench_ssh.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vdpalab.emulated.sshd import start_sshd
from vdpalab.results import percentile

REUSED_ITERATIONS = 200
# one ssh process per command costs a full handshake each time: fewer iterations keep the run short
PROCESS_ITERATIONS = 30
TARGET_MEDIAN_MS = 5.0
TARGET_RATIO = 20.0


def _timed(argv: list[str], iterations: int) -> list[float]:
    # no pipes: a ControlPersist master forked by the first client would hold them open
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(argv, check=True, **quiet)  # warm up (and start the master, if any)
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, **quiet)
        samples.append(time.perf_counter() - t0)
    return samples


def bench_ssh() -> list[tuple[str, float, str]]:
    """Return ``(metric, value, unit)`` rows: median/p95 per command for the three ways, and the ratios."""
    with start_sshd() as server:
        with server.host("bench", command_timeout=30) as host:
            for _ in range(10):  # connect and warm up
                host.check("true")
            reused = []
            for _ in range(REUSED_ITERATIONS):
                t0 = time.perf_counter()
                host.check("true")
                reused.append(time.perf_counter() - t0)
        argv = [
            "ssh",
            "-i",
            str(server.client_key),
            "-p",
            str(server.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            f"{server.user}@{server.address}",
        ]
        per_process = _timed([*argv, "true"], PROCESS_ITERATIONS)
        with tempfile.TemporaryDirectory(prefix="vdpalab-cm-") as cm_dir:
            control = ["-o", f"ControlPath={cm_dir}/cm", "-o", "ControlMaster=auto", "-o", "ControlPersist=60"]
            try:
                controlled = _timed([*argv[:-1], *control, argv[-1], "true"], REUSED_ITERATIONS)
            finally:  # the master goes with the run (by its control socket, not by name)
                subprocess.run([*argv[:-1], *control, "-O", "exit", argv[-1]], capture_output=True, check=False,
                               timeout=30)
    reused_median = statistics.median(reused) * 1000
    process_median = statistics.median(per_process) * 1000
    controlled_median = statistics.median(controlled) * 1000
    return [
        ("sshhost_reused_median", reused_median, "ms"),
        ("sshhost_reused_p95", percentile(reused, 95) * 1000, "ms"),
        ("ssh_controlmaster_median", controlled_median, "ms"),
        ("ssh_controlmaster_p95", percentile(controlled, 95) * 1000, "ms"),
        ("ssh_process_median", process_median, "ms"),
        ("ssh_process_p95", percentile(per_process, 95) * 1000, "ms"),
        ("speedup_median", process_median / reused_median, "x"),
        ("speedup_vs_controlmaster", controlled_median / reused_median, "x"),
    ]


def main() -> int:
    rows = bench_ssh()
    values = {name: value for name, value, _ in rows}
    print(
        f"per-command time for `true` ({REUSED_ITERATIONS} commands on one SSHHost connection, "
        f"{REUSED_ITERATIONS} OpenSSH clients on one ControlMaster connection, "
        f"{PROCESS_ITERATIONS} OpenSSH client processes each with its own connection)"
    )
    for name, value, unit in rows:
        print(f"  {name:24s} {value:9.2f} {unit}")
    median_ok = values["sshhost_reused_median"] <= TARGET_MEDIAN_MS
    ratio_ok = values["speedup_median"] >= TARGET_RATIO
    print(
        f"target: reused median <= {TARGET_MEDIAN_MS:g} ms  measured {values['sshhost_reused_median']:.2f} ms  "
        f"{'OK' if median_ok else 'MISSED'}"
    )
    print(
        f"target: speedup >= {TARGET_RATIO:g}x  measured {values['speedup_median']:.1f}x  "
        f"{'OK' if ratio_ok else 'MISSED'}"
    )
    return 0 if median_ok and ratio_ok else 1


if __name__ == "__main__":
    sys.exit(main())

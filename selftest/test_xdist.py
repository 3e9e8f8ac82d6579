"""pytest-xdist: one bring-up and one teardown per lab, a lab's measurements never overlap, labs run in parallel.

Each test runs the suite as a subprocess (``python -m pytest ... -n 2``) against renamed copies
of ``lab.toml`` and ``labs/emulated-b.toml``. Each copy has its own name, namespaces and state
dir under ``/tmp/vdl-<name>``, so it never collides with the default labs. The copies use a
small traffic profile. The proof comes from what the run leaves behind, not from its exit
status:

* the lab's own ``session-events.log``: exactly one ``bringup-start`` and one ``teardown-start``
  for the run id. The other worker ``attach``es. Teardown is done by the controller, after
  every worker's ``detach``;
* the run's ``metadata.json`` (each test's call phase start and duration) and ``results.csv``
  (each measurement's started/ended): within a lab, measurement intervals never overlap,
  while the two labs' intervals do;
* the ``-v`` lines ``[gwN] PASSED <test id>``: each lab's measurements ran on a single worker,
  the two labs on different workers;
* the same selection with ``-n 0``: the same test ids with the same outcomes;
* a bring-up that breaks (preflight BROKEN from a kernel minimum above the running kernel,
  or the infrastructure failing) gives the same skip reason on every worker, and nobody
  retries it;
* the machine as it was before (``machine_snapshot``; other users' labs are told apart).

The ``pytest_configure`` at the bottom is a plugin for the subprocess only
(``-p selftest.test_xdist`` with ``VDPALAB_XDIST_INFRA_FAIL`` set). A test module's hooks are
never registered in the outer run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_xdist import remove_lab, small_lab_copy

pytestmark = [pytest.mark.selftest, pytest.mark.emulated, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
INFRA_FAIL_ENV = "VDPALAB_XDIST_INFRA_FAIL"
BRINGUP_TESTS = ["tests_bringup/test_preflight.py", "tests_bringup/test_ovs.py", "tests_bringup/test_guests.py"]
DATAPATH_TESTS = ["tests_datapath/test_ping.py", "tests_datapath/test_iperf3.py"]
KEYWORDS = "bringup or (flood_ping and 56B) or udp_loss"
WORKER_LINE = re.compile(r"^\[(gw\d+)\](?: \[\s*\d+%\])? ([A-Z]+) (\S+)", re.MULTILINE)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (builds emulated labs)")


# ------------------------------------------------------------------------------------------- helpers
@dataclass
class Run:
    """One subprocess pytest run and what it left: reports, per-test workers, the labs' event logs."""

    rc: int
    output: str
    seconds: float
    pid: int
    meta: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, str]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id", ""))

    @property
    def outcomes(self) -> dict[str, str]:
        return {o["test_id"]: o["outcome"] for o in self.meta.get("outcomes", [])}

    @property
    def messages(self) -> dict[str, str]:
        return {o["test_id"]: o.get("message") or "" for o in self.meta.get("outcomes", [])}

    def calls(self, lab: str, prefix: str = "tests_datapath/") -> list[tuple[float, float, str]]:
        """(start, end, test id) of each test's final phase on ``lab``, for tests under ``prefix``, by start."""
        spans = [
            (float(o["started"]), float(o["started"]) + float(o["duration"]), o["test_id"])
            for o in self.meta.get("outcomes", [])
            if o["lab"] == lab and o["test_id"].startswith(prefix) and o.get("started") is not None
        ]
        return sorted(spans)

    def measurements(self, lab: str) -> list[tuple[float, float, str]]:
        """(started, ended, test id) of every distinct measurement interval in results.csv on ``lab``."""
        spans = {
            (_epoch(r["started"]), _epoch(r["ended"]), r["test_id"]) for r in self.results if r["lab"] == lab
        }
        return sorted(spans)

    @property
    def workers(self) -> dict[str, str]:
        """Test id -> xdist worker, from the ``-v`` lines (empty without xdist)."""
        return {m.group(3): m.group(1) for m in WORKER_LINE.finditer(self.output)}

    def explain(self) -> str:
        lines = [f"rc={self.rc} in {self.seconds:.1f} s, run {self.run_id}"]
        for o in self.meta.get("outcomes", []):
            worker = self.workers.get(o["test_id"], "-")
            lines.append(f"  {o['outcome']:<7} {worker:>4} {o['test_id']}: {(o.get('message') or '')[:200]}")
        return "\n".join(lines) + "\n--- output tail ---\n" + self.output[-4000:]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_suite(tmp: Path, labs: list[Path], *, workers: int, tag: str, tests: list[str] | None = None,
              env: dict[str, str] | None = None, plugin: bool = False, timeout: float = 240) -> Run:
    """``pytest -m "bringup or datapath" -k KEYWORDS --lab ... -n workers``; its reports go to ``tmp/reports-tag``."""
    reports = tmp / f"reports-{tag}"
    cmd = [sys.executable, "-m", "pytest", *(tests or BRINGUP_TESTS + DATAPATH_TESTS),
           "-m", "bringup or datapath", "-k", KEYWORDS, *[f"--lab={p}" for p in labs], "-n", str(workers),
           "-p", "no:cacheprovider", f"--reports-dir={reports}", f"--results-db=sqlite:///{reports}/history.sqlite",
           "-v", "-rs"]
    if plugin:
        cmd += ["-p", "selftest.test_xdist"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    run = Run(proc.returncode, output, time.monotonic() - t0, proc.pid)
    metas = list(reports.glob("*/metadata.json"))
    if len(metas) == 1:
        run.meta = json.loads(metas[0].read_text())
        with (metas[0].parent / "results.csv").open(newline="") as fh:
            run.results = list(csv.DictReader(fh))
    return run


def events(lab_path: Path, run_id: str) -> list[tuple[float, int, str]]:
    """(time, pid, what) of this run's lines in the lab's session-events.log."""
    from vdpalab.config import load_lab
    from vdpalab.session import state_dir_of

    log = state_dir_of(load_lab(lab_path)) / "session-events.log"
    found = []
    for line in log.read_text().splitlines() if log.exists() else []:
        fields = line.split()
        if len(fields) >= 4 and fields[2] == f"run={run_id}":
            found.append((float(fields[0]), int(fields[1].removeprefix("pid=")), fields[3]))
    return found


def overlaps(spans: list[tuple[float, float, str]], slack: float = 0.0) -> list[str]:
    """Pairs of intervals that overlap (more than ``slack`` seconds); [] when they follow one another."""
    found = []
    for (s1, e1, a), (s2, e2, b) in zip(spans, spans[1:], strict=False):
        if s2 < e1 - slack:
            found.append(f"{a} [{s1:.3f}, {e1:.3f}] overlaps {b} [{s2:.3f}, {e2:.3f}]")
    return found


class Machine:
    """The machine before the runs, compared after; changes provably made by other users are ignored."""

    def __init__(self, names: list[str]) -> None:
        from vdpalab.emulated.snapshot import machine_snapshot

        self.prefixes = tuple(f"vdpalab-{n}-" for n in names)
        self.markers = [f"/tmp/vdl-{n}/" for n in names]
        self.before = machine_snapshot()

    def leftovers(self) -> list[str]:
        from vdpalab.emulated.snapshot import diff_snapshots, foreign_filter, machine_snapshot

        after = machine_snapshot()
        for _ in range(20):  # sshd sessions take a moment to go
            time.sleep(0.1)
            again = machine_snapshot()
            if again == after:
                break
            after = again
        foreign = foreign_filter(self.prefixes, self.markers)
        lines = diff_snapshots(self.before, after)
        mine = [line for line in lines if not foreign(line)]
        if any(line.startswith("netns: ") and foreign(line) for line in lines):
            # another user's lab came or went meanwhile: the hugepage pool and its mounts are theirs to explain
            mine = [line for line in mine if not line.startswith(("hugepages: ", "sysctls: ~ vm.nr_hugepages"))
                    and not (line.startswith("mounts: ") and " hugetlbfs " in line
                             and not any(m in line for m in self.markers))]
        return mine


@dataclass
class Labs:
    paths: list[Path]
    names: list[str]


def _labs(tmp: Path, tag: str, sources: list[str], **kwargs: Any) -> Labs:
    names = [f"x{os.getpid() % 100000}{tag}{i}" for i in range(len(sources))]
    return Labs([small_lab_copy(ROOT / s, tmp, n, **kwargs) for s, n in zip(sources, names, strict=True)], names)


@contextmanager_free := None  # noqa: E731  (placeholder removed below)

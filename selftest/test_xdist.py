"""pytest-xdist: one bring-up and one teardown per lab, a lab's measurements never overlap, labs run in parallel.

Each test runs the suite as a subprocess (``python -m pytest ... -n 2``) against renamed copies
of ``lab.toml`` and ``labs/emulated-b.toml``. Each copy has its own name, namespaces and state
dir under ``/tmp/vdl-<name>``, so it never collides with the default labs. As with ``emu`` and
``emu-b``, one copy's name extends the other's (``x<pid>p``, ``x<pid>p-b``). The copies use a
small traffic profile. The proof comes from what the run leaves behind, not from its exit
status:

* the lab's own ``session-events.log``: exactly one ``bringup-start`` and one ``teardown-start``
  for the run id. The other worker ``attach``es. Teardown is done by the controller, after
  every worker's ``detach``;
* the run's ``metadata.json`` (each test's call phase start and duration) and ``results.csv``
  (each measurement's started/ended): within a lab, measurement intervals never overlap,
  while the two labs' intervals do. Both labs, with every test filed under its own lab, are in
  the reports and in the history store;
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
import itertools
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
from fixtures.xdist_support import lab_in_nodeid
from vdpalab.testing.machine import Machine

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
    reports: Path
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
        """(first started, last ended, test id) of each test's measurements in results.csv on ``lab``, by start."""
        spans: dict[str, tuple[float, float]] = {}
        for r in self.results:
            if r["lab"] == lab:
                start, end = _epoch(r["started"]), _epoch(r["ended"])
                old = spans.get(r["test_id"], (start, end))
                spans[r["test_id"]] = (min(old[0], start), max(old[1], end))
        return sorted((s, e, t) for t, (s, e) in spans.items())

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
    run = Run(proc.returncode, output, time.monotonic() - t0, proc.pid, reports)
    metas = [m for m in reports.glob("*/metadata.json") if not m.parent.is_symlink()]  # not reports/latest
    if len(metas) == 1:
        run.meta = json.loads(metas[0].read_text())
        with (metas[0].parent / "results.csv").open(newline="") as fh:
            run.results = list(csv.DictReader(fh))
    return run


def events(lab_path: Path, run_id: str) -> list[tuple[float, int, str]]:
    """(time, pid, what) of this run's lines in the lab's session-events.log."""
    from vdpalab.config import load_lab


    log = load_lab(lab_path).state_dir / "session-events.log"
    found = []
    for line in log.read_text().splitlines() if log.exists() else []:
        fields = line.split()
        if len(fields) >= 4 and fields[2] == f"run={run_id}":
            found.append((float(fields[0]), int(fields[1].removeprefix("pid=")), fields[3]))
    return found


def overlaps(spans: list[tuple[float, float, str]], slack: float = 0.0) -> list[str]:
    """Pairs of intervals that overlap (more than ``slack`` seconds); [] when they follow one another."""
    found = []
    for (s1, e1, a), (s2, e2, b) in itertools.pairwise(spans):
        if s2 < e1 - slack:
            found.append(f"{a} [{s1:.3f}, {e1:.3f}] overlaps {b} [{s2:.3f}, {e2:.3f}]")
    return found


@dataclass
class Labs:
    paths: list[Path]
    names: list[str]


def _labs(tmp: Path, tag: str, sources: list[str], **kwargs: Any) -> Labs:
    """Copies named like the default pair: ``x<pid><tag>`` and ``x<pid><tag>-b`` (one name extends the other)."""
    base = f"x{os.getpid() % 100000}{tag}"
    names = [base + ("-b" if i else "") for i in range(len(sources))]
    return Labs([small_lab_copy(ROOT / s, tmp, n, **kwargs) for s, n in zip(sources, names, strict=True)], names)


def _clean(labs: Labs) -> list[str]:
    left = []
    for path, name in zip(labs.paths, labs.names, strict=True):
        left += remove_lab(path, name)
    return left


@dataclass
class TwoLabs:
    labs: Labs
    parallel: Run
    serial: Run | None
    leftovers: list[str]
    removed: list[str]
    events: dict[tuple[str, str], list[tuple[float, int, str]]]  # (run id, lab name) -> the lab's log lines

    def log(self, run: Run, name: str) -> list[tuple[float, int, str]]:
        return self.events.get((run.run_id, name), [])


@pytest.fixture(scope="module")
def two_labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoLabs]:
    """lab.toml and labs/emulated-b.toml copies, run once with -n 2 and once with -n 0 (the same selection)."""
    _need_root()
    tmp = tmp_path_factory.mktemp("xdist-two")
    labs = _labs(tmp, "p", ["lab.toml", "labs/emulated-b.toml"])
    machine = Machine.of_names(*labs.names)
    serial = None
    logs = {}
    try:
        parallel = run_suite(tmp, labs.paths, workers=2, tag="n2")
        if parallel.rc == 0:
            serial = run_suite(tmp, labs.paths, workers=0, tag="n0")
        leftovers = machine.leftovers()
        for run in (parallel, serial):
            for path, name in zip(labs.paths, labs.names, strict=True):
                if run is not None:
                    logs[(run.run_id, name)] = events(path, run.run_id)
    finally:
        removed = _clean(labs)
    yield TwoLabs(labs, parallel, serial, leftovers, removed, logs)


# --------------------------------------------------------------------------------------------- tests
@pytest.mark.timeout(300)
def test_one_lab_two_workers_one_bringup_one_teardown(tmp_path: Path) -> None:
    _need_root()
    labs = _labs(tmp_path, "o", ["lab.toml"])
    machine = Machine.of_names(*labs.names)
    try:
        run = run_suite(tmp_path, labs.paths, workers=2, tag="one")
        leftovers = machine.leftovers()
        log = events(labs.paths[0], run.run_id)
    finally:
        removed = _clean(labs)
    info = run.explain() + f"\n--- session-events.log ---\n{log}"
    assert run.rc == 0 and run.run_id, info
    whats = [what for _, _, what in log]
    assert whats.count("bringup-start") == 1 and whats.count("bringup-end") == 1, info
    assert whats.count("teardown-start") == 1 and whats.count("teardown-end") == 1, info
    upper = next(pid for _, pid, what in log if what == "bringup-start")
    attached = {pid for _, pid, what in log if what == "attach"}
    assert attached and upper not in attached, f"the other worker never attached\n{info}"
    assert upper != run.pid, f"a worker, not the controller, brings the lab up\n{info}"
    assert {pid for _, pid, what in log if what.startswith("teardown")} == {run.pid}, info
    detached = {pid: t for t, pid, what in log if what == "detach"}
    assert set(detached) == attached | {upper}, f"every worker that used the lab let go\n{info}"
    teardown = next(t for t, _, what in log if what == "teardown-start")
    assert teardown > max(detached.values()), f"teardown started before the last worker finished\n{info}"
    workers = run.workers
    assert len(set(workers.values())) == 2, f"both workers ran tests\n{info}"
    group = {workers[t] for t in run.outcomes if t.startswith("tests_datapath/")}
    assert len(group) == 1, f"the lab's measurements ran on one worker: {group}\n{info}"
    assert overlaps(run.calls(labs.names[0])) == [], info
    assert leftovers == [], f"the run left: {leftovers}; the test removed {removed}\n{info}"


@pytest.mark.timeout(600)
def test_two_labs_run_in_parallel_and_each_lab_measures_one_thing_at_a_time(two_labs: TwoLabs) -> None:
    run, (a, b) = two_labs.parallel, two_labs.labs.names  # b's name extends a's, as emu-b extends emu
    info = run.explain()
    datapath = [t for t in run.outcomes if t.startswith("tests_datapath/")]
    assert run.rc == 0 and run.run_id, info
    assert sorted(run.meta["labs"]) == sorted([a, b]) and sorted(run.meta["fingerprints"]) == sorted([a, b]), info
    for name in (a, b):
        assert run.meta["fingerprints"][name]["components"].get("kernel"), f"{name}: no versions\n{info}"
    assert {r["lab"] for r in run.results} == {a, b}, f"results.csv holds both labs\n{info}"
    wrong = [(o["test_id"], o["lab"]) for o in run.meta["outcomes"] if lab_in_nodeid(o["test_id"], [a, b]) != o["lab"]]
    assert wrong == [], f"outcomes filed under the wrong lab: {wrong}"
    # ... and so does the history store
    from vdpalab.history.store import HistoryStore

    store = HistoryStore(f"sqlite:///{run.reports}/history.sqlite", create=False)
    try:
        stored = store.load_run(run.run_id)
    finally:
        store.close()
    assert sorted(stored.fingerprints) == sorted([a, b]), stored.fingerprints
    assert {r.lab for r in stored.results} == {a, b} and {o.lab for o in stored.outcomes} == {a, b}
    assert len(stored.outcomes) == len(run.outcomes), info
    for name in (a, b):
        tests = [t for t in datapath if lab_in_nodeid(t, [a, b]) == name]
        assert len(tests) == 4, f"{name}: {tests}\n{info}"
        assert all(run.outcomes[t] in ("passed", "skipped") for t in tests), info
        assert sum(run.outcomes[t] == "passed" for t in tests) == 3, info
    # the lab's own log: one bring-up and one teardown each, the teardown by the controller
    for name in (a, b):
        whats = [(pid, what) for _, pid, what in two_labs.log(run, name)]
        assert [w for _, w in whats].count("bringup-start") == 1, f"{name}: {whats}"
        assert [p for p, w in whats if w == "teardown-start"] == [run.pid], f"{name}: {whats}"
    # each lab's measurements on one worker, the two labs on two workers
    workers = run.workers
    per_lab = {name: {workers.get(t) for t in datapath if lab_in_nodeid(t, [a, b]) == name} for name in (a, b)}
    assert all(len(w) == 1 and None not in w for w in per_lab.values()), f"{per_lab}\n{info}"
    assert per_lab[a] != per_lab[b], f"both labs' measurements ran on one worker: {per_lab}\n{info}"
    # never two measurements at once on one lab: test call phases (metadata.json) and results.csv intervals
    for name in (a, b):
        assert overlaps(run.calls(name)) == [], f"{name}\n{info}"
        spans = run.measurements(name)
        assert len({t for _, _, t in spans}) == 3, f"{name}: {spans}"
        assert overlaps(spans, slack=0.002) == [], f"{name}: {spans}"  # the CSV keeps milliseconds
    # ... while the labs ran side by side
    span = {name: (run.calls(name)[0][0], max(e for _, e, _ in run.calls(name))) for name in (a, b)}
    assert span[a][0] < span[b][1] and span[b][0] < span[a][1], f"the labs did not overlap in time: {span}\n{info}"
    assert two_labs.leftovers == [], f"the runs left: {two_labs.leftovers}; removed {two_labs.removed}\n{info}"


@pytest.mark.timeout(600)
def test_without_xdist_the_same_tests_have_the_same_outcomes(two_labs: TwoLabs) -> None:
    parallel, serial = two_labs.parallel, two_labs.serial
    assert parallel.rc == 0, parallel.explain()
    assert serial is not None and serial.rc == 0, serial.explain() if serial else "no -n 0 run"
    assert serial.workers == {}, "the -n 0 run used no workers"
    assert serial.outcomes == parallel.outcomes, f"-n 2:\n{parallel.explain()}\n-n 0:\n{serial.explain()}"
    assert len(serial.outcomes) == 2 * (len(BRINGUP_TESTS) + 4), serial.explain()
    for name in two_labs.labs.names:
        whats = [what for _, _, what in two_labs.log(serial, name)]
        assert whats == ["bringup-start", "bringup-end", "teardown-start", "teardown-end"], f"{name}: {whats}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("breakage", ["preflight", "infrastructure"])
def test_a_broken_bringup_is_the_same_error_on_every_worker(tmp_path: Path, breakage: str) -> None:
    _need_root()
    env: dict[str, str] = {}
    if breakage == "preflight":  # a lab that passes check-lab but whose preflight breaks at bring-up
        labs = _labs(tmp_path, "k", ["lab.toml"], kernel_min="99.0")
    else:  # the infrastructure fails to build (injected by the plugin below, in every process of the run)
        labs = _labs(tmp_path, "i", ["lab.toml"])
        env[INFRA_FAIL_ENV] = "sshd for c77g159 never listened"
    name = labs.names[0]
    machine = Machine.of_names(*labs.names)
    try:
        run = run_suite(tmp_path, labs.paths, workers=2, tag=breakage, plugin=bool(env), env=env,
                        tests=["tests_bringup/test_ovs.py", *DATAPATH_TESTS])
        leftovers = machine.leftovers()
        log = events(labs.paths[0], run.run_id)
        record = json.loads((Path(f"/tmp/vdl-{name}") / "s" / "session.json").read_text())
    finally:
        removed = _clean(labs)
    info = run.explain() + f"\n--- session-events.log ---\n{log}"
    assert run.run_id and record["run_id"] == run.run_id, info
    whats = [what for _, _, what in log]
    assert whats.count("bringup-start") == 1 and whats.count("teardown-start") == 1, f"bring-up retried?\n{info}"
    if breakage == "preflight":
        assert not record["infra_error"], info
        cause = record["outcomes"]["preflight"]["reason"]
        assert record["outcomes"]["preflight"]["status"] == "broken" and "99.0" in cause, record
    else:
        cause = record["infra_error"]
        upper = next(pid for _, pid, what in log if what == "bringup-start")
        assert f"(pid {upper})" in cause, f"the reason comes from the one failed bring-up: {cause}\n{info}"
    # the lab tests, on both workers, all end with one and the same reason, which names the cause; only
    # the reverse UDP test skips, before any layer is asked, because the lab file turns reverse off
    reasons = {t: re.sub(r"^(Failed|Skipped): ", "", m.strip()) for t, m in run.messages.items()}
    off = {t for t in reasons if "-reverse]" in t}
    assert len(off) == 1 and all(run.outcomes[t] == "skipped" for t in off), info
    assert all(f"lab {name} has [traffic.iperf3] reverse = false" in reasons[t] for t in off), info
    workers = run.workers
    assert len(reasons) == 5 and len({workers.get(t) for t in reasons}) == 2, info
    broken = {t: r for t, r in reasons.items() if t not in off}
    assert len(set(broken.values())) == 1, f"different reasons: {broken}\n{info}"
    assert cause in next(iter(broken.values())), f"{cause!r} not in the reason\n{info}"
    assert all(o == "error" for t, o in run.outcomes.items() if t not in off), info  # a broken lab is never a skip
    assert run.rc == 1, info
    assert leftovers == [], f"the run left: {leftovers}; the test removed {removed}\n{info}"


# ----------------------------------------------------------------------------- the plugin (subprocess only)
def pytest_configure(config: pytest.Config) -> None:
    """With ``VDPALAB_XDIST_INFRA_FAIL`` set: building an emulated lab's infrastructure fails, naming the pid."""
    message = os.environ.get(INFRA_FAIL_ENV)
    if not message:
        return
    from vdpalab import control
    from vdpalab.errors import LabStateError

    def infra_up(lab: Any) -> Any:
        raise LabStateError(f"lab {lab.lab.name}: {message} (pid {os.getpid()})")

    control.infra_up = infra_up

"""The lab-grouped xdist scheduler overrides one private xdist method (``_split_scope``), because
xdist's public loadgroup marks stopped reaching the scheduler on pytest 9.2 (pytest-xdist#1386).
This module fails when an xdist release changes that method or stops calling it, so the override
is ported (or deleted, when the public path works again) instead of silently doing nothing. It also
proves that the self-tests' ``machine`` group keeps machine-wide tests apart under ``-n 2``."""

from __future__ import annotations

import inspect
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.selftest

xdist_scheduler = pytest.importorskip("xdist.scheduler")

ROOT = Path(__file__).resolve().parents[1]


def test_xdist_still_schedules_through_split_scope() -> None:
    from xdist.scheduler.loadscope import LoadScopeScheduling

    group = xdist_scheduler.LoadGroupScheduling
    assert "_split_scope" in vars(group), "xdist LoadGroupScheduling lost _split_scope: port the override"
    assert list(inspect.signature(group._split_scope).parameters) == ["self", "nodeid"]
    callers = [name for name, fn in vars(LoadScopeScheduling).items()
               if callable(fn) and "self._split_scope(nodeid)" in inspect.getsource(fn)]
    assert {"schedule", "mark_test_complete"} <= set(callers), (
        f"xdist's scheduler calls _split_scope only from {callers}: the lab groups would no longer be used"
    )
    # what our override falls back on: xdist's own '@group' suffix
    assert group._split_scope(object.__new__(group), "t.py::test_x[emu-a@b]@lab-emu") == "lab-emu"
    assert group._split_scope(object.__new__(group), "t.py::test_x[emu-a@b]") == "t.py::test_x[emu-a@b]"


def test_the_lab_scheduler_groups_by_the_workers_maps_then_by_the_lab_in_the_id() -> None:
    from fixtures.xdist_support import scheduler_class

    cls = scheduler_class()
    assert issubclass(cls, xdist_scheduler.LoadGroupScheduling)
    sched = object.__new__(cls)
    sched.lab_names = ["emu", "emu-b"]
    sched.groups = {"t.py::test_ping[emu-56B]": "lab-emu"}
    assert sched._split_scope("t.py::test_ping[emu-56B]") == "lab-emu"
    assert sched._split_scope("t.py::test_check[emu]") == "t.py::test_check[emu]"  # not a measurement: anywhere
    sched.groups = None  # a worker's map is missing: every test naming a lab joins that lab's group
    assert sched._split_scope("t.py::test_check[emu-b-x]") == "lab-emu-b"
    assert sched._split_scope("t.py::test_plain") == "t.py::test_plain"


PROBE_TESTS = '''
import json, os, time
import pytest

def _span(name):
    t0 = time.time(); time.sleep(0.8); t1 = time.time()
    with open(os.environ["PROBE_LOG"], "a") as fh:
        fh.write(json.dumps([name, os.environ.get("PYTEST_XDIST_WORKER", "-"), t0, t1]) + "\\n")

@pytest.mark.emulated
@pytest.mark.parametrize("i", range(3))
def test_builds_a_lab(i):
    _span(f"machine-lab{i}")

@pytest.mark.machine
def test_starts_a_daemon():
    _span("machine-daemon")

def test_uses_the_netns_pair(pair):
    _span("machine-pair")

@pytest.mark.parametrize("i", range(6))
def test_pure(i):
    _span(f"pure{i}")
'''
PROBE_INI = """[pytest]
markers =
    emulated: x
    qemu: x
    nested: x
    machine: x
"""


Span = tuple[str, str, float, float]


def _probe_run(tmp: Path, *, grouped: bool) -> tuple[subprocess.CompletedProcess[str], list[Span]]:
    """``pytest -n 2`` over the probe tests, with or without selftest/conftest.py's grouping hook."""
    tmp.mkdir()
    hook = "from selftest.conftest import pytest_collection_modifyitems  # noqa: F401\n" if grouped else ""
    (tmp / "conftest.py").write_text(f"import pytest\n{hook}\n@pytest.fixture\ndef pair():\n    return None\n")
    (tmp / "test_probe.py").write_text(PROBE_TESTS)
    (tmp / "pytest.ini").write_text(PROBE_INI)
    log = tmp / "spans.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-p", "fixtures.lab_options",
         "-p", "fixtures.xdist_support", "-c", str(tmp / "pytest.ini"), "--rootdir", str(tmp), str(tmp)],
        cwd=ROOT, env={**os.environ, "PROBE_LOG": str(log)}, capture_output=True, text=True, timeout=120,
    )
    spans = [tuple(json.loads(line)) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, spans  # type: ignore[return-value]


def _overlapping(spans: list[tuple[str, str, float, float]]) -> list[str]:
    ordered = sorted(spans, key=lambda s: s[2])
    return [f"{a[0]} ({a[1]}) and {b[0]} ({b[1]})" for a, b in itertools.pairwise(ordered) if b[2] < a[3]]


def test_under_n2_the_machine_wide_self_tests_run_one_at_a_time_and_the_rest_in_parallel(tmp_path: Path) -> None:
    proc, spans = _probe_run(tmp_path / "grouped", grouped=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "the tests of one xdist_group run one after the other on one worker" in proc.stdout
    machine = [s for s in spans if s[0].startswith("machine-")]
    pure = [s for s in spans if s[0].startswith("pure")]
    assert len(machine) == 5 and len(pure) == 6, spans
    assert len({s[1] for s in machine}) == 1, f"machine-wide tests on several workers: {machine}"
    assert not _overlapping(machine)
    assert len({s[1] for s in pure}) == 2, f"the pure tests did not use both workers: {pure}"
    # the check can fail: without the hook, xdist's plain load scheduling runs them side by side
    proc, spans = _probe_run(tmp_path / "plain", grouped=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _overlapping([s for s in spans if s[0].startswith("machine-")]), spans

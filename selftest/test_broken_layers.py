"""A layer that breaks makes its dependants ERROR and the run red; a failed teardown is part of the verdict.

Through the user's door: each case runs ``pytest -m datapath --lab COPY`` as a subprocess on a
private copy of the emulated lab (its own name, namespaces and state dir), broken on purpose in
its lab file, and reads the JUnit XML:

* **infrastructure**: guest c77g159's SSH address is not the namespace's loopback, so the
  emulated builder refuses to build the lab;
* **hugepages**: ``count = 5000000`` (the issue's example): the layer refuses to reserve more
  memory than the host has available;
* **ovs**: the uplink of br30-ovs is declared ``type = "dpdk"`` on an OVS without DPDK, so the
  interface has an error and verify fails;
* **guests**: guest c77g159's MAC is a multicast address, which the kernel refuses to set.

Each must exit non-zero, every datapath test that needs the layer must be an ERROR whose message
names the layer (never a skip; only the vDPA test, whose layer the emulated lab does not have,
skips), and the machine must be left as found. **A broken down**: the bridge br30-ovs is deleted
behind the suite's back just before teardown, so the ovs layer's down (``ovs-vsctl del-br``) fails:
every test passed, yet the run exits 1 and the failure is in the history's run record, the
report and the JUnit XML.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_faults import cleanup, make_lab, parse_junit

from selftest.break_down_plugin import BREAK_DOWN_ENV
from vdpalab.testing.machine import Machine

pytestmark = [pytest.mark.selftest, pytest.mark.emulated, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (builds an emulated lab)")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


BREAKS = {
    "infrastructure": ('ssh = { address = "127.0.0.1", netns = "vdpalab-{name}-c77g159"',
                       'ssh = { address = "127.0.0.2", netns = "vdpalab-{name}-c77g159"'),
    "hugepages": ("count = 32\n", "count = 5000000\n"),
    "ovs": ('uplink = { name = "ens2f0" }', 'uplink = { name = "ens2f0", type = "dpdk" }'),
    "guests": ('mac = "00:11:22:33:44:10"', 'mac = "01:11:22:33:44:10"'),
}


def _session(lab: Path, tmp: Path, env: dict[str, str] | None = None) -> tuple[int, dict, str, Path]:
    junit = tmp / f"junit-{time.monotonic_ns()}.xml"
    reports = tmp / "reports"
    cmd = [sys.executable, "-m", "pytest", "tests_datapath", "-m", "datapath", "--lab", str(lab),
           "-p", "no:cacheprovider", f"--junitxml={junit}", f"--reports-dir={reports}",
           f"--results-db=sqlite:///{tmp / 'history.sqlite'}", "-q", "-p", "selftest.break_down_plugin"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=280)
    cases = parse_junit(junit) if junit.exists() else {}
    return proc.returncode, cases, proc.stdout + proc.stderr, reports


@pytest.mark.timeout(300)
@pytest.mark.parametrize("layer", list(BREAKS))
def test_a_broken_layer_makes_its_dependants_error(tmp_path: Path, layer: str) -> None:
    _need_root()
    lab, name = make_lab(tmp_path, layer[0])
    old, new = BREAKS[layer]
    _edit(lab, old.replace("{name}", name), new.replace("{name}", name))
    machine = Machine.of_names(name)
    try:
        rc, cases, output, _ = _session(lab, tmp_path)
        leftovers = machine.leftovers([])
    finally:
        removed = cleanup(lab, name)
    info = f"rc={rc}\n" + "\n".join(f"  {c.outcome:<7} {n}: {c.message[:200]}" for n, c in cases.items())
    info += "\n--- output tail ---\n" + output[-3000:]
    assert rc == 1, info
    assert cases, info
    for test, case in cases.items():
        if "test_vdpa_evidence" in test and layer != "infrastructure":  # a broken lab has no layer outcomes
            assert case.outcome == "skipped" and "layer vdpa not available" in case.message, info
            continue
        if "-reverse" in test:  # the small traffic profile turns reverse off: the lab file says so, a skip
            reason = f"lab {name} has [traffic.iperf3] reverse = false"
            assert case.outcome == "skipped" and reason in case.message, info
            continue
        assert case.outcome == "error", f"{test} is {case.outcome}, not an error\n{info}"
        want = f"infrastructure of lab {name} broken" if layer == "infrastructure" else f"layer {layer} broken"
        assert want in case.message, f"{test}: {want!r} not in {case.message!r}\n{info}"
    assert leftovers == [], f"the run left: {leftovers}; the test removed {removed}\n{info}"


@pytest.mark.timeout(300)
def test_a_failed_teardown_is_red_and_recorded(tmp_path: Path) -> None:
    _need_root()
    lab, name = make_lab(tmp_path, "w")
    machine = Machine.of_names(name)
    try:
        rc, cases, output, reports = _session(lab, tmp_path, {BREAK_DOWN_ENV: "br30-ovs"})
        leftovers = machine.leftovers([])
    finally:
        removed = cleanup(lab, name)
    info = f"rc={rc}\n" + "\n".join(f"  {c.outcome:<7} {n}" for n, c in cases.items()) + "\n" + output[-3000:]
    assert cases and all(c.outcome in ("passed", "skipped") for c in cases.values()), info
    assert rc == 1, info  # only the teardown failed
    from vdpalab.history.store import HistoryStore

    with HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}", create=False) as store:
        run = store.load_run(store.resolve("latest"))
    (failure,) = run.teardown_failures
    assert failure.lab == name and failure.layer == "ovs" and "del-br" in failure.reason, run.layers
    latest = reports / "latest"
    junit = (latest / "junit.xml").read_text()
    assert 'name="ovs"' in junit and "teardown of ovs failed" in junit, junit[-2000:]
    html = (latest / "report.html").read_text()
    assert "del-br" in html and "teardown" in html.lower(), "the report does not show the failed teardown"
    meta = json.loads((latest / "metadata.json").read_text())
    assert meta.get("run_id") == run.run_id
    assert leftovers == [], f"the run left: {leftovers}; the test removed {removed}\n{info}"

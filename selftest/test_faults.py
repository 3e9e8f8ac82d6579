"""Faults in the middle of a datapath run fail only the affected tests, in bounded time, and teardown still restores.

Each test runs a small datapath session as a subprocess (``python -m pytest tests_datapath/...``)
against a private copy of lab.toml (its own lab name, namespaces and state dir, so it never
touches the default lab) with a reduced traffic profile, and injects one fault:

* **sshd killed**: before the first iperf3 test, every sshd process in guest b's namespace (the
  listener and the sessions the suite holds) is killed by pid;
* **guest dies**: the same moment, every process in guest b's namespace is killed and its eth0
  goes down;
* **iperf3 hangs**: the lab's ``[traffic.iperf3] binary`` is a wrapper that serves normally but,
  as a client, sleeps forever.

The JUnit XML then says which tests failed and why; the ping tests that ran before the fault
(or that do not use iperf3) must pass, the affected ones must fail with the right message within
their timeouts, and the machine must look as it did before (``machine_snapshot``; other users'
namespaces and processes on this shared machine are told apart and ignored).

The fault injector is the pytest plugin at the bottom of this module: the subprocess loads it
with ``-p selftest.test_faults`` and it acts only when ``VDPALAB_FAULT`` is set. Pytest never
registers a test module's hooks in the outer run, so they are inert there.
``test_broken_lab.py`` uses the same plugin and helpers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_xdist import SMALL_TRAFFIC
from benchmarks.bench_xdist import remove_lab as cleanup  # after the session: what its teardown left
from vdpalab.testing.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
FAULT_ENV = "VDPALAB_FAULT"
FAULT_REPORT_ENV = "VDPALAB_FAULT_REPORT"


# ------------------------------------------------------------------------------ helpers (outer run)
def make_lab(tmp: Path, tag: str, *, iperf_extra: str = "") -> tuple[Path, str]:
    """A private copy of lab.toml named ``f<pid><tag>`` with the small traffic profile; returns (path, name)."""
    from vdpalab.emulated.relabel import relabel_lab_file

    name = f"f{os.getpid() % 100000}{tag}"
    state = Path(f"/tmp/vdl-{name}")
    path = relabel_lab_file(ROOT / "lab.toml", tmp, name, state_dir=state / "s")
    text = path.read_text()
    start, end = text.index("[traffic.ping]"), text.index("[thresholds]")
    text = text[:start] + SMALL_TRAFFIC.format(timeout_s=6, extra=iperf_extra) + "\n" + text[end:]
    path.write_text(text)
    return path, name


@dataclass
class Case:
    name: str
    outcome: str  # passed, failed, error, skipped
    message: str
    seconds: float


@dataclass
class Session:
    rc: int
    cases: dict[str, Case]
    output: str
    seconds: float
    fault: dict[str, Any] = field(default_factory=dict)

    def outcome(self, pattern: str) -> dict[str, str]:
        return {n: c.outcome for n, c in self.cases.items() if re.search(pattern, n)}

    def explain(self) -> str:
        lines = [f"rc={self.rc} in {self.seconds:.1f} s"]
        lines += [f"  {c.outcome:<7} {c.seconds:5.1f}s {n}: {c.message[:300]}" for n, c in self.cases.items()]
        return "\n".join(lines) + "\n--- output tail ---\n" + self.output[-4000:]


def parse_junit(path: Path) -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (el.get("message") or "") + "\n" + (el.text or "")
                break
        cases[f"{tc.get('classname', '').split('.')[-1]}.py::{tc.get('name')}"] = Case(
            tc.get("name", ""), outcome, message, float(tc.get("time", 0)))
    return cases


def run_session(lab: Path, tests: list[str], tmp: Path, fault: dict[str, Any] | None = None,
                timeout: float = 240) -> Session:
    """Run the datapath tests on ``lab`` in a subprocess with the fault plugin; parse its JUnit XML."""
    junit = tmp / f"junit-{time.monotonic_ns()}.xml"
    report = tmp / f"fault-{time.monotonic_ns()}.json"
    env = {**os.environ, FAULT_ENV: json.dumps(fault or {}), FAULT_REPORT_ENV: str(report)}
    cmd = [sys.executable, "-m", "pytest", *tests, "--lab", str(lab), "-p", "selftest.test_faults",
           "-p", "no:cacheprovider", "--no-reports", f"--junitxml={junit}", "-q", "-o", "console_output_style=classic"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - t0
    cases = parse_junit(junit) if junit.exists() else {}
    fault_done = json.loads(report.read_text()) if report.exists() else {}
    return Session(proc.returncode, cases, proc.stdout + proc.stderr, seconds, fault_done)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (builds an emulated lab)")


PING = "tests_datapath/test_ping.py"
IPERF = "tests_datapath/test_iperf3.py"


# -------------------------------------------------------------------------------------------- tests
@pytest.mark.selftest
@pytest.mark.emulated
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["kill-sshd", "guest-dies"])
def test_dead_guest_fails_only_its_tests(tmp_path: Path, kind: str) -> None:
    _need_root()
    lab, name = make_lab(tmp_path, kind[0])
    machine = Machine.of_names(name)
    fault = {"kind": kind, "guest": "c77g159", "before": "test_iperf3.py::"}
    try:
        session = run_session(lab, [PING, IPERF], tmp_path, fault)
        leftovers = machine.leftovers(session.fault.get("inodes", []))
    finally:
        removed = cleanup(lab, name)
    info = session.explain()
    assert session.fault.get("injected"), f"the fault was never injected\n{info}"
    pings = session.outcome(r"test_flood_ping\[.*-56B-")
    assert sorted(pings.values()) == ["passed", "passed"], info
    iperf = {n: v for n, v in session.outcome(r"test_iperf3\.py::").items() if v != "skipped"}
    assert len(iperf) == 2 and all(v in ("failed", "error") for v in iperf.values()), info
    for n, case in session.cases.items():
        if n in iperf:
            assert "c77g159" in case.message and "unreachable" in case.message, info
            assert case.seconds < 30, f"{n} took {case.seconds:.1f} s\n{info}"
    assert session.rc == 1, info
    assert leftovers == [], f"teardown left: {leftovers}; the test removed {removed}\n{info}"


@pytest.mark.selftest
@pytest.mark.emulated
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hanging_iperf3_fails_only_the_iperf3_tests(tmp_path: Path) -> None:
    _need_root()
    wrapper = Path(f"/tmp/vdl-hang-{os.getpid()}.sh")
    wrapper.write_text('#!/bin/sh\n# serves normally, hangs as a client\ncase " $* " in *" -s "*) exec iperf3 "$@";; '
                       'esac\nexec sleep 600\n')
    wrapper.chmod(0o755)
    try:
        lab, name = make_lab(tmp_path, "h", iperf_extra=f'binary = "{wrapper}"')
        machine = Machine.of_names(name)
        try:
            session = run_session(lab, [PING, IPERF], tmp_path, {"kind": "none"})
            leftovers = machine.leftovers(session.fault.get("inodes", []))
        finally:
            removed = cleanup(lab, name)
        info = session.explain()
        assert sorted(session.outcome(r"test_flood_ping\[.*-56B-").values()) == ["passed", "passed"], info
        iperf = {n: c for n, c in session.cases.items() if "test_iperf3.py::" in n and c.outcome != "skipped"}
        assert len(iperf) == 2, info
        for n, case in iperf.items():
            assert case.outcome == "failed", info
            assert "killed by timeout(1)" in case.message, info
            assert case.seconds < 20, f"{n} took {case.seconds:.1f} s\n{info}"
        assert session.rc == 1, info
        assert leftovers == [], f"teardown left: {leftovers}; the test removed {removed}\n{info}"
    finally:
        wrapper.unlink(missing_ok=True)


# --------------------------------------------------------------------- the plugin (subprocess only)
_STATE: dict[str, Any] = {"injected": False}


def _fault() -> dict[str, Any]:
    try:
        return json.loads(os.environ.get(FAULT_ENV) or "{}")
    except json.JSONDecodeError:
        return {}


def _write_report(data: dict[str, Any]) -> None:
    path = os.environ.get(FAULT_REPORT_ENV)
    if path:
        Path(path).write_text(json.dumps(data))


def _lab_inodes(lab: Any) -> list[int]:
    from vdpalab.emulated.daemons import netns_inode
    from vdpalab.emulated.netns_lab import lab_layout

    return [i for i in (netns_inode(ns) for ns in lab_layout(lab).namespaces) if i is not None]


def _kill_in_netns(netns: str, only: str | None) -> list[int]:
    """Kill (SIGKILL) processes inside one of *this lab's* namespaces: everything there is the lab's."""
    from vdpalab.emulated.daemons import netns_inode, pids_in_netns

    inode = netns_inode(netns)
    killed = []
    for pid in pids_in_netns({inode} if inode else set()):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if only is None or comm == only:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def inject(kind: str, spec: dict[str, Any], lab: Any, lab_session: Any) -> dict[str, Any]:
    """Break the lab the way ``kind`` says; returns what was done (for the outer test's report)."""
    done: dict[str, Any] = {"kind": kind}
    guest = next((g for g in lab.guest if g.name == spec.get("guest")), None)
    if kind in ("kill-sshd", "guest-dies"):
        assert guest is not None and guest.ssh.netns
        done["killed"] = _kill_in_netns(guest.ssh.netns, "sshd" if kind == "kill-sshd" else None)
        if kind == "guest-dies":
            subprocess.run(["ip", "-n", guest.ssh.netns, "link", "set", guest.interface, "down"], check=False)
    elif kind == "del-flows":
        result = lab_session.hosts["host"].run(["ovs-ofctl", "del-flows", spec["bridge"]], timeout=10)
        done["rc"] = result.rc
    elif kind == "wrong-ip":
        assert guest is not None
        host = lab_session.hosts[guest.name]
        result = host.run(f"ip addr flush dev {guest.interface} && ip addr add {spec['ip']} dev {guest.interface}",
                          timeout=10)
        done["rc"] = result.rc
    return done


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    spec = _fault()
    kind = spec.get("kind")
    if not kind or _STATE["injected"]:
        return
    lab_session = getattr(item, "funcargs", {}).get("lab_session")
    lab = getattr(item, "funcargs", {}).get("lab")
    if lab_session is None or lab is None:
        return
    report: dict[str, Any] = {"inodes": _lab_inodes(lab)}
    if kind != "none" and spec.get("before", "") in item.nodeid:
        _STATE["injected"] = True
        report.update(inject(kind, spec, lab, lab_session), injected=item.nodeid)
    _write_report(report)

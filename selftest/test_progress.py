"""Progress and history go through `logging`: caplog sees each layer start and end (elapsed, outcome),
a host's command history is a log handler, the session events are log records written to
``session-events.log``, and a pytest run shows the progress on the terminal without any flag
(``-v`` adds detail, ``--log-cli-level`` takes over, ``--log-file`` gets it too)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vdpalab.bringup import BringUp
from vdpalab.config import Lab, load_lab
from vdpalab.testing.scripted import ScriptedHost, ScriptStep
from vdpalab.testing.transcript import load_transcript, scripted_host

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
FRESH = Path(__file__).parent / "data" / "scripts" / "seed-fresh"
ELAPSED = r"\d+\.\d (s|min)"


@pytest.fixture()
def seed_lab() -> Lab:
    return load_lab(ROOT / "labs" / "cx6dx-qemu.toml")


def _lines(caplog: pytest.LogCaptureFixture, logger: str, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= level]


def test_each_layer_logs_its_start_and_its_end_with_elapsed_time(
    seed_lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = {name: scripted_host(name, FRESH / f"{name}.script") for name in ("c77g153", "c77g159")}
    hosts["host"] = scripted_host("c83g155", FRESH / "host.script")
    with caplog.at_level(logging.INFO, logger="vdpalab"):
        outcomes = BringUp(seed_lab, hosts, tmp_path).up()
    lines = _lines(caplog, "vdpalab.bringup")
    assert all(o.status.value == "up" for o in outcomes.values()), outcomes
    assert len(lines) == 2 * len(outcomes), lines
    for name, (start, end) in zip(outcomes, zip(lines[::2], lines[1::2], strict=True), strict=True):
        assert start == f"lab cx6dx-qemu: layer {name}: starting"
        assert re.fullmatch(rf"lab cx6dx-qemu: layer {name}: up in {ELAPSED} \((changed|nothing to change)\)", end)
    assert lines[-1].endswith("(changed)")  # the guests were started


def test_a_broken_layer_is_an_error_record_and_its_dependants_say_why_they_did_not_run(
    seed_lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing = ScriptStep("modprobe vhost_vdpa", rc=1, stderr="modprobe: FATAL: Module vhost_vdpa not found\n")
    script = []
    for name in ("01-preflight.script", "02-hugepages.script", "03-sriov.script", "04-switchdev.script",
                 "05-vdpa.script"):
        script += load_transcript(FRESH / name)
    script = [*script[: next(i for i, s in enumerate(script) if s.expect == failing.expect)], failing]
    hosts = {"host": ScriptedHost("c83g155", script)}
    hosts.update({g: ScriptedHost(g, []) for g in ("c77g153", "c77g159")})
    with caplog.at_level(logging.INFO, logger="vdpalab"):
        BringUp(seed_lab, hosts, tmp_path).up()
    errors = _lines(caplog, "vdpalab.bringup", logging.ERROR)
    assert re.fullmatch(rf"lab cx6dx-qemu: layer vdpa: broken in {ELAPSED}: LayerError: .*modprobe vhost_vdpa.*",
                        errors[0]), errors
    assert errors[1].startswith("lab cx6dx-qemu: layer ovs: not run: layer vdpa broke first")
    assert errors[2].startswith("lab cx6dx-qemu: layer guests: not run: requires vdpa:")


def test_not_applicable_layers_log_one_line_and_down_logs_each_layer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emulated = load_lab(ROOT / "lab.toml")
    with caplog.at_level(logging.INFO, logger="vdpalab"):
        BringUp(emulated, {}, tmp_path, layers=["sriov", "switchdev"]).up()
    assert _lines(caplog, "vdpalab.bringup") == [
        f"lab {emulated.lab.name}: layer sriov: not-applicable "
        "(no SR-IOV NIC: no PF asking for VFs has a PCI address in the lab (ens2f0, ens2f1))",
        f"lab {emulated.lab.name}: layer switchdev: not-applicable (no PF in the lab has switchdev = true)",
    ]


def test_a_hosts_command_history_is_a_log_handler(caplog: pytest.LogCaptureFixture) -> None:
    host = ScriptedHost("h1", [ScriptStep("uname -r", stdout="6.1\n"), ScriptStep("false", rc=1)])
    other = ScriptedHost("h1", [ScriptStep("true")])  # the same name: its own history all the same
    with caplog.at_level(logging.DEBUG, logger="vdpalab.hosts"):
        host.run("uname -r")
        host.run("false")
        other.run("true")
    assert [(e.command, e.outcome) for e in host.history.entries()] == [("uname -r", "ok"), ("false", "failed")]
    assert [e.command for e in other.history.entries()] == ["true"]
    assert host.history in host.command_log.handlers
    records = [r for r in caplog.records if hasattr(r, "command_entry")]
    assert [r.getMessage().split(" (")[0] for r in records] == ["h1: uname -r -> 0", "h1: false -> 1", "h1: true -> 0"]
    assert {r.name for r in records} == {"vdpalab.hosts.base.h1"}


def test_command_history_needs_no_logging_configuration() -> None:
    library = logging.getLogger("vdpalab")
    saved = library.level
    library.setLevel(logging.CRITICAL)  # nobody asked for DEBUG: the host's own logger still keeps its history
    try:
        host = ScriptedHost("h2", [ScriptStep("id -u", stdout="0\n")])
        host.run("id -u")
    finally:
        library.setLevel(saved)
    assert [e.command for e in host.history.entries()] == ["id -u"]


def test_session_events_are_log_records_appended_to_the_labs_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, seed_lab: Lab
) -> None:
    from vdpalab.session import LabSession

    monkeypatch.chdir(tmp_path)  # a hardware lab keeps its state in .state/<name> under the working directory
    session = LabSession(seed_lab, run_id="r-1")
    with caplog.at_level(logging.DEBUG, logger="vdpalab.session"):
        session._event("attach")
        session._event("detach")
    assert [r.getMessage() for r in caplog.records if r.name == "vdpalab.session.cx6dx-qemu"] == ["attach", "detach"]
    lines = session.events_log.read_text().splitlines()
    assert len(lines) == 2
    for line, what in zip(lines, ("attach", "detach"), strict=True):
        assert re.fullmatch(rf"\d+\.\d{{6}} pid={os.getpid()} run=r-1 {what}", line), line


PLUGIN_TEST = textwrap.dedent(
    """
    import logging

    def test_it():
        logging.getLogger("vdpalab.bringup").info("lab x: layer ovs: starting")
        logging.getLogger("vdpalab.bringup").debug("lab x: layer ovs: detail")
        logging.getLogger("vdpalab.bringup").info("lab x: layer ovs: up in 0.1 s (changed)")
    """
)


def _pytest(tmp_path: Path, *args: str, lab: bool = True) -> str:
    (tmp_path / "test_emits.py").write_text(PLUGIN_TEST)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    lab_args = ["--lab", str(ROOT / "lab.toml")] if lab else []
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_emits.py", "-p", "fixtures.lab_options", "-p", "fixtures.progress",
         *lab_args, "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_terminal_shows_progress_by_default_and_detail_with_v(tmp_path: Path) -> None:
    out = _pytest(tmp_path)
    assert "[vdpalab] lab x: layer ovs: starting\n" in out
    assert "[vdpalab] lab x: layer ovs: up in 0.1 s (changed)\n" in out
    assert "detail" not in out
    assert "[vdpalab] lab x: layer ovs: detail\n" in _pytest(tmp_path, "-v")
    assert "[vdpalab]" not in _pytest(tmp_path, "-q")
    assert "[vdpalab]" not in _pytest(tmp_path, lab=False)  # the self-tests' scripted bring-ups stay quiet


def test_pytest_live_logging_and_log_file_get_the_same_records(tmp_path: Path) -> None:
    log_file = tmp_path / "run.log"
    out = _pytest(tmp_path, "--log-cli-level=INFO", f"--log-file={log_file}", "--log-file-level=DEBUG")
    assert "[vdpalab]" not in out  # pytest's live log shows them, once
    assert out.count("lab x: layer ovs: starting") == 1
    text = log_file.read_text()
    assert "lab x: layer ovs: starting" in text and "lab x: layer ovs: detail" in text


@pytest.mark.emulated
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_make_datapath_shows_layer_progress_without_flags(tmp_path: Path) -> None:
    """``pytest -m datapath --lab`` on a private copy of lab.toml: each layer's start and end, the teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root (builds an emulated lab)")
    from selftest.test_faults import cleanup, make_lab

    lab_path, name = make_lab(tmp_path, "p")
    log_file = tmp_path / "run.log"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "datapath", "--lab", str(lab_path), "tests_datapath/test_ping.py",
             "-k", "56B", "-p", "no:cacheprovider", "--no-reports", f"--log-file={log_file}",
             "--log-file-level=INFO"],
            cwd=ROOT, capture_output=True, text=True, timeout=280,
        )
    finally:
        left = cleanup(lab_path, name)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert left == [], f"teardown left {left}"
    progress = [line.removeprefix("[vdpalab] ") for line in proc.stdout.splitlines() if line.startswith("[vdpalab] ")]
    for layer in ("preflight", "hugepages", "ovs", "guests"):
        assert f"lab {name}: layer {layer}: starting" in progress, out[-4000:]
        assert any(re.fullmatch(rf"lab {name}: layer {layer}: up in {ELAPSED} \(.*\)", p) for p in progress), progress
    assert any(p.startswith(f"lab {name}: layer sriov: not-applicable") for p in progress), progress
    assert any(re.fullmatch(rf"lab {name}: bring-up ended in {ELAPSED}: .*", p) for p in progress), progress
    assert f"lab {name}: teardown started" in progress, progress
    assert any(re.fullmatch(rf"lab {name}: teardown done in {ELAPSED}", p) for p in progress), progress
    assert progress.index(f"lab {name}: teardown started") > progress.index(f"lab {name}: layer guests: starting")
    logged = log_file.read_text()
    assert f"lab {name}: layer ovs: starting" in logged and f"lab {name}: teardown started" in logged

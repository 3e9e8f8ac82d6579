"""Every ``vdpalab`` subcommand works through the installed console script, as a user runs it.

Each test starts ``.venv/bin/vdpalab`` (the entry point pip generated from pyproject.toml) in a
subprocess and checks its exit status and output: 0 with the answer on stdout; 2 with exactly one
line ``vdpalab[ CMD]: message`` on stderr and never a traceback; 1 where a command's answer is "no"
(``lab status`` of a lab that is down, ``trend`` with a regression). ``lab up``/``down`` themselves
need root and the lab lock and are tested in test_emulated_lab.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_parsers_errors import CASES, DATA

from vdpalab.history import HistoryStore
from vdpalab.parsers import PARSERS
from vdpalab.testing.synthetic import synthetic_runs

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
VDPALAB = Path(sys.executable).parent / "vdpalab"


def vdpalab(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert VDPALAB.exists(), f"the console script is not installed next to {sys.executable} (pip install -e .)"
    return subprocess.run([str(VDPALAB), *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd)


def one_error_line(p: subprocess.CompletedProcess[str], prefix: str) -> str:
    """Exit 2, nothing on stdout, one stderr line starting with ``prefix``, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(prefix), p.stderr
    return p.stderr.strip()


# ------------------------------------------------------------------------------------ the command
def test_no_command_prints_help_and_exits_2() -> None:
    p = vdpalab()
    assert p.returncode == 2 and "usage: vdpalab" in p.stdout
    for name in ("check-lab", "parse", "lab", "plan", "report", "compare", "trend"):
        assert f"    {name}" in p.stdout


def test_version() -> None:
    from vdpalab import __version__

    p = vdpalab("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"vdpalab {__version__}"


def test_unknown_command_is_argparses_usage_error() -> None:
    p = vdpalab("frobnicate")
    assert p.returncode == 2 and "invalid choice: 'frobnicate'" in p.stderr


# ------------------------------------------------------------------------------------------ parse
@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_parse_every_kind_from_a_file(kind: str) -> None:
    path = DATA / CASES[kind][0]
    p = vdpalab("parse", kind, str(path))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc == PARSERS[kind].to_json(PARSERS[kind].parse(path.read_text(encoding="utf-8")))
    assert p.stdout.startswith(("{\n  ", "[\n  "))  # indent 2


def test_parse_reads_stdin() -> None:
    p = vdpalab("parse", "ping", stdin=(DATA / "seed/ping-f-c77g153-to-c77g159.txt").read_text())
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rtt_avg_ms"] == 0.111


def test_parse_of_text_that_is_no_such_output_exits_2_with_one_line() -> None:
    msg = one_error_line(vdpalab("parse", "dump-ports", stdin="hello world\n"), "vdpalab parse: dump-ports: ")
    assert "line 1" in msg


def test_parse_of_a_missing_file() -> None:
    msg = one_error_line(vdpalab("parse", "meminfo", "/nonexistent/meminfo"), "vdpalab parse: cannot read ")
    assert "/nonexistent/meminfo" in msg


def test_parse_unknown_kind_lists_the_kinds() -> None:
    p = vdpalab("parse", "bogus")
    assert p.returncode == 2 and "invalid choice: 'bogus'" in p.stderr and "dump-ports" in p.stderr


# -------------------------------------------------------------------------------------- check-lab
def test_check_lab_ok() -> None:
    p = vdpalab("check-lab", "lab.toml", "labs/cx6dx-qemu.toml")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("lab.toml: ok: lab 'emu' (emulated), 2 PF")
    assert p.stdout.splitlines()[1].startswith("labs/cx6dx-qemu.toml: ok: lab 'cx6dx-qemu' (hardware)")


def test_check_lab_bad_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[lab\n")
    p = vdpalab("check-lab", str(bad), "/nonexistent.toml", "lab.toml")
    assert p.returncode == 2 and "Traceback" not in p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"{bad}: ") and "TOML" in lines[0]
    assert lines[1] == "/nonexistent.toml: file not found"
    assert lines[2].startswith("lab.toml: ok:")


# ------------------------------------------------------------------------------------------- plan
def test_plan_offline_lists_the_layers_commands() -> None:
    p = vdpalab("plan", "--lab", "labs/cx6dx-qemu.toml", "--offline")
    assert p.returncode == 0, p.stderr
    assert "# bring-up plan (fresh host, offline): lab 'cx6dx-qemu'" in p.stdout
    assert "devlink dev eswitch set pci/0000:07:00.0 mode switchdev" in p.stdout


def test_plan_json_and_a_closed_pipe() -> None:
    p = vdpalab("plan", "--lab", "lab.toml", "--offline", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)
    head = subprocess.run(f"{VDPALAB} plan --lab labs/cx6dx-qemu.toml --offline | head -n 1; "
                          "echo rc=${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert head.stdout.splitlines()[-1] == "rc=0" and "Traceback" not in head.stderr, head.stderr


def test_plan_of_a_bad_lab_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "lab.toml").read_text().replace('kind = "emulated"', 'kind = "virtual"', 1))
    msg = one_error_line(vdpalab("plan", "--lab", str(bad), "--offline"), f"vdpalab: {bad}: ")
    assert msg.endswith("lab.kind: 'virtual' is not allowed: input should be 'hardware' or 'emulated'")


def test_plan_of_a_lab_with_three_problems_gives_three_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    p = vdpalab("plan", "--lab", str(bad), "--offline")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [f"vdpalab: {bad}: lab: required key is missing",
                                     f"vdpalab: {bad}: host: required key is missing",
                                     f"vdpalab: {bad}: nonsense: unknown key (not part of the lab schema; "
                                     "check the spelling)"]


def test_plan_against_a_host_that_drops_every_connection_is_one_line(tmp_path: Path) -> None:
    """A port that accepts and closes each connection (a guest still booting behind QEMU's port forward): one line
    naming the host, the reads and the reason, not the batch's shell text; paramiko's handshake tracebacks stay
    off the terminal."""
    stop = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.1)
        port = server.getsockname()[1]

        def drop_connections() -> None:
            while not stop.is_set():
                try:
                    server.accept()[0].close()
                except TimeoutError:
                    continue

        dropper = threading.Thread(target=drop_connections, daemon=True)
        dropper.start()
        text = (ROOT / "labs" / "cx6dx-qemu.toml").read_text()
        lab = tmp_path / "lab.toml"
        lab.write_text(text.replace('address = "c83g155"', 'address = "127.0.0.1"', 1)
                       .replace("\nport = 22\n", f"\nport = {port}\n", 1)
                       .replace("connect_timeout_s = 10", "connect_timeout_s = 2", 1))  # fmt: skip
        assert f"port = {port}" in lab.read_text() and 'address = "127.0.0.1"' in lab.read_text()
        try:
            p = vdpalab("plan", "--lab", str(lab), "--layer", "preflight")
        finally:
            stop.set()
            dropper.join()
    msg = one_error_line(p, "vdpalab: c83g155: unreachable while running '")
    assert "batched commands: uname -r; cat /proc/cmdline;" in msg and "@@" not in msg, msg
    assert f"127.0.0.1:{port} within 2 s" in msg, msg
    assert "Error reading SSH protocol banner" in msg or "Connection reset" in msg, msg


# -------------------------------------------------------------------------------------------- lab
def test_lab_without_action_prints_its_help() -> None:
    p = vdpalab("lab")
    assert p.returncode == 2 and "status" in p.stdout and "down" in p.stdout


def test_lab_refuses_a_hardware_lab_in_one_line() -> None:
    msg = one_error_line(vdpalab("lab", "status", "--lab", "labs/cx6dx-qemu.toml"), "vdpalab: ")
    assert msg.endswith("is a hardware lab; `vdpalab lab` drives emulated labs")


def test_lab_status_of_a_lab_that_is_not_up_exits_1(tmp_path: Path) -> None:
    from vdpalab.emulated.relabel import relabel_lab_file

    lab = relabel_lab_file(ROOT / "lab.toml", tmp_path, "clist", state_dir=tmp_path / "s")
    p = vdpalab("lab", "status", "--lab", str(lab), "--json")
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["up"] is False


# ------------------------------------------------------------------------ report, compare, trend
@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("cli") / "history.sqlite"
    with HistoryStore(f"sqlite:///{db}") as store:
        for run in synthetic_runs(12, 2):
            store.import_run(run)
    return db


@pytest.mark.parametrize("argv", [["report", "latest"], ["compare", "latest~1", "latest"], ["trend"]])
def test_history_commands_without_a_history_are_one_line(argv: list[str], tmp_path: Path) -> None:
    msg = one_error_line(vdpalab(*argv, "--db", str(tmp_path / "none.sqlite")), "vdpalab: ")
    assert msg == f"vdpalab: no history store at {tmp_path / 'none.sqlite'} (no run has been recorded there yet)"


def test_report_from_the_history(history: Path, tmp_path: Path) -> None:
    p = vdpalab("report", "latest", "--db", str(history), "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    (run_dir,) = [d for d in tmp_path.iterdir() if d.is_dir() and not d.is_symlink()]
    assert {"report.html", "results.csv", "junit.xml", "metadata.json"} <= {f.name for f in run_dir.iterdir()}


def test_compare_two_runs(history: Path, tmp_path: Path) -> None:
    p = vdpalab("compare", "latest~1", "latest", "--db", str(history), "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "Δ" in p.stdout


def test_compare_unknown_run_is_one_line(history: Path) -> None:
    msg = one_error_line(vdpalab("compare", "nosuchrun", "latest", "--db", str(history)), "vdpalab: ")
    assert "nosuchrun" in msg


def test_trend_over_the_history(history: Path, tmp_path: Path) -> None:
    p = vdpalab("trend", "--db", str(history), "--out", str(tmp_path), "--charts", "none", "--workers", "1")
    assert p.returncode in (0, 1), p.stderr
    assert (tmp_path / "trend.csv").exists()


def test_trend_bad_since_is_one_line(history: Path) -> None:
    msg = one_error_line(vdpalab("trend", "--db", str(history), "--since", "yesterday-ish"), "vdpalab trend: ")
    assert "yesterday-ish" in msg

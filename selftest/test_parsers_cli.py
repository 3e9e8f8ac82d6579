"""``vdpalab parse KIND [FILE]`` in-process through the main CLI's parser and the handler it dispatches to
(test_cli.py runs the installed console script itself)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from vdpalab.cli import build_parser
from vdpalab.commands import parse as parse_cmd
from vdpalab.parsers import PARSERS

pytestmark = pytest.mark.selftest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    args = build_parser("parse").parse_args(["parse", *argv])
    assert args.handler is parse_cmd.run  # the key the CLI dispatches on
    out, err = io.StringIO(), io.StringIO()
    rc = args.handler(args, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def test_dump_ports_file_to_json() -> None:
    rc, out, err = run(["dump-ports", str(DATA / "seed/ovs-ofctl-of14-dump-ports-br30-ovs.txt")])
    assert rc == 0 and err == ""
    doc = json.loads(out)
    assert out.startswith('{\n  "ports"')  # indent 2
    port = doc["ports"]["ens2f0"]
    assert set(port) == {"rx_packets", "rx_bytes", "rx_dropped", "rx_errors", "rx_frame", "rx_over", "rx_crc",
                         "tx_packets", "tx_bytes", "tx_dropped", "tx_errors", "tx_collisions", "duration_s", "custom"}
    assert port["rx_packets"] == 85847 and port["rx_frame"] is None
    assert doc["ports"]["ens2f0_0"]["tx_packets"] == 85847


def test_stdin_when_no_file() -> None:
    rc, out, _ = run(["ping"], stdin=(DATA / "seed/ping-f-c77g153-to-c77g159.txt").read_text())
    assert rc == 0 and json.loads(out)["rtt_avg_ms"] == 0.111


def test_bad_input_exits_2_with_one_line() -> None:
    path = DATA / "recorded/02_ovs_vsctl/insights-get-other-config-permission-denied.txt"
    rc, out, err = run(["other-config", str(path)])
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("vdpalab parse: other-config: ")
    assert "at line 1" in err and "Traceback" not in err


def test_missing_file_exits_2() -> None:
    rc, _, err = run(["meminfo", "/nonexistent/meminfo"])
    assert rc == 2 and err.startswith("vdpalab parse: cannot read /nonexistent/meminfo")


@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_every_kind_is_offered(kind: str) -> None:
    rc, _, err = run([kind], stdin="")
    assert rc == (0 if kind == "dump-flows" else 2)
    assert rc == 0 or err.startswith(f"vdpalab parse: {kind}: ")

"""The tcpreplay summary parser on real outputs (this machine's tcpreplay 4.4.3 and public 4.x runs, see
selftest/data/tcpreplay/README.md): sent counts come from the device's successful count, lines it does not
know are kept with their numbers, and a run without its summary is an error, never zero packets."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdpalab.errors import ParseError
from vdpalab.parsers.tcpreplay import parse_tcpreplay, parse_tcpreplay_version

pytestmark = pytest.mark.selftest

DATA = Path(__file__).parent / "data" / "tcpreplay"


def text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_local_paced_run_with_its_warning() -> None:
    s = parse_tcpreplay(text("local-lo-4.4.3-pps.txt"))
    assert (s.actual_packets, s.actual_bytes, s.successful, s.failed, s.device) == (100000, 6000000, 100000, 0, "lo")
    assert s.sent == 100000 and s.flows == 1 and s.seconds == pytest.approx(1.0, abs=0.05)
    assert s.rated_pps is not None and s.rated_pps == pytest.approx(100000, rel=0.02)
    kept = [line for _, line in s.unparsed]
    assert any("Unsupported physical layer type" in line for line in kept)
    assert any("File Cache is enabled" in line for line in kept)
    assert all(n >= 1 for n, _ in s.unparsed)


def test_local_topspeed_calibration_run() -> None:
    s = parse_tcpreplay(text("local-lo-4.4.3-topspeed.txt"))
    assert s.successful == s.actual_packets > 10000
    assert s.achieved_pps == pytest.approx(s.sent / s.seconds)
    assert 0.9 <= s.seconds <= 1.1  # stopped by --duration=1


def test_faq_output_with_attempted_and_trailing_period() -> None:
    s = parse_tcpreplay(text("faq-4x-mbps-attempted.txt"))
    assert (s.actual_packets, s.seconds, s.attempted, s.successful) == (71305000, 40.09, 71305000, 71305000)
    assert (s.flows, s.rated_pps, s.device) == (6045000, 1740734.40, "eth7")


def test_faq_netmap_single_space_counters_and_driver_lines_kept() -> None:
    s = parse_tcpreplay(text("faq-4x-netmap.txt"))
    assert (s.successful, s.failed, s.retried_enobufs, s.seconds) == (7130500, 0, 0, 3.08)
    assert [n for n, line in s.unparsed if "netmap" in line or "normal mode" in line] == [1, 13]


def test_interrupted_run_counts_what_the_device_sent() -> None:
    s = parse_tcpreplay(text("notes-interrupted-4x.txt"))
    assert (s.actual_packets, s.successful, s.sent) == (730, 729, 729)
    assert [line for _, line in s.unparsed] == ["^C User interrupt...", "sendpacket_abort"]


def test_enobufs_retries() -> None:
    s = parse_tcpreplay(text("notes-topspeed-enobufs.txt"))
    assert (s.retried_enobufs, s.successful, s.flows) == (1664125, 805892, 41680)


def test_version() -> None:
    assert parse_tcpreplay_version(text("local-version-4.4.3.txt")) == "4.4.3"
    with pytest.raises(ParseError):
        parse_tcpreplay_version("tcpreplay: command not found\n")


@pytest.mark.parametrize("cut", ["", "File Cache is enabled\n", "Statistics for network device: lo\n"])
def test_a_run_without_its_summary_is_an_error(cut: str) -> None:
    with pytest.raises(ParseError):
        parse_tcpreplay(cut)


def test_two_summaries_are_an_error() -> None:
    one = text("notes-topspeed-enobufs.txt")
    with pytest.raises(ParseError, match="two 'Actual:'"):
        parse_tcpreplay(one + one)

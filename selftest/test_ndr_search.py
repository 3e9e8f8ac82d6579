"""The NDR/PDR search plumbing: MLRsearch driven through ``TrialMeasurer`` finds a simulated datapath's
capacity within the lab file's width, keeps every trial, refuses to call the generator's limit the
datapath's throughput, counts packets a slow generator could not send as loss, and the tcpreplay measurer
issues the right commands and takes sent/received from the right places (scripted host, real outputs)."""

from __future__ import annotations

import base64
import io
import re
import tomllib
from pathlib import Path

import pytest

from vdpalab.config import NDR_DEFAULTS, Lab, load_lab, parse_lab
from vdpalab.errors import LabConfigError
from vdpalab.testing.fake_generator import FakeMeasurer
from vdpalab.testing.scripted import ScriptedHost, ScriptStep
from vdpalab.traffic.ndr import (
    GeneratorError,
    TcpreplayMeasurer,
    Trial,
    build_pcap,
    frame_mix,
    judge_goal,
    make_measurer,
    run_search,
    summary_line,
    trials_table,
)

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).parent.parent
TCPREPLAY = Path(__file__).parent / "data" / "tcpreplay"


@pytest.fixture(scope="module")
def lab() -> Lab:
    return load_lab(ROOT / "lab.toml")


def with_ndr(lab_file: str, **ndr: object) -> Lab:
    data = tomllib.loads((ROOT / lab_file).read_text())
    data.setdefault("traffic", {})["ndr"] = {**data.get("traffic", {}).get("ndr", {}), **ndr}
    return parse_lab(data, display=lab_file)


# --------------------------------------------------------------------------- settings


def test_defaults_follow_the_declared_lab_kind() -> None:
    emulated = with_ndr("lab.toml").traffic.ndr
    hardware = load_lab(ROOT / "labs" / "cx6dx-qemu.toml").traffic.ndr
    assert (emulated.relative_width, emulated.duration_sum_s, emulated.time_budget_s) == (0.02, 3.0, 120.0)
    assert (hardware.relative_width, hardware.duration_sum_s) == (0.005, 21.0)  # CSIT's
    assert emulated.trial_duration_s == hardware.trial_duration_s == 1.0
    assert NDR_DEFAULTS["emulated"]["relative_width"] == 0.02


def test_the_lab_file_overrides_a_default() -> None:
    ndr = with_ndr("labs/cx6dx-qemu.toml", relative_width=0.01, frame_sizes=[64, "imix"]).traffic.ndr
    assert ndr.relative_width == 0.01 and ndr.duration_sum_s == 21.0 and ndr.frame_sizes == [64, "imix"]


@pytest.mark.parametrize(
    ("ndr", "message"),
    [
        ({"relative_width": 1.5}, "traffic.ndr.relative_width: input should be less than 1 (got 1.5)"),
        ({"frame_sizes": [60]}, 'traffic.ndr.frame_sizes[0]: 60 is not a frame size (64-9018 bytes including the FCS, '
                                'or "imix")'),
        ({"directions": ["both"]}, "traffic.ndr.directions[0]: 'both' is not allowed"),
        ({"duration_sum_s": 0.5}, "traffic.ndr: duration_sum_s (0.5) is shorter than trial_duration_s (1)"),
        ({"max_load_pps": 500}, "traffic.ndr: max_load_pps (500) is not above min_load_pps (1000)"),
        ({"goals": ["pdr", "pdr"]}, "traffic.ndr: goals lists a value twice"),
        ({"generator": {"kind": "pktgen"}}, "traffic.ndr.generator"),
        ({"trial_secs": 1}, "traffic.ndr.trial_secs: unknown key"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(ndr: dict[str, object], message: str) -> None:
    with pytest.raises(LabConfigError) as err:
        with_ndr("lab.toml", **ndr)
    text = str(err.value)
    assert text.startswith(f"lab.toml: {message}") and "\n" not in text


# --------------------------------------------------------------------------- the search on a simulated datapath


def test_finds_the_capacity_within_the_width(lab: Lab) -> None:
    m = FakeMeasurer(generator_pps=300_000, capacity_pps=100_000)
    out = run_search(m, lab.traffic.ndr, clock=lambda: m.clock[0])
    assert out.error is None and out.max_load_pps == pytest.approx(270_000)
    ndr = out.goals["ndr"]
    assert ndr.measured and not ndr.tester_limited
    assert ndr.lower_pps is not None and ndr.upper_pps is not None
    assert ndr.lower_pps <= 100_000 < ndr.upper_pps
    assert (ndr.upper_pps - ndr.lower_pps) / ndr.upper_pps <= lab.traffic.ndr.relative_width
    assert [t.kind for t in out.trials[:2]] == ["calibration", "warmup"]
    assert all(t.kind == "search" for t in out.trials[2:]) and len(out.search_trials) >= 3
    assert "NDR 9" in summary_line(out) and "trials in" in summary_line(out)


def test_pdr_above_ndr_when_a_little_loss_starts_early(lab: Lab) -> None:
    m = FakeMeasurer(generator_pps=300_000, capacity_pps=100_000, loss_at=(60_000, 0.001))
    out = run_search(m, lab.traffic.ndr, clock=lambda: m.clock[0])
    ndr, pdr = out.goals["ndr"], out.goals["pdr"]
    assert ndr.upper_pps is not None and pdr.lower_pps is not None
    assert ndr.upper_pps <= 61_300 and pdr.lower_pps >= 95_000  # 0.1 % loss is under PDR's 0.5 %


def test_no_upper_bound_is_tester_limited_not_throughput(lab: Lab) -> None:
    m = FakeMeasurer(generator_pps=200_000, capacity_pps=10**9)
    out = run_search(m, lab.traffic.ndr, clock=lambda: m.clock[0])
    for goal in out.goals.values():
        assert goal.tester_limited and not goal.measured and goal.upper_pps is None
        assert goal.lower_pps == pytest.approx(180_000) and "tester-limited" in goal.reason
    assert "tester-limited" in summary_line(out)


def test_unsent_packets_count_as_loss() -> None:
    slow = Trial(kind="search", load_pps=100_000, duration_s=1.0, intended=100_000, sent=100_000, received=100_000,
                 offered_s=1.25, wall_s=1.3, held_rate=False, started=0.0)
    assert slow.offered == 80_000 and slow.unsent == 20_000 and slow.loss_ratio == pytest.approx(0.2)
    result = slow.to_result()
    assert result.loss_ratio == pytest.approx(0.2) and result.intended_count == 100_000
    fine = Trial(kind="search", load_pps=100_000, duration_s=1.0, intended=100_000, sent=100_000, received=100_003,
                 offered_s=1.0, wall_s=1.1, held_rate=True, started=0.0)
    assert fine.forwarded == 100_000 and fine.loss_ratio == 0.0  # noise above what was sent is capped


def test_an_upper_bound_from_a_slow_generator_is_tester_limited() -> None:
    slow = Trial(kind="search", load_pps=150_000, duration_s=1.0, intended=150_000, sent=150_000, received=150_000,
                 offered_s=1.2, wall_s=1.3, held_rate=False, started=0.0)
    goal = judge_goal("ndr", 0.0, 140_000.0, 150_000.0, 140_000.0, 200_000.0, [slow])
    assert goal.tester_limited and "could not hold 150000 pps" in goal.reason
    lossy = Trial(kind="search", load_pps=150_000, duration_s=1.0, intended=150_000, sent=150_000, received=149_000,
                  offered_s=1.0, wall_s=1.1, held_rate=True, started=0.0)
    assert judge_goal("ndr", 0.0, 140_000.0, 150_000.0, 140_000.0, 200_000.0, [lossy]).measured


def test_a_generator_slower_than_its_calibration_never_yields_a_datapath_number(lab: Lab) -> None:
    m = FakeMeasurer(generator_pps=120_000, capacity_pps=10**9)
    m.calibrate = lambda d: Trial(kind="calibration", load_pps=300_000, duration_s=d, intended=300_000,  # type: ignore[method-assign]
                                  sent=300_000, received=300_000, offered_s=d, wall_s=d, held_rate=True, started=0.0)
    out = run_search(m, lab.traffic.ndr, clock=lambda: m.clock[0])
    assert out.error is None
    for goal in out.goals.values():
        assert goal.tester_limited and not goal.measured, goal


def test_loss_at_min_load_is_no_lower_bound(lab: Lab) -> None:
    m = FakeMeasurer(generator_pps=300_000, capacity_pps=100_000, loss_at=(0, 0.5))
    out = run_search(m, lab.traffic.ndr, clock=lambda: m.clock[0])
    assert out.goals["ndr"].lower_pps is None and "no lower bound" in out.goals["ndr"].reason


def test_a_generator_slower_than_min_load_is_an_error(lab: Lab) -> None:
    m = FakeMeasurer(generator_pps=500, capacity_pps=10**6)
    out = run_search(m, lab.traffic.ndr)
    assert out.error is not None and "min_load_pps" in out.error and out.goals == {}


def test_trials_table_has_every_trial(lab: Lab) -> None:
    m = FakeMeasurer(generator_pps=300_000, capacity_pps=100_000)
    out = run_search(m, lab.traffic.ndr, clock=lambda: m.clock[0])
    lines = trials_table(out.trials).splitlines()
    assert len(lines) == len(out.trials) + 1 and "calibration" in lines[1] and "warmup" in lines[2]
    assert all(set(t.row()) >= {"load_pps", "duration_s", "sent", "received", "lost", "loss_ratio"} for t in out.trials)


# --------------------------------------------------------------------------- frames


def test_frames_have_the_asked_sizes_and_addresses(lab: Lab) -> None:
    from scapy.utils import rdpcap

    a, b = lab.guest[0], lab.guest[1]
    for size in (64, 1400, "imix"):
        pcap = build_pcap(a, b, size, repeat=2)
        frames = rdpcap(io.BytesIO(pcap))
        assert [len(f) + 4 for f in frames] == frame_mix(size) * 2
        assert {(f.src, f.dst, f["IP"].src, f["IP"].dst, f["UDP"].dport) for f in frames} == {
            (a.mac, b.mac, a.address, b.address, 9)
        }
    assert frame_mix("imix").count(64) == 7 and frame_mix("imix").count(570) == 4 and frame_mix("imix")[-1] == 1518


# --------------------------------------------------------------------------- tcpreplay over a scripted host


def _measurer(lab: Lab, sender: ScriptedHost, receiver: ScriptedHost) -> TcpreplayMeasurer:
    m = make_measurer(lab.traffic.ndr, sender, receiver, lab.guest[0], lab.guest[1], 64)
    assert isinstance(m, TcpreplayMeasurer)
    m.sleep = lambda s: None
    return m


def test_tcpreplay_measurer_commands_and_counts(lab: Lab) -> None:
    version = (TCPREPLAY / "local-version-4.4.3.txt").read_text()
    paced = (TCPREPLAY / "local-lo-4.4.3-pps.txt").read_text()
    top = (TCPREPLAY / "local-lo-4.4.3-topspeed.txt").read_text()
    sender = ScriptedHost("c77g153", [
        ScriptStep("command -v tcpreplay", stdout="/usr/bin/tcpreplay\n"),
        ScriptStep("tcpreplay --version", stdout=version),
        ScriptStep(re.compile(r"mktemp -d /tmp/vdpalab-ndr\.XXXXXX"), stdout="/tmp/vdpalab-ndr.abc\n"),
        ScriptStep("base64 -d > /tmp/vdpalab-ndr.abc/frames-64.pcap"),
        ScriptStep(re.compile(r"tcpreplay -i eth0 --topspeed --loop=0 --limit=2147483647 --duration=1 "
                              r"--preload-pcap /tmp/vdpalab-ndr.abc/frames-64.pcap"), stdout=top),
        ScriptStep("tcpreplay -i eth0 --pps=100000.00 --loop=0 --limit=100000 --duration=3 "
                   "--preload-pcap /tmp/vdpalab-ndr.abc/frames-64.pcap", stdout=paced),
        ScriptStep("rm -rf -- /tmp/vdpalab-ndr.abc"),
    ])
    receiver = ScriptedHost("c77g159", [
        ScriptStep("cat /sys/class/net/eth0/statistics/rx_packets", stdout="1000\n"),
        ScriptStep("cat /sys/class/net/eth0/statistics/rx_packets", stdout="901000\n"),
        ScriptStep("cat /sys/class/net/eth0/statistics/rx_packets", stdout="901000\n"),
        ScriptStep("cat /sys/class/net/eth0/statistics/rx_packets", stdout="1000990\n"),
    ])
    m = _measurer(lab, sender, receiver)
    m.setup()
    assert m.generator_version() == "4.4.3"
    calibration = m.calibrate(1.0)
    assert calibration.kind == "calibration" and calibration.received == 900_000
    assert calibration.achieved_pps > 10_000
    trial = m.trial(1.0, 100_000.0, "search")
    got = (trial.intended, trial.sent, trial.received, trial.lost, trial.held_rate)
    assert got == (100_000, 100_000, 99_990, 10, True)
    assert trial.loss_ratio == pytest.approx(1e-4)
    m.close()
    sender.assert_done()
    receiver.assert_done()


def test_uploaded_frames_are_the_pcap(lab: Lab) -> None:
    seen: dict[str, str] = {}

    class Recorder(ScriptedHost):
        def _run(self, command: str, timeout: float, stdin: str | None):  # type: ignore[no-untyped-def]
            if stdin is not None:
                seen[command] = stdin
            return super()._run(command, timeout, stdin)

    sender = Recorder("c77g153", [
        ScriptStep("command -v tcpreplay", stdout="/usr/bin/tcpreplay\n"),
        ScriptStep("tcpreplay --version", rc=0, stdout="garbage\n"),
        ScriptStep(re.compile(r"mktemp .*"), stdout="/tmp/vdpalab-ndr.x\n"),
        ScriptStep("base64 -d > /tmp/vdpalab-ndr.x/frames-64.pcap"),
    ])
    m = _measurer(lab, sender, ScriptedHost("c77g159", []))
    m.setup()
    assert m.generator_version() is None  # an unreadable version is unknown, not invented
    pcap = base64.b64decode(seen["base64 -d > /tmp/vdpalab-ndr.x/frames-64.pcap"])
    assert pcap == build_pcap(lab.guest[0], lab.guest[1], 64)


def test_missing_tcpreplay_or_a_failed_run_is_a_generator_error(lab: Lab) -> None:
    sender = ScriptedHost("c77g153", [ScriptStep("command -v tcpreplay", rc=1)])
    with pytest.raises(GeneratorError, match="not installed on the sending guest"):
        _measurer(lab, sender, ScriptedHost("c77g159", [])).setup()
    m = _measurer(lab, ScriptedHost("c77g153", [
        ScriptStep(re.compile(r"tcpreplay .*"), rc=255, stderr="tcpreplay error:  Unable to open interface eth0\n"),
    ]), ScriptedHost("c77g159", [ScriptStep(re.compile(r"cat .*"), stdout="5\n")] * 2))
    m.pcap_path = "/tmp/x.pcap"
    with pytest.raises(GeneratorError, match="rc=255: tcpreplay error:  Unable to open interface eth0"):
        m.trial(1.0, 1000.0, "search")


def test_a_slow_tcpreplay_run_is_reported_as_not_holding_the_rate(lab: Lab) -> None:
    slow = (TCPREPLAY / "faq-4x-mbps-attempted.txt").read_text()  # 71305000 packets in 40.09 s
    m = _measurer(lab, ScriptedHost("c77g153", [ScriptStep(re.compile(r"tcpreplay .*"), stdout=slow)]),
                  ScriptedHost("c77g159", [ScriptStep(re.compile(r"cat .*"), stdout="0\n"),
                                           ScriptStep(re.compile(r"cat .*"), stdout="71305000\n")]))
    m.pcap_path = "/tmp/x.pcap"
    trial = m.trial(20.0, 71305000 / 20.0, "search")
    assert not trial.held_rate and trial.unsent > 0.45 * trial.intended
    assert "did not hold" in trials_table([trial])

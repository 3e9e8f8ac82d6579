"""vdpalab.traffic.iperf and .jobs: server lifecycle by pid, bounded clients, iperf3's own errors.

Live tests (``emulated``) run between two throwaway namespaces: real TCP/UDP runs,
the server gone and its port free afterwards, a refused connection reported in
iperf3's words, a hanging "iperf3" (a script that sleeps) killed within the timeout,
and a process that ignores SIGTERM killed by pid.
"""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import pytest

from vdpalab.config import load_lab
from vdpalab.errors import CommandTimeout
from vdpalab.hosts.base import CommandResult
from vdpalab.hosts.factory import ssh_host
from vdpalab.parsers.iperf import parse_iperf3
from vdpalab.results import Result, Threshold
from vdpalab.testing.sandbox import NetnsPair
from vdpalab.testing.scripted import ScriptedHost, ScriptStep
from vdpalab.traffic.iperf import (
    Iperf3Run,
    Iperf3Spec,
    IperfError,
    iperf3_between,
    iperf3_server,
    iperf_problems,
    listening_ports,
    run_iperf3,
)
from vdpalab.traffic.jobs import JobError, WorkDir, start_job

pytestmark = pytest.mark.selftest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent




def processes_in(netns: str) -> list[str]:
    """Command lines of the processes inside ``netns`` (pgrep would see the whole machine)."""
    out = []
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        except OSError:
            continue
    return out


def test_argv() -> None:
    tcp = Iperf3Spec("192.168.30.159", port=5222, duration_s=3, omit_s=1, streams=2, reverse=True)
    assert tcp.argv() == ["iperf3", "-c", "192.168.30.159", "-p", "5222", "-J", "-t", "3", "--connect-timeout", "5000",
                          "-O", "1", "-P", "2", "-R"]
    udp = Iperf3Spec("192.168.30.159", udp=True, rate="200M", length=1400)
    assert udp.argv()[-5:] == ["-u", "-b", "200M", "-l", "1400"]
    assert tcp.expected_s == 4


def _run_from(name: str, spec: Iperf3Spec) -> Iperf3Run:
    text = (DATA / name).read_text()
    parsed = parse_iperf3(text)
    result = CommandResult("c77g153", "iperf3 ...", 1 if parsed.error else 0, text, "", 0.0, 1.0)
    return Iperf3Run(spec, "c77g153", "c77g159", result, parsed, error=parsed.error)


def test_recorded_error_fails_with_iperf3s_own_words() -> None:
    run = _run_from("recorded/07_iperf/iperf3-3.6-J-tcp-error-control-socket-closed-json.txt",
                    Iperf3Spec("34.134.37.72"))
    assert iperf_problems(run) == [
        "iperf3 TCP x1 c77g153 -> c77g159: failed: error - control socket has closed unexpectedly"
    ]


def test_recorded_tcp_run_judged_against_the_threshold() -> None:
    run = _run_from("recorded/07_iperf/iperf3-3.9-J-tcp-10s-omit3-retransmits-json.txt", Iperf3Spec("x"))
    assert run.throughput_gbps == pytest.approx(0.14380651857092988)
    assert len(run.interval_gbps) == 10  # the 3 omitted warm-up intervals are not samples
    assert iperf_problems(run) == []
    tp = Result("throughput_gbps", run.throughput_gbps, "Gbit/s", better="higher")
    assert Threshold("throughput_gbps", ">=", 0.1).judge(tp).ok
    assert Threshold("throughput_gbps", ">=", 1).judge(tp).message == (
        "throughput_gbps: expected >= 1 Gbit/s (lab.toml), seen 0.143807 Gbit/s: out of bounds")


def test_recorded_udp_loss_judged() -> None:
    run = _run_from("emulated/iperf3-J-udp-t1-localhost-json.txt", Iperf3Spec("x", udp=True, rate="100M"))
    assert iperf_problems(run) == [] and run.parsed is not None and run.parsed.lost_percent == 0
    assert run.parsed is not None and run.parsed.packets == 382


@pytest.mark.emulated
@pytest.mark.parametrize("streams,reverse", [(1, False), (2, True)])
def test_live_tcp_both_ways_and_server_cleaned_up(pair: NetnsPair, streams: int, reverse: bool) -> None:
    assert pair.a and pair.b
    spec = Iperf3Spec(pair.b.address, duration_s=1, streams=streams, reverse=reverse)
    run = iperf3_between(pair.a.host, pair.b.host, spec)
    assert run.error is None, run.error
    assert run.throughput_gbps and run.throughput_gbps > 0.1
    assert len(run.interval_gbps) >= 1 and run.parsed and run.parsed.streams == streams
    assert run.spec.port not in listening_ports(pair.b.host)
    assert not [c for c in processes_in(pair.b.netns) if "iperf3" in c], "an iperf3 is still running in namespace b"


@pytest.mark.emulated
def test_live_udp_at_a_rate(pair: NetnsPair) -> None:
    assert pair.a and pair.b
    run = iperf3_between(pair.a.host, pair.b.host, Iperf3Spec(pair.b.address, duration_s=1, udp=True, rate="50M",
                                                                length=1400))
    assert run.error is None, run.error
    assert run.parsed and run.parsed.packets and run.parsed.lost_percent is not None
    assert 0.03 < (run.throughput_gbps or 0) < 0.07


@pytest.mark.emulated
def test_live_refused_connection_is_iperf3s_error(pair: NetnsPair) -> None:
    assert pair.a and pair.b
    free = 5300
    assert free not in listening_ports(pair.b.host)
    run = run_iperf3(pair.a.host, Iperf3Spec(pair.b.address, port=free, duration_s=1))
    assert run.error == "unable to connect to server: Connection refused"
    assert iperf_problems(run) == [f"iperf3 TCP x1 {pair.a.name} -> server: failed: unable to connect to server: "
                                   "Connection refused"]


@pytest.mark.emulated
def test_live_hanging_client_is_killed_within_the_timeout(pair: NetnsPair, tmp_path: Path) -> None:
    """A stand-in iperf3 that never ends: the run fails in bounded time with a clear message."""
    assert pair.a
    fake = tmp_path / "iperf3-hangs"
    fake.write_text("#!/bin/sh\nexec sleep 300\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    t0 = time.monotonic()
    run = run_iperf3(pair.a.host, Iperf3Spec(pair.b.address if pair.b else "x", duration_s=1, binary=str(fake)),
                     timeout=7)
    elapsed = time.monotonic() - t0
    assert run.error is not None and "killed by timeout(1)" in run.error, run.error
    assert elapsed < 10
    assert not [c for c in processes_in(pair.a.netns) if str(fake) in c]


@pytest.mark.emulated
def test_live_server_that_never_listens_fails_fast_and_is_stopped(pair: NetnsPair, tmp_path: Path) -> None:
    assert pair.b
    fake = tmp_path / "iperf3-deaf"
    fake.write_text("#!/bin/sh\nexec sleep 300\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    t0 = time.monotonic()
    with (
        pytest.raises(IperfError, match=r"iperf3 server did not start: .* not listening on port"),
        iperf3_server(pair.b.host, binary=str(fake), ready_timeout=1.5),
    ):
        pass
    assert time.monotonic() - t0 < 6  # no retries for a hung server
    assert not [c for c in processes_in(pair.b.netns) if str(fake) in c]


@pytest.mark.emulated
def test_live_job_ignoring_sigterm_is_killed_by_pid(pair: NetnsPair) -> None:
    assert pair.a
    host = pair.a.host
    workdir = WorkDir.create(host, "vdpalab-jobtest")
    try:
        stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); " \
                   "time.sleep(300)"
        job = start_job(host, "stubborn", ["python3", "-c", stubborn], workdir)
        job.wait_for(lambda: "up" in job.stdout(), 5, "started")
        job.stop(grace=0.5)
        assert not job.alive()
        assert any("ignored SIGTERM" in n for n in job.notes)
        job.stop()  # twice is harmless
    finally:
        workdir.remove()
    assert not host.run(["test", "-e", workdir.path], timeout=5).ok


@pytest.mark.emulated
def test_live_job_that_exits_early_reports_its_stderr(pair: NetnsPair) -> None:
    assert pair.a
    workdir = WorkDir.create(pair.a.host, "vdpalab-jobtest")
    try:
        job = start_job(pair.a.host, "dies", ["sh", "-c", "echo 'no such device' >&2; exit 3"], workdir)
        with pytest.raises(JobError, match="dies exited before ready: no such device") as info:
            job.wait_for(lambda: False, 5, "ready")
        assert info.value.exited
    finally:
        workdir.remove()


def test_quick_reads_wait_the_hosts_quick_timeout_from_the_lab_file() -> None:
    """A nested TCG guest answers `ss` in more than 10 s at times (a seed-lab run failed on exactly that): its lab
    file gives it `quick_timeout_s = 60`, the SSH host carries it, and the housekeeping reads wait that long."""
    seed = load_lab(ROOT / "labs" / "emulated-vdpa-seed-libvirt.toml")
    nested = ssh_host(seed, "c77g159", seed.guest[1].ssh)
    try:
        assert nested.quick_timeout == 60.0
    finally:
        nested.close()
    netns_lab = load_lab(ROOT / "lab.toml")
    assert ssh_host(netns_lab, "c77g153", netns_lab.guest[0].ssh).quick_timeout == 10.0
    host = ScriptedHost("c77g159", [ScriptStep("ss -Hltn", raises="timeout")])
    host.quick_timeout = 60.0
    with pytest.raises(CommandTimeout) as caught:
        listening_ports(host)
    assert caught.value.timeout == 60.0

"""Measure -> result -> judge: statistics, canonical parameters, thresholds and baselines."""

from __future__ import annotations

import math

import pytest

from vdpalab.config import Thresholds
from vdpalab.results import (
    THRESHOLD_TARGETS,
    VERDICT_COLUMNS,
    CommandRecord,
    Measurement,
    Result,
    ResultsError,
    RunFingerprint,
    TestOutcome,
    Threshold,
    Tolerance,
    Verdict,
    VerdictStatus,
    canonical_params,
    check_run_id,
    judge,
    judge_against_baseline,
    judge_baseline,
    new_run_id,
    parse_baseline_spec,
    thresholds_from_config,
)

pytestmark = pytest.mark.selftest


def test_measurement_reduces_to_results_with_stats_and_direction() -> None:
    # The seed's flood ping: min/avg/max 0.093/0.111/7.100 ms.
    m = Measurement("ping_rtt_ms", "ms", (0.093, 0.111, 0.129, 7.1), {"size": 56}, 100.0, 120.0)
    avg = m.to_result("t::ping[emu]", "emu", name="ping_rtt_avg_ms", better="lower")
    mx = m.to_result("t::ping[emu]", "emu", stat="max", name="ping_rtt_max_ms", better="lower")
    assert avg.value == pytest.approx((0.093 + 0.111 + 0.129 + 7.1) / 4)
    assert mx.value == 7.1
    assert avg.better == "lower" and mx.better == "lower"
    assert avg.samples == m.samples and avg.n_samples == 4
    assert (avg.started, avg.ended) == (100.0, 120.0)
    assert avg.stats()["p50"] == pytest.approx(0.12)
    tp = Measurement("tcp", "bit/s", (9.0e9, 9.5e9), {"streams": 2}).to_result(
        "t::tp", "emu", name="tcp_throughput_gbps", scale=1e-9, unit="Gbit/s", better="higher")
    assert tp.value == pytest.approx(9.25) and tp.unit == "Gbit/s" and tp.samples == (9.0, 9.5)
    assert tp.better == "higher"


def test_params_are_canonical_so_two_workers_write_the_same_key() -> None:
    a = Result("x", 1.0, "u", params={"streams": 2, "size": 56})
    b = Result("x", 1.0, "u", params={"size": 56, "streams": 2})
    assert a.params_key == b.params_key == '{"size":56,"streams":2}'
    assert a.key == b.key
    assert canonical_params(None) == "{}"


def test_result_round_trips_through_a_dict_like_the_record_fixture() -> None:
    r = Result("rtt_avg_ms", 0.111, "ms", (0.1, 0.12), {"size": 56}, "t::a", "emu", "lower", 1.0, 2.0, trial=1)
    assert Result.from_dict(r.to_dict()) == r
    entry = {"name": "x_gbps", "value": 1, "unit": "Gbit/s", "samples": [], "params": {}, "better": None,
             "lab": None, "test_id": "t", "started": 1.0, "ended": 2.0}
    assert Result.from_dict(entry).lab == ""


def test_a_metric_without_a_direction_is_a_programming_error() -> None:
    """Nothing guesses a direction from a name any more: ``rx_drops`` or ``loss_rate`` used to come out "higher"."""
    m = Measurement("rx_drops", "packets", (1.0, 2.0))
    with pytest.raises(TypeError):
        m.to_result("t", "emu")  # type: ignore[call-arg]
    for bad in (None, "auto", "up"):
        with pytest.raises(ResultsError, match="'rx_drops': better must be 'higher' or 'lower'"):
            m.to_result("t", "emu", better=bad)  # type: ignore[arg-type]
        with pytest.raises(ResultsError, match="never guessed"):
            Measurement("loss_rate", "%", (1.0,)).to_result("t", "emu", better=bad)  # type: ignore[arg-type]
    assert Result("loss_rate", 1.0, "%").direction is None  # a stored row without one is never called better


def test_bad_values_are_refused() -> None:
    with pytest.raises(ResultsError):
        Result("x", 1.0, "u", better="up")  # type: ignore[arg-type]
    with pytest.raises(ResultsError):
        TestOutcome("t", "exploded")  # type: ignore[arg-type]
    with pytest.raises(ResultsError):
        check_run_id("../etc")
    with pytest.raises(ResultsError):
        check_run_id("latest")
    rid = new_run_id("emu lab/1", 1779844500.0)
    assert rid.startswith("20260527-011500-emu-lab-1-") and check_run_id(rid) == rid


def test_thresholds_from_lab_toml_model_and_judging() -> None:
    limits = thresholds_from_config(Thresholds(ping_loss_pct_max=0, ping_rtt_avg_ms_max=2.0))
    by_key = {t.source.rsplit(" ", 1)[-1]: t for t in limits}
    assert set(by_key) == set(THRESHOLD_TARGETS)
    loss = by_key["ping_loss_pct_max"]
    assert (loss.metric, loss.test, loss.op, loss.limit, loss.direction) == ("loss_pct", "test_flood_ping", "<=", 0,
                                                                            "lower")
    assert by_key["tcp_throughput_gbps_min"].op == ">=" and by_key["tcp_throughput_gbps_min"].direction == "higher"
    ping = "tests_datapath/test_ping.py::test_flood_ping[emu-56B-a_to_b]"
    udp = "tests_datapath/test_iperf3.py::test_udp_loss[emu-forward]"
    results = [
        Result("loss_pct", 0.0, "%", test_id=ping, lab="emu", better="lower"),
        Result("rtt_avg_ms", 2.5, "ms", test_id=ping, lab="emu", better="lower"),
        Result("loss_pct", 3.0, "%", test_id=udp, lab="emu", better="lower"),
        Result("throughput_gbps", 9.4, "Gbit/s", test_id="tests_datapath/test_iperf3.py::test_tcp_throughput[emu-P1]",
               lab="emu", better="higher"),
        Result("throughput_gbps", 0.01, "Gbit/s", test_id="benchmarks/test_throughput_matrix.py::test_matrix[emu]",
               lab="emu", better="higher"),
        Result("unjudged_metric", 1.0, "", test_id="t::x", lab="emu", better="lower"),
    ]
    verdicts = {(v.test_id.split("::")[1].split("[")[0], v.metric): v for v in judge(results, thresholds=limits)}
    assert set(verdicts) == {("test_flood_ping", "loss_pct"), ("test_flood_ping", "rtt_avg_ms"),
                             ("test_udp_loss", "loss_pct"), ("test_tcp_throughput", "throughput_gbps")}
    assert verdicts[("test_flood_ping", "loss_pct")].ok
    rtt = verdicts[("test_flood_ping", "rtt_avg_ms")]
    assert rtt.failed and not rtt.ok and rtt.seen == rtt.measured == 2.5 and rtt.limit == 2.0
    assert "expected <= 2 ms" in rtt.message and "seen 2.5 ms" in rtt.message
    row = rtt.row()
    assert tuple(row) == VERDICT_COLUMNS
    assert (row["limit"], row["measured"], row["verdict"], row["direction"]) == (2.0, 2.5, "fail", "lower")
    assert "ping_rtt_avg_ms_max" in row["source"]
    udp_loss = verdicts[("test_udp_loss", "loss_pct")]
    assert udp_loss.failed and udp_loss.limit == 1.0  # the default udp_loss_pct_max, not the ping's 0
    assert verdicts[("test_tcp_throughput", "throughput_gbps")].ok
    assert Verdict.from_dict(rtt.to_dict()) == rtt
    with pytest.raises(ResultsError, match="no metric is known"):
        thresholds_from_config({"rtt": 1.0})
    nan = Threshold("x", "<=", 1.0).judge(Result("x", math.nan, "u", better="lower"))
    assert nan.failed and "no value" in nan.message


def test_baseline_spec_parsing() -> None:
    spec = parse_baseline_spec("throughput_gbps:5%, rtt_avg_ms:10% ,rtt_max_ms:0.5")
    assert spec["throughput_gbps"] == Tolerance("throughput_gbps", 0.05, True)
    assert spec["rtt_avg_ms"].amount == pytest.approx(0.10)
    assert spec["rtt_max_ms"] == Tolerance("rtt_max_ms", 0.5, False)
    for bad in ("throughput_gbps", "x:abc%", ":5%", "x:-1%"):
        with pytest.raises(ResultsError, match="--baseline"):
            parse_baseline_spec(bad)


def test_baseline_is_direction_aware_and_missing_baseline_never_passes() -> None:
    tol = Tolerance("m", 0.05)
    tp = Result("throughput_gbps", 9.0, "Gbit/s", better="higher")
    assert judge_baseline(tp, 9.4, tol).ok  # -4.3 % is within 5 %
    worse = judge_baseline(tp, 10.0, tol)
    assert worse.failed and ">= 9.5 Gbit/s" in worse.expected and "seen 9 Gbit/s" in worse.message
    assert judge_baseline(tp.with_(value=20.0), 10.0, tol).ok  # better is always fine
    rtt = Result("rtt_avg_ms", 0.12, "ms", better="lower")
    assert judge_baseline(rtt, 0.111, Tolerance("rtt_avg_ms", 0.10)).ok  # +8 %
    assert judge_baseline(rtt, 0.100, Tolerance("rtt_avg_ms", 0.10)).failed  # +20 %
    assert judge_baseline(rtt.with_(value=0.05), 0.1, Tolerance("rtt_avg_ms", 0.10)).ok
    undirected = Result("frames", 110.0, "", better=None)
    assert judge_baseline(undirected, 100.0, Tolerance("frames", 0.05)).failed  # both ways count
    missing = judge_baseline(tp, None, tol)
    assert missing.status is VerdictStatus.NO_BASELINE
    assert not missing.ok and not missing.failed
    assert "no baseline" in missing.message


def test_judge_against_baseline_run() -> None:
    current = [
        Result("tcp_throughput_gbps", 9.0, "Gbit/s", params={"streams": 1}, test_id="t", lab="a", better="higher"),
        Result("tcp_throughput_gbps", 9.0, "Gbit/s", params={"streams": 2}, test_id="t", lab="a", better="higher"),
        Result("ping_rtt_avg_ms", 0.2, "ms", test_id="p", lab="a", better="lower"),
        Result("not_in_spec", 1.0, "", test_id="p", lab="a"),
    ]
    base = [
        Result("tcp_throughput_gbps", 9.2, "Gbit/s", params={"streams": 1}, test_id="t", lab="a"),
        Result("ping_rtt_avg_ms", 0.111, "ms", test_id="p", lab="a"),
    ]
    verdicts = judge_against_baseline(current, base, "tcp_throughput_gbps:5%,ping_rtt_avg_ms:10%")
    status = {(v.metric, v.params_key): v.status for v in verdicts}
    assert status == {
        ("tcp_throughput_gbps", '{"streams":1}'): VerdictStatus.PASS,
        ("tcp_throughput_gbps", '{"streams":2}'): VerdictStatus.NO_BASELINE,
        ("ping_rtt_avg_ms", "{}"): VerdictStatus.FAIL,
    }
    none = judge_against_baseline(current, None, "tcp_throughput_gbps:5%")
    assert [v.status for v in none] == [VerdictStatus.NO_BASELINE] * 2


def test_fingerprint_and_command_records() -> None:
    fp = RunFingerprint("cx6dx", {"kernel": "5.11.11", "nic_firmware": None, "zz_extra": 3}, host="c83g155")
    assert fp.kernel == "5.11.11" and fp.nic_firmware is None
    names = [n for n, _ in fp.ordered()]
    assert names[:3] == ["kernel", "nic_driver", "nic_firmware"] and names[-1] == "zz_extra"
    assert RunFingerprint.from_dict(fp.to_dict()) == RunFingerprint("cx6dx", dict(fp.ordered()), "c83g155")
    from vdpalab.hosts.base import CommandResult

    cr = CommandResult("h", "ls -l", 0, "out", "", 10.0, 0.5)
    assert CommandRecord.from_any(cr, "emu") == CommandRecord("h", "ls -l", 0, 10.0, 0.5, "emu")
    assert CommandRecord.from_any(("h", "true", 1, 1.0, 0.1)).rc == 1


def test_the_record_fixture_refuses_a_metric_without_better() -> None:
    """``record()`` in a test without ``better`` is a programming error, not a silently guessed direction."""
    from types import SimpleNamespace

    from fixtures.recording import Recorder

    item = SimpleNamespace(nodeid="tests_datapath/test_x.py::test_x[emu]", user_properties=[], stash={})
    record = Recorder(item, "emu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="better"):
        record("rx_drops", 3, "packets")  # type: ignore[call-arg]
    with pytest.raises(ResultsError, match="never guessed"):
        record("rx_drops", 3, "packets", better=None)  # type: ignore[arg-type]
    assert item.user_properties == []
    record("rx_drops", 3, "packets", better="lower")
    assert len(item.user_properties) == 1 and '"better": "lower"' in item.user_properties[0][1]

"""Datapath-suite helpers: lab-driven parametrization, per-test log markers, failure diagnostics.

Each datapath test takes a kernel-log marker on the lab host right before its
call phase (cheap: one short command), so when it fails the diagnostics show the
kernel log of *that* test. The diagnostics themselves (``vdpalab.diagnostics``) are
attached here as report sections and as ``vdpalab_attachment`` properties, unless
the recording plugin announces it does that itself (``COLLECTS_DIAGNOSTICS = True``
in ``fixtures/recording.py``), so they are never attached twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtures.lab_options import labs_of
from fixtures.lab_session import GuestPair, require_layers
from vdpalab.config import Lab
from vdpalab.evidence import LogMarker, take_marker

MARKER_KEY = pytest.StashKey[LogMarker]()
STARTED_KEY = pytest.StashKey[float]()
MARKER_FAILED_KEY = pytest.StashKey[set[int]]()
ATTACH_PROPERTY = "vdpalab_attachment"


def lab_values(config: pytest.Config, pick: Callable[[Lab], Iterable[object]], default: Iterable[object]) -> list:
    """The union over this run's labs of ``pick(lab)`` (a list), in first-seen order; ``default`` without labs."""
    labs = labs_of(config)
    values: list = []
    for lab in labs:
        for v in pick(lab):
            if v not in values:
                values.append(v)
    return values if labs else list(default)


JUMBO_PAYLOAD = 8972  # 9000-byte MTU minus IPv4 (20) and ICMP (8) headers
FRAME_CASES = ("broadcast", "igmp", "vlan", "oversize")


@pytest.hookimpl(trylast=True)  # after the lab parametrization, so ids read "emu-56B-a_to_b"
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize from the labs' traffic profiles (union over the labs of the run; tests skip what a lab lacks)."""
    config = metafunc.config
    if "ping_size" in metafunc.fixturenames:
        sizes = lab_values(config, lambda lab: lab.traffic.ping.payload_sizes, [56])
        if JUMBO_PAYLOAD not in sizes:
            sizes.append(JUMBO_PAYLOAD)
        metafunc.parametrize("ping_size", sizes, ids=[f"{s}B" for s in sizes])
    if "direction" in metafunc.fixturenames:
        metafunc.parametrize("direction", ["a_to_b", "b_to_a"])
    if "tcp_streams" in metafunc.fixturenames:
        streams = lab_values(config, lambda lab: lab.traffic.iperf3.streams, [1])
        metafunc.parametrize("tcp_streams", streams, ids=[f"P{n}" for n in streams])
    if "frame_case" in metafunc.fixturenames:
        metafunc.parametrize("frame_case", FRAME_CASES)


def _guest_tool(lab: Lab, guests: GuestPair, tool: str, switch: str, needed_for: str) -> GuestPair:
    """Both guests have ``tool``, or the lab turned the check off; a guest without it is an ERROR of the lab."""
    if not getattr(lab.checks, switch):
        pytest.skip(f"lab {lab.lab.name} turns this check off ([checks] {switch} = false)")
    with ThreadPoolExecutor(2) as pool:  # two hosts: ask both at once
        found = list(pool.map(lambda g: g.host.run(f"command -v {tool}", timeout=10).ok, (guests.a, guests.b)))
    missing = [g.name for g, ok in zip((guests.a, guests.b), found, strict=True) if not ok]
    if missing:
        pytest.fail(f"{tool} (needed for {needed_for}) is not installed on guest(s) {', '.join(missing)} of lab "
                    f"{lab.lab.name}: install it, or turn the check off with [checks] {switch} = false",
                    pytrace=False)
    return guests


@pytest.fixture
def iperf3_guests(lab: Lab, guests: GuestPair) -> GuestPair:
    """The guests, with iperf3 on both (``[checks] iperf3 = false`` turns the iperf3 checks off)."""
    return _guest_tool(lab, guests, lab.traffic.iperf3.binary, "iperf3", "TCP/UDP load")


@pytest.fixture
def python3_guests(lab: Lab, guests: GuestPair) -> GuestPair:
    """The guests, with python3 on both (``[checks] crafted_frames = false`` turns the crafted frames off)."""
    return _guest_tool(lab, guests, "python3", "crafted_frames", "raw-socket send/sniff of crafted frames")


@pytest.fixture
def vdpa_layer(lab_session: object) -> None:
    """The vdpa layer is up: skip where the lab has none (NOT APPLICABLE), ERROR where it broke."""
    require_layers(lab_session, "vdpa")  # type: ignore[arg-type]


@pytest.fixture
def session_log_marker(lab_session: object) -> LogMarker | None:
    """The kernel-log marker the session took before bring-up (None when it took none)."""
    return session_marker(lab_session)


def session_marker(lab_session: object) -> LogMarker | None:
    """The marker the session took before bring-up, if it took one (attribute or in its record)."""
    for holder in (lab_session, getattr(lab_session, "record", None)):
        for name in ("log_marker", "kernel_log_marker"):
            value = getattr(holder, name, None)
            if isinstance(value, LogMarker):
                return value
            if isinstance(value, dict):
                try:
                    return LogMarker.from_dict(value)
                except ValueError:
                    continue
    return None


def _recording_collects(config: pytest.Config) -> bool:
    plugin = config.pluginmanager.get_plugin("fixtures.recording")
    return bool(getattr(plugin, "COLLECTS_DIAGNOSTICS", False))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Take a kernel-log marker on the lab host just before the test body runs (never fails the test)."""
    item.stash[STARTED_KEY] = time.time()
    lab_session = getattr(item, "funcargs", {}).get("lab_session")
    failed = item.config.stash.setdefault(MARKER_FAILED_KEY, set())
    if lab_session is not None and getattr(lab_session, "record", None) is not None and id(lab_session) not in failed:
        try:
            item.stash[MARKER_KEY] = take_marker(lab_session.hosts["host"], timeout=5.0)
        except Exception:  # the host is gone: do not pay a connect timeout again for every test
            failed.add(id(lab_session))
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or _recording_collects(item.config):
        return
    lab_session = getattr(item, "funcargs", {}).get("lab_session")
    lab: Lab | None = getattr(item, "funcargs", {}).get("lab")
    if lab_session is None or lab is None:
        return
    from vdpalab.diagnostics import collect_diagnostics

    marker = item.stash.get(MARKER_KEY, None) or session_marker(lab_session)
    try:
        sections = collect_diagnostics(
            lab, lab_session.hosts, marker,
            history_since=item.stash.get(STARTED_KEY, None),
            state_dir=getattr(lab_session, "state_dir", None),
        )
    except Exception as exc:  # diagnostics must never hide the real failure
        sections = {"diagnostics": f"could not collect diagnostics: {type(exc).__name__}: {exc}"}
    for name, text in sections.items():
        report.sections.append((f"vdpalab diagnostics: {name}", text))
        attachment = (ATTACH_PROPERTY, json.dumps({"name": f"diagnostics: {name}", "text": text}))
        item.user_properties.append(attachment)
        # appended, not replaced: the report also carries what other hooks added (the judge's verdicts)
        report.user_properties.append(attachment)

"""Zero-loss throughput: NDR and PDR per frame size and direction, found by MLRsearch (FD.io CSIT's search).

Proves, on the lab's own guests, that a calibrated generator (tcpreplay by default, ``[traffic.ndr]
generator``) drives a real MLRsearch to bounds of the datapath: NDR (no loss) and PDR (loss ratio at
most ``pdr_loss_ratio``) with a lower and an upper bound each. Every trial is attached to the test;
``ndr_pps``/``pdr_pps`` are recorded only when the number is the datapath's. A result at the
generator's maximum load, or bounded only by trials where the generator fell behind, is
"tester-limited": recorded as ``tester_limit_pps`` and printed as such, never as ``ndr_pps``. Fails
when a trial cannot be measured, when the search runs out of its time budget, or when even the
minimum load loses packets.
"""

from __future__ import annotations

import json

import pytest

from fixtures.lab_session import GuestPair
from vdpalab.config import Lab
from vdpalab.traffic.ndr import (
    frame_mix,
    make_measurer,
    mlrsearch_version,
    run_search,
    summary_line,
    trials_table,
)

pytestmark = [pytest.mark.benchmark, pytest.mark.measures]


def test_ndr_pdr(lab: Lab, guests: GuestPair, ndr_case: tuple[int | str, str], record) -> None:  # type: ignore[no-untyped-def]
    frame_size, direction = ndr_case
    profile = lab.traffic.ndr
    if frame_size not in profile.frame_sizes or direction not in profile.directions:
        pytest.skip(f"lab {lab.lab.name}: {frame_size} B {direction} is not in [traffic.ndr] frame_sizes x directions")
    pair = guests.reversed() if direction == "reverse" else guests
    sender, receiver = pair.a, pair.b
    largest = max(frame_mix(frame_size))
    mtu = min(sender.settings.mtu, receiver.settings.mtu)
    if largest - 18 > mtu:
        pytest.skip(f"lab {lab.lab.name}: {frame_size} B frames do not fit the guests' MTU {mtu}")
    binary = profile.generator.binary
    if not sender.host.run(f"command -v {binary}", timeout=10).ok:
        pytest.skip(f"{binary} is not installed on guest {sender.name}")
    measurer = make_measurer(profile, sender.host, receiver.host, sender.settings, receiver.settings, frame_size)
    params = {"frame_size": frame_size, "direction": f"{sender.name}->{receiver.name}"}
    try:
        measurer.setup()
        record.component(measurer.generator_name, measurer.generator_version())
        record.component("mlrsearch", mlrsearch_version())
        outcome = run_search(measurer, profile)
    finally:
        measurer.close()
        if measurer.trials:
            record.attach(f"ndr trials {frame_size} B {params['direction']}", trials_table(measurer.trials))
    searched = outcome.search_trials
    started = min((t.started for t in outcome.trials), default=None)
    ended = max((t.started + t.wall_s for t in outcome.trials), default=None)
    span = {"started": started, "ended": ended}
    goals_json = {name: vars(goal) for name, goal in outcome.goals.items()}
    record.attach(f"ndr search {frame_size} B {params['direction']}", json.dumps({
        "goals": goals_json, "calibrated_pps": outcome.calibrated_pps, "min_load_pps": outcome.min_load_pps,
        "max_load_pps": outcome.max_load_pps, "search_s": outcome.search_s, "error": outcome.error,
        "settings": profile.model_dump(mode="json"), "trials": [t.row() for t in outcome.trials],
    }, indent=1, default=str))
    record("generator_max_pps", outcome.calibrated_pps, "pps", params=params, better="higher", **span)
    record("search_trials", len(searched), "trials", params=params, better="lower", **span)
    record("search_time_s", outcome.search_s, "s", params=params, better="lower", **span)
    for name, goal in outcome.goals.items():
        if goal.measured:
            assert goal.conditional_pps is not None and goal.lower_pps is not None and goal.upper_pps is not None
            record(f"{name}_pps", goal.conditional_pps, "pps", params=params, better="higher", **span)
            record(f"{name}_lower_pps", goal.lower_pps, "pps", params=params, better="higher", **span)
            record(f"{name}_upper_pps", goal.upper_pps, "pps", params=params, better="higher", **span)
        elif goal.tester_limited and goal.lower_pps is not None:
            record("tester_limit_pps", goal.lower_pps, "pps", params={**params, "goal": name}, better="higher", **span)
    print(f"{lab.lab.name} {frame_size} B {params['direction']}: {summary_line(outcome)}")
    assert outcome.error is None, f"{frame_size} B {params['direction']}: {outcome.error}"
    missing = set(profile.goals) - set(outcome.goals)
    assert not missing, f"goals without a result: {sorted(missing)}"
    no_lower = [g.reason for g in outcome.goals.values() if g.lower_pps is None]
    assert not no_lower, f"{frame_size} B {params['direction']}: {'; '.join(no_lower)}"
    assert searched, "MLRsearch ran no trial"

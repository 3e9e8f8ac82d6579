"""Shared check for the bring-up modules: the recorded outcome, then a live re-verify with its evidence."""

from __future__ import annotations

import pytest

from vdpalab.layers import LAYER_CLASSES
from vdpalab.layers.base import Evidence, LayerContext, LayerStatus
from vdpalab.session import LabSession


def print_evidence(title: str, evidence: Evidence) -> str:
    text = "\n".join([f"{title}: {'ok' if evidence.ok else 'NOT ok'}: {evidence.summary}", *evidence.details])
    print(text)
    return text


def check_layer(lab_session: LabSession, name: str, record: object) -> Evidence:
    """Assert ``name`` came up and still verifies now; skip when it cannot exist or a layer below it broke.

    A layer that itself broke fails here (this is the test that owns it); the datapath tests that
    depend on it skip with its reason instead.
    """
    session_record = lab_session.ensure_up()
    if session_record.infra_error:
        pytest.fail(f"lab {lab_session.lab.lab.name} could not be built: {session_record.infra_error}")
    outcome = session_record.outcomes.get(name)
    assert outcome is not None, f"layer {name} did not run during bring-up"
    if outcome.status is LayerStatus.NOT_APPLICABLE:
        pytest.skip(outcome.skip_reason)
    if outcome.status is LayerStatus.BROKEN and outcome.reason.startswith(("requires ", "not run")):
        pytest.skip(outcome.skip_reason)
    if outcome.evidence is not None:
        record.attach(f"{name}: evidence at bring-up", print_evidence(f"layer {name} at bring-up", outcome.evidence))  # type: ignore[attr-defined]
    assert outcome.status is LayerStatus.UP, f"layer {name} is {outcome.status.value}: {outcome.reason}"
    ctx = LayerContext(
        lab=lab_session.lab,
        hosts=lab_session.hosts,
        state_dir=lab_session.state_dir,
        versions=dict(session_record.versions),
    )
    live = LAYER_CLASSES[name](ctx).verify()
    record.attach(f"{name}: evidence now", print_evidence(f"layer {name} now", live))  # type: ignore[attr-defined]
    assert live.ok, f"layer {name} came up but no longer verifies: {live.summary}"
    return live

"""Shared check for the bring-up modules: the recorded outcome, then a live re-verify with its evidence."""

from __future__ import annotations

import pytest

from fixtures.lab_session import require_layers
from vdpalab.layers import LAYER_CLASSES
from vdpalab.layers.base import Evidence, LayerContext, LayerStatus
from vdpalab.session import LabSession


def print_evidence(title: str, evidence: Evidence) -> str:
    text = "\n".join([f"{title}: {'ok' if evidence.ok else 'NOT ok'}: {evidence.summary}", *evidence.details])
    print(text)
    return text


@pytest.fixture(autouse=True)
def _layer_gate(request: pytest.FixtureRequest) -> None:
    """Setup of each ``tests_bringup/test_<layer>.py`` test: skip a layer the lab does not have (NOT
    APPLICABLE); ERROR when the infrastructure or a layer below this one broke (it never ran)."""
    if "lab_session" not in request.fixturenames:
        return
    lab_session: LabSession = request.getfixturevalue("lab_session")
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    if name not in LAYER_CLASSES:
        return
    session_record = lab_session.ensure_up()
    outcome = session_record.outcomes.get(name)
    below = outcome is not None and outcome.status is LayerStatus.BROKEN and outcome.reason.startswith(
        ("requires ", "not run"))
    if session_record.bug or session_record.infra_error or outcome is None or below or (
            outcome.status is LayerStatus.NOT_APPLICABLE):
        require_layers(lab_session, name)  # the same skip or ERROR (and message) as the datapath tests get


def check_layer(lab_session: LabSession, name: str, record: object) -> Evidence:
    """Assert ``name`` came up and still verifies now (this test owns the layer: its own break FAILS here).

    ``_layer_gate`` already made the test skip (NOT APPLICABLE) or ERROR (a layer below broke).
    """
    session_record = lab_session.ensure_up()
    outcome = session_record.outcomes.get(name)
    assert outcome is not None, f"layer {name} did not run during bring-up"
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

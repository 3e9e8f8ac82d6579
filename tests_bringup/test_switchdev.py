"""switchdev: each PF's eswitch is in switchdev mode, the VF representors exist, hw-tc-offload is on."""

from __future__ import annotations

import pytest

from tests_bringup.conftest import check_layer
from vdpalab.config import Lab
from vdpalab.session import LabSession

pytestmark = pytest.mark.bringup


def test_switchdev(lab: Lab, lab_session: LabSession, record) -> None:  # type: ignore[no-untyped-def]
    evidence = check_layer(lab_session, "switchdev", record)
    assert evidence.details, "verify gave no evidence lines to show"

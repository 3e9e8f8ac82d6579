"""SR-IOV: each PF has its VFs, and each VF carries the MAC from lab.toml (without it the guest sees no VF)."""

from __future__ import annotations

import pytest

from tests_bringup.conftest import check_layer
from vdpalab.config import Lab
from vdpalab.session import LabSession

pytestmark = pytest.mark.bringup


def test_sriov(lab: Lab, lab_session: LabSession, record) -> None:  # type: ignore[no-untyped-def]
    evidence = check_layer(lab_session, "sriov", record)
    assert evidence.details, "verify gave no evidence lines to show"

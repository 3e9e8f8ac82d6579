"""vDPA: the bus driver is loaded and each /dev/vhost-vdpa-N exists and sits on the intended VF."""

from __future__ import annotations

import pytest

from tests_bringup.conftest import check_layer
from vdpalab.config import Lab
from vdpalab.session import LabSession

pytestmark = pytest.mark.bringup


def test_vdpa(lab: Lab, lab_session: LabSession, record) -> None:  # type: ignore[no-untyped-def]
    evidence = check_layer(lab_session, "vdpa", record)
    assert evidence.details, "verify gave no evidence lines to show"

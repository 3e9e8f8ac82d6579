"""Preflight: the kernel, its cmdline, the tools and the qemu binary suit the lab, and versions are recorded."""

from __future__ import annotations

import pytest

from tests_bringup.conftest import check_layer
from vdpalab.config import Lab
from vdpalab.session import LabSession

pytestmark = pytest.mark.bringup


def test_preflight(lab: Lab, lab_session: LabSession, record) -> None:  # type: ignore[no-untyped-def]
    check_layer(lab_session, "preflight", record)
    versions = lab_session.ensure_up().versions
    record.attach("versions", "\n".join(f"{k}: {v}" for k, v in sorted(versions.items())))
    print("versions:", versions)
    assert versions.get("kernel"), f"preflight recorded no kernel version: {versions}"
    assert versions.get("ovs"), f"preflight recorded no Open vSwitch version: {versions}"

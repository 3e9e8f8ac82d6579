"""Guests: both guests are up, reachable over SSH, and carry the MAC and IP lab.toml gives them."""

from __future__ import annotations

import pytest

from tests_bringup.conftest import check_layer
from vdpalab.config import Lab
from vdpalab.session import LabSession

pytestmark = pytest.mark.bringup


def test_guests(lab: Lab, lab_session: LabSession, record) -> None:  # type: ignore[no-untyped-def]
    check_layer(lab_session, "guests", record)
    for guest in lab.guest:
        out = lab_session.hosts[guest.name].check(f"ip addr show dev {guest.interface}", timeout=30).stdout
        record.attach(f"{guest.name}: ip addr show {guest.interface}", out)
        assert f"inet {guest.ip}" in out, f"{guest.name}: {guest.interface} lacks {guest.ip}:\n{out}"
        assert guest.mac in out.lower(), f"{guest.name}: {guest.interface} lacks MAC {guest.mac}:\n{out}"

"""Guests: both guests are up, reachable over SSH, and carry the MAC and IP lab.toml gives them (read with ip -j)."""

from __future__ import annotations

import pytest

from tests_bringup.conftest import check_layer
from vdpalab.config import Lab
from vdpalab.hosts.base import run_json_or_text
from vdpalab.parsers.iplink import parse_ip_addr, parse_ip_link
from vdpalab.session import LabSession

pytestmark = pytest.mark.bringup


def test_guests(lab: Lab, lab_session: LabSession, record) -> None:  # type: ignore[no-untyped-def]
    check_layer(lab_session, "guests", record)
    for guest in lab.guest:
        dev = guest.interface
        result = run_json_or_text(lab_session.hosts[guest.name], ["ip", "-j", "addr", "show", "dev", dev],
                                  ["ip", "addr", "show", "dev", dev], timeout=30)
        record.attach(f"{guest.name}: {result.command}", result.stdout + result.stderr)
        assert result.ok, f"{guest.name}: {result.command!r} rc={result.rc}: {result.stderr.strip()}"
        addrs = parse_ip_addr(result.stdout)
        assert guest.ip in addrs.cidrs(dev), f"{guest.name}: {dev} has {addrs.cidrs(dev)}, lacks {guest.ip}"
        link = parse_ip_link(run_json_or_text(lab_session.hosts[guest.name], ["ip", "-j", "link", "show", "dev", dev],
                                              ["ip", "link", "show", "dev", dev], timeout=30).stdout).by_name(dev)
        assert link is not None and link.mac == guest.mac, f"{guest.name}: {dev} has MAC {link and link.mac}, " \
            f"lab.toml says {guest.mac}"

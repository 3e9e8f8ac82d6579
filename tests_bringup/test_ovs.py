"""OVS: the other_config keys are set, and every bridge and port of lab.toml exists with an ofport and no error."""

from __future__ import annotations

import pytest

from tests_bringup.conftest import check_layer
from vdpalab.config import Lab
from vdpalab.parsers.ovs import VSCTL_STATE_ARGV, parse_vsctl_state
from vdpalab.session import LabSession

pytestmark = pytest.mark.bringup


def test_ovs(lab: Lab, lab_session: LabSession, record) -> None:  # type: ignore[no-untyped-def]
    check_layer(lab_session, "ovs", record)
    listed = lab_session.hosts["host"].check(VSCTL_STATE_ARGV).stdout
    record.attach("ovs-vsctl list Open_vSwitch Bridge Port Interface (JSON)", listed)
    parsed = parse_vsctl_state(listed).show
    for bridge in lab.bridge:
        assert bridge.name in parsed.bridges, f"bridge {bridge.name} missing from the Bridge table"
        seen = parsed.bridges[bridge.name]
        assert seen.datapath_type == bridge.datapath_type, (
            f"{bridge.name}: datapath_type {seen.datapath_type!r}, lab.toml says {bridge.datapath_type!r}"
        )
        for port in bridge.ports:
            assert port.name in seen.ports, f"{bridge.name}: port {port.name} missing"
            for name, iface in seen.ports[port.name].interfaces.items():
                assert not iface.error, f"{bridge.name}: interface {name} has error: {iface.error}"
                assert iface.ofport is not None and iface.ofport > 0, f"{bridge.name}: {name} has ofport {iface.ofport}"

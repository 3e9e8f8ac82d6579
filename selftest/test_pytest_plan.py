"""``pytest --plan``: prints the seed's bring-up commands for a hardware lab, runs nothing, exits 0.

The seed's lab host does not exist here, so this also proves the fallback: an unreachable host
is said in one line and the plan for a fresh host follows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent


def test_pytest_plan_prints_the_seed_sequence_and_runs_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--plan", "--lab", "labs/cx6dx-qemu.toml", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "the lab host cannot be reached" in out
    expected_in_order = [
        "echo 1 > /sys/class/net/ens2f0/device/sriov_numvfs",
        "ip link set ens2f0 vf 0 mac 00:11:22:33:44:00",
        "echo 0000:07:00.2 > /sys/bus/pci/drivers/mlx5_core/unbind",
        "devlink dev eswitch set pci/0000:07:00.0 mode switchdev",
        "modprobe vhost_vdpa",
        "ovs-vsctl set Open_vSwitch . other_config:dpdk-init=true",
        "ovs-vsctl add-br br30-ovs -- set bridge br30-ovs datapath_type=netdev",
        "-netdev type=vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vhost-vdpa0",
    ]
    positions = [out.find(text) for text in expected_in_order]
    assert -1 not in positions, [t for t, p in zip(expected_in_order, positions, strict=True) if p == -1]
    assert positions == sorted(positions), "the plan is not in the seed's order"
    assert "none was run" in out
    assert "passed" not in out and "collected" not in out  # no test ran


def test_pytest_plan_needs_a_lab() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--plan", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 4
    assert "--plan needs --lab FILE" in proc.stdout + proc.stderr

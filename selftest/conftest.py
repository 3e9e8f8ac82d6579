"""Shared self-test fixtures, and the xdist group that keeps machine-wide self-tests apart.

``make test`` runs the self-tests with ``-n auto`` (two workers on CI's two cores). Tests that build labs
or start daemons change what a "leaves the machine as found" snapshot sees (namespaces, mounts, watched
processes), so two of them side by side would fail each other. Every such test (marked ``emulated``,
``qemu``, ``nested`` or ``machine``, or using the netns ``pair``) joins ``xdist_group("machine")``: one
worker runs them one after the other, the other workers take the pure tests.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import pytest

from vdpalab.emulated.netns_lab import run_netns_left_mounted, run_netns_state
from vdpalab.testing.sandbox import NetnsPair

MACHINE_GROUP = "machine"
MACHINE_MARKERS = ("emulated", "qemu", "nested", "machine")


def touches_the_machine(item: pytest.Item) -> bool:
    """Whether a self-test changes or watches machine-wide state (its markers, or the netns ``pair``)."""
    if any(item.get_closest_marker(name) is not None for name in MACHINE_MARKERS):
        return True
    return "pair" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):  # xdist registers the xdist_group marker
        return
    for item in items:
        if touches_the_machine(item):
            item.add_marker(pytest.mark.xdist_group(MACHINE_GROUP))


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest) -> Iterator[NetnsPair]:
    """Two throwaway namespaces joined by a veth, unique per module and process; nothing may be left running."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    tag = zlib.crc32(request.module.__name__.encode()) % 100
    before = run_netns_state()
    sandbox = NetnsPair(prefix=f"vdpalab-dp{os.getpid()}-{tag}").create()
    try:
        yield sandbox
        left = sandbox.leftover_pids()
        assert not left, f"processes left in the sandbox namespaces: {left}"
    finally:
        sandbox.destroy()
    assert not run_netns_left_mounted(before), "the sandbox left /run/netns mounted (its `ip netns add` made the mount)"

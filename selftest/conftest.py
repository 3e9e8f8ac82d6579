"""Shared self-test fixtures."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import pytest

from vdpalab.emulated.netns_lab import run_netns_left_mounted, run_netns_state
from vdpalab.testing.sandbox import NetnsPair


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

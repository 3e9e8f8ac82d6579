"""Shared self-test fixtures."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import pytest

from vdpalab.testing.sandbox import NetnsPair


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest) -> Iterator[NetnsPair]:
    """Two throwaway namespaces joined by a veth, unique per module and process; nothing may be left running."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    tag = zlib.crc32(request.module.__name__.encode()) % 100
    mounted_before = _run_netns_mounted()
    sandbox = NetnsPair(prefix=f"vdpalab-dp{os.getpid()}-{tag}").create()
    try:
        yield sandbox
        left = sandbox.leftover_pids()
        assert not left, f"processes left in the sandbox namespaces: {left}"
    finally:
        sandbox.destroy()
    others = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []  # a lab that came up meanwhile
    if not mounted_before and not others:
        assert not _run_netns_mounted(), "the sandbox left /run/netns mounted (its `ip netns add` made the mount)"


def _run_netns_mounted() -> bool:
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == "/run/netns" for line in mountinfo if len(line.split()) > 4)

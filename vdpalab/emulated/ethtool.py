"""Transmit checksum offload of veth ends, through pyroute2's ethtool ioctl (no process started).

OVS's userspace datapath forwards frames whose checksum is still partial (the veth
pretends to offload it), so TCP through the bridges fails unless tx checksumming is off
on every veth end. That is a property of the emulated "NIC" and "cable", so the builder
sets it. ``SIOCETHTOOL`` resolves the interface name in the namespace of the socket it
is issued on, so one ``IoctlEthtool`` (one socket) created inside a namespace serves all
of its interfaces.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from pyroute2.ethtool.ioctl import IoctlEthtool

from vdpalab.hosts.netns import call_in_netns

TX_CHECKSUM = "tx-checksumming"  # `ethtool -K IF tx off`


@contextmanager
def _ethtool_in(netns: str) -> Iterator[IoctlEthtool]:
    tool = call_in_netns(netns, IoctlEthtool, timeout=10.0)
    try:
        yield tool
    finally:
        tool.close()


def _tx_on(tool: IoctlEthtool, ifname: str) -> bool:
    tool.change_ifname(ifname)
    return bool(tool.get_offload_flags()[TX_CHECKSUM])


def tx_checksum(netns: str, ifnames: Iterable[str]) -> dict[str, bool]:
    """Whether tx checksum offload is on, per interface of ``netns``."""
    with _ethtool_in(netns) as tool:
        return {name: _tx_on(tool, name) for name in ifnames}


def disable_tx_checksum(netns: str, ifnames: Iterable[str]) -> list[str]:
    """``ethtool -K IF tx off`` for each interface of ``netns``; returns those that were on."""
    changed: list[str] = []
    with _ethtool_in(netns) as tool:
        for name in ifnames:
            if _tx_on(tool, name):
                tool.set_offload_flag(TX_CHECKSUM, 0)
                changed.append(name)
    return changed

"""Transmit checksum offload of veth ends, through the ethtool ioctl (no process started).

OVS's userspace datapath forwards frames whose checksum is still partial (the veth
pretends to offload it), so TCP through the bridges fails unless tx checksumming is off
on every veth end. That is a property of the emulated "NIC" and "cable", so the builder
sets it. ``SIOCETHTOOL`` resolves the interface name in the namespace of the socket it
is issued on, so one socket created inside a namespace serves all of its interfaces.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
from collections.abc import Iterable

from vdpalab.hosts.netns import call_in_netns

SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x00000016
ETHTOOL_STXCSUM = 0x00000017
_IFREQ_SIZE = 40


def _socket_in(netns: str) -> socket.socket:
    return call_in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM), timeout=10.0)


def _ethtool_value(sock: socket.socket, ifname: str, cmd: int, data: int = 0) -> int:
    value = ctypes.create_string_buffer(struct.pack("II", cmd, data), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(_IFREQ_SIZE, b"\0")
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return int(struct.unpack("II", value.raw)[1])


def tx_checksum(netns: str, ifnames: Iterable[str]) -> dict[str, bool]:
    """Whether tx checksum offload is on, per interface of ``netns``."""
    with _socket_in(netns) as sock:
        return {name: bool(_ethtool_value(sock, name, ETHTOOL_GTXCSUM)) for name in ifnames}


def disable_tx_checksum(netns: str, ifnames: Iterable[str]) -> list[str]:
    """``ethtool -K IF tx off`` for each interface of ``netns``; returns those that were on."""
    changed: list[str] = []
    with _socket_in(netns) as sock:
        for name in ifnames:
            if _ethtool_value(sock, name, ETHTOOL_GTXCSUM):
                _ethtool_value(sock, name, ETHTOOL_STXCSUM, 0)
                changed.append(name)
    return changed

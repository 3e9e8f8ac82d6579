"""``kind = "netns"``: a namespace with its own sshd, made by an emulated lab's infrastructure.

There is nothing to start or stop: the infrastructure keeps the namespace and its sshd running. The layer only
configures the data interface, including the lab's MAC (a veth has a random one).
"""

from __future__ import annotations

from typing import ClassVar

from vdpalab.guests.base import GuestDriverBase, GuestNeeds


class NetnsDriver(GuestDriverBase):
    kind: ClassVar[str] = "netns"

    @property
    def sets_mac(self) -> bool:
        """A veth has a random MAC."""
        return True

    def needs(self) -> GuestNeeds:
        return GuestNeeds(host_tools=("iperf3", "ping", "ip"))  # a namespace runs the host's own programs

"""Guests: one driver per guest kind behind ``GuestDriver`` (see ``base`` for how to add a kind).

``driver_for(guest, ctx)`` is the only place that maps a guest's ``kind`` to code; the guests layer,
preflight, hugepages, the host pool and diagnostics all go through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vdpalab.guests.base import GuestContext, GuestDriver, GuestDriverBase, GuestNeeds, GuestRun
from vdpalab.guests.libvirt import LibvirtDriver
from vdpalab.guests.netns import NetnsDriver
from vdpalab.guests.qemu import QemuDriver
from vdpalab.guests.vdpa_netns import VdpaNetnsDriver

if TYPE_CHECKING:
    from vdpalab.config import GuestBase

#: guest kind -> its driver; one line per kind
DRIVERS: dict[str, type[GuestDriverBase]] = {
    cls.kind: cls for cls in (QemuDriver, LibvirtDriver, NetnsDriver, VdpaNetnsDriver)
}


def driver_for(guest: GuestBase, ctx: GuestContext | None = None) -> GuestDriver:
    """The driver of ``guest``'s kind; without ``ctx`` only ``address`` and ``needs`` may be asked."""
    kind = getattr(guest, "kind", None)
    cls = DRIVERS.get(str(kind))
    if cls is None:
        raise LookupError(f"guest {guest.name}: no driver for kind {kind!r} (known: {', '.join(sorted(DRIVERS))})")
    return cls(guest, ctx)


__all__ = ["DRIVERS", "GuestContext", "GuestDriver", "GuestDriverBase", "GuestNeeds", "GuestRun", "driver_for"]

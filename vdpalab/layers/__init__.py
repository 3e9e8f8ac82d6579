"""Bring-up layers, in the seed's order: preflight, hugepages, sriov, switchdev, vdpa, ovs, guests.

Each layer has ``probe`` / ``plan`` / ``up`` / ``verify`` / ``down`` (see ``base.Layer``);
``vdpalab.bringup.BringUp`` runs them in order and records their outcomes.
"""

from vdpalab.config import Lab
from vdpalab.layers.base import (
    Evidence,
    Journal,
    Layer,
    LayerContext,
    LayerOutcome,
    LayerStatus,
    PlannedCommand,
    outcome_from_dict,
    outcome_to_dict,
    run_layer,
)
from vdpalab.layers.guests import Guests
from vdpalab.layers.hugepages import Hugepages
from vdpalab.layers.ovs import Ovs
from vdpalab.layers.preflight import Preflight
from vdpalab.layers.sriov import Sriov
from vdpalab.layers.switchdev import Switchdev
from vdpalab.layers.vdpa import Vdpa

LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.name: cls for cls in (Preflight, Hugepages, Sriov, Switchdev, Vdpa, Ovs, Guests)
}
LAYER_ORDER: tuple[str, ...] = tuple(LAYER_CLASSES)


def layer_order(lab: Lab) -> tuple[str, ...]:
    """The seed's order, except that a vdpa device whose backend the OVS dataplane creates comes after ovs.

    With ``vdpa.backend = "vduse"`` OVS-DPDK makes ``/dev/vduse/NAME`` when its port is added, and only then can
    ``vdpa dev add name NAME mgmtdev vduse`` put it on the bus; teardown runs in reverse, so the devices are
    deleted before the OVS ports go (DPDK cannot destroy a VDUSE device that is still on the bus).
    """
    if lab.vdpa.backend != "vduse":
        return LAYER_ORDER
    order = [n for n in LAYER_ORDER if n != "vdpa"]
    order.insert(order.index("ovs") + 1, "vdpa")
    return tuple(order)

__all__ = [
    "LAYER_CLASSES",
    "LAYER_ORDER",
    "Evidence",
    "Guests",
    "Hugepages",
    "Journal",
    "Layer",
    "LayerContext",
    "LayerOutcome",
    "LayerStatus",
    "Ovs",
    "PlannedCommand",
    "Preflight",
    "Sriov",
    "Switchdev",
    "Vdpa",
    "layer_order",
    "outcome_from_dict",
    "outcome_to_dict",
    "run_layer",
]

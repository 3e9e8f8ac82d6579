"""Infrastructure: what builds the "hardware" a real lab host already has before the seed's procedure starts.

On a real lab the NIC, its cable, the host's sshd and the guests' disks are simply there; a hardware lab has no
infrastructure to build (``infrastructure_for`` returns None). An emulated lab stands those parts in with
software and names how in its ``[emulated] flavour``: ``netns`` (namespaces, veth cables, a private OVS and sshd
daemons), ``qemu`` (the same plus OVS-DPDK and a guest image for QEMU guests), and so on. The bring-up layers then
configure that host over SSH exactly as they configure hardware; they never know which it is.

How to add a flavour (the vDPA lab's VM is one):

1. a class implementing ``Infrastructure`` (below) in ``vdpalab/emulated/<flavour>_lab.py``, constructed as
   ``Cls(lab)``; ``up`` is idempotent and ``down`` removes exactly what ``up`` created, also after a crash;
2. the flavour in ``EmulatedSettings.flavour`` (``vdpalab/config.py``) and one line in ``INFRASTRUCTURES``;
3. guests it provides itself (a namespace, a guest inside its VM) are a guest kind with a driver in
   ``vdpalab.guests`` that starts nothing; guests the layers start are the layers' business.

``vdpalab.control`` runs infrastructure and layers in the right order (``lab_up``/``lab_down``); the test session
and ``vdpalab lab`` both go through it.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from typing import Any, Protocol

from vdpalab.config import Lab
from vdpalab.errors import LabStateError


class InfraProbe(Protocol):
    """A read-only look at the infrastructure: ``ok`` when everything it owns is in place."""

    @property
    def ok(self) -> bool: ...


class InfraReport(Protocol):
    """What ``up`` did: an empty ``changed`` means it found everything up and only probed."""

    changed: list[str]


class Infrastructure(Protocol):
    """Builds, probes and removes one lab's stand-in hardware (root only, one lab at a time per state dir)."""

    #: the lab's guests exist once ``up`` returned (their SSH can be dialled before the layers run)
    provides_guests: bool

    def lock(self, timeout: float = 300.0) -> AbstractContextManager[Any]:
        """An exclusive lock on this lab's infrastructure (re-entrant within one instance)."""
        ...

    def up(self) -> InfraReport:
        """Build or repair; idempotent."""
        ...

    def probe(self) -> InfraProbe: ...

    def status(self) -> dict[str, Any]:
        """For ``vdpalab lab status``: at least ``state`` ("up", "down", "partial") and ``up`` (bool)."""
        ...

    def down(self) -> list[str]:
        """Remove what ``up`` created (from its own record); returns what was removed."""
        ...

    # Optional: ``host_state_lost() -> bool``, True when the lab host the layers configured is gone together with
    # every change they made (the emulated-vdpa lab's VM, whose disk is a throwaway snapshot, died): ``lab_down``
    # then drops the layers' journals instead of booting a new host only to undo nothing.


#: flavour -> "module:Class"; a flavour's module is imported only when a lab of that flavour is used
INFRASTRUCTURES: dict[str, str] = {
    "netns": "vdpalab.emulated.netns_lab:EmulatedLab",
    "qemu": "vdpalab.emulated.qemu_lab:QemuLab",
    "vdpa-vm": "vdpalab.emulated.vdpa_vm_lab:VdpaVmLab",
}


def has_infrastructure(lab: Lab) -> bool:
    """Whether the lab stands its hardware in with software (an ``[emulated]`` table) that must be built first."""
    return lab.emulated is not None


def infrastructure_for(lab: Lab) -> Infrastructure | None:
    """The lab's infrastructure, or None for a hardware lab (its hardware is already there)."""
    if lab.emulated is None:
        return None
    target = INFRASTRUCTURES.get(lab.emulated.flavour)
    if target is None:
        raise LabStateError(
            f"lab {lab.lab.name!r}: no infrastructure for emulated flavour {lab.emulated.flavour!r} "
            f"(known: {', '.join(sorted(INFRASTRUCTURES))})"
        )
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(lab)

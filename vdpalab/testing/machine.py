"""The machine before a self-test and what the tested labs left on it after: one helper for every lab self-test.

The machine is shared (other people's labs and QEMU guests come and go), so only namespaces,
their bind mounts and processes can be attributed: those of others are ignored. Everything else
(root links, addresses, routes, hugepages, sysctls, modules, other mounts) is compared strictly,
except that the machine-wide hugepage pool, and hugetlbfs mounts outside the tested labs' state
dirs, cannot be blamed on the tested labs while another lab came or went meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from vdpalab.emulated.daemons import netns_inode
from vdpalab.emulated.snapshot import diff_snapshots, foreign_filter, machine_snapshot

_POOL_LINES = ("hugepages: ", "sysctls: ~ vm.nr_hugepages")


def attributable(lines: list[str], foreign: Callable[[str], bool], markers: Iterable[str]) -> list[str]:
    """The lines of a snapshot diff that the tested labs are to answer for."""
    marks = list(markers)
    mine = [line for line in lines if not foreign(line)]
    if any(line.startswith("netns: ") and foreign(line) for line in lines):
        mine = [
            line for line in mine
            if not line.startswith(_POOL_LINES)
            and not (line.startswith("mounts: ") and " hugetlbfs " in line and not any(m in line for m in marks))
        ]
    return mine


class Machine:
    """A snapshot of the machine now; ``leftovers()`` is what the labs named here left behind."""

    def __init__(self, prefixes: Iterable[str], markers: Iterable[str], namespaces: Iterable[str] = ()) -> None:
        self.prefixes = tuple(prefixes)
        self.markers = list(markers)
        self.namespaces = list(namespaces)
        self.inodes: set[int] = set()
        self.before = machine_snapshot()

    @classmethod
    def of_names(cls, *names: str) -> Machine:
        """Labs made by ``relabel_lab_file`` (namespaces ``vdpalab-<name>-*``, state under ``/tmp/vdl-<name>/``)."""
        return cls([f"vdpalab-{n}-" for n in names], [f"/tmp/vdl-{n}/" for n in names])

    @classmethod
    def of_layouts(cls, *layouts: Any) -> Machine:
        """Labs given by their emulated layouts (``netns_lab.lab_layout``)."""
        return cls(
            [f"{lay.prefix}-" for lay in layouts],
            [lay.marker for lay in layouts],
            [ns for lay in layouts for ns in lay.namespaces],
        )

    def note(self) -> None:
        """Call while the labs are up: remembers their namespaces' identities (their processes are then known)."""
        for ns in self.namespaces:
            inode = netns_inode(ns)
            if inode is not None:
                self.inodes.add(inode)

    def leftovers(self, inodes: Iterable[int] = (), settle_s: float = 5.0) -> list[str]:
        """What the labs left, once exits and hugepage releases had ``settle_s`` to happen."""
        foreign = foreign_filter(self.prefixes, self.markers, self.inodes | {int(i) for i in inodes})
        deadline = time.monotonic() + settle_s
        while True:
            mine = attributable(diff_snapshots(self.before, machine_snapshot()), foreign, self.markers)
            if not mine or time.monotonic() > deadline:
                return mine
            time.sleep(0.2)

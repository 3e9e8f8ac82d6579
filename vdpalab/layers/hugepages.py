"""Hugepages: enough free pages of the lab's size, and hugetlbfs mounted where the lab says (seed 2-1).

The seed reserves 16 x 1 GiB pages on the kernel command line and mounts hugetlbfs from
/etc/fstab; on such a host (``reserve_at_runtime = false``) this layer only verifies and says
what to change and reboot when it fails. With ``reserve_at_runtime = true`` (emulated labs) it
writes ``nr_hugepages`` for the lab's page size so that at least the needed pages are free, and
mounts hugetlbfs with ``pagesize=`` at the mount path; ``down`` takes back the pages it added and
unmounts and removes only what it created.

The pool is machine-wide, so ``down`` gives back what ``up`` added (the current count minus the lab's
pages) rather than writing the count it saw: two labs that go down in any order then leave the count
where it was before either came up (writing the seen count left 32 pages behind when the second lab
had seen the first one's pages).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vdpalab.config import HugepagesSettings
from vdpalab.errors import HostError, LayerError
from vdpalab.guests import driver_for
from vdpalab.layers import _text
from vdpalab.layers.base import Evidence, Layer, PlannedCommand
from vdpalab.parsers.procfs import Mount, parse_meminfo, parse_mounts


@dataclass(frozen=True)
class HugepagesState:
    size_kb: int  # the lab's page size
    default_size_kb: int | None  # /proc/meminfo Hugepagesize
    total: int
    free: int
    nr: int | None  # sysfs nr_hugepages (persistent pages) for the lab's size, when read
    mount: Mount | None  # hugetlbfs at the lab's mount path
    other_mount: Mount | None  # something else mounted there
    dir_exists: bool | None  # None when not probed
    mem_available_kb: int | None = None  # /proc/meminfo MemAvailable

    @property
    def used(self) -> int:
        return self.total - self.free


def _size_label(size_kb: int) -> str:
    return "1G" if size_kb == 1048576 else f"{size_kb // 1024}M"


class Hugepages(Layer):
    name = "hugepages"
    requires = ("preflight",)

    @property
    def settings(self) -> HugepagesSettings:
        return self.lab.hugepages

    @property
    def mount_path(self) -> str:
        return str(self.lab.resolve(self.settings.mount))

    @property
    def sysfs(self) -> str:
        return f"/sys/kernel/mm/hugepages/hugepages-{self.settings.size_kb}kB"

    def needed_pages(self) -> tuple[int, list[str]]:
        """Pages the lab needs: its own count, or OVS socket-mem plus hugepage-backed guests if more."""
        size_kb = self.settings.size_kb
        why = [f"hugepages.count = {self.settings.count}"]
        need = 0
        if self.lab.ovs.dpdk and self.lab.ovs.socket_mem:
            mb = sum(int(x) for x in self.lab.ovs.socket_mem.split(","))
            pages = math.ceil(mb * 1024 / size_kb)
            need += pages
            why.append(f"OVS dpdk-socket-mem {self.lab.ovs.socket_mem} = {pages} page(s)")
        for guest in self.lab.guest:
            mib = driver_for(guest).needs().hugepages_mib  # vhost-user guests' shared RAM (the seed's vDPA: none)
            if mib:
                pages = math.ceil(mib * 1024 / size_kb)
                need += pages
                why.append(f"guest {guest.name} {mib} MiB = {pages} page(s)")
        return max(self.settings.count, need), why

    def probe(self) -> HugepagesState:
        self.prefetch([["cat", "/proc/meminfo"], ["cat", f"{self.sysfs}/nr_hugepages", f"{self.sysfs}/free_hugepages"],
                       ["cat", "/proc/mounts"]])  # fmt: skip
        info = parse_meminfo(self.read_ok(["cat", "/proc/meminfo"], what="reading /proc/meminfo")).fields
        default_kb = info.get("Hugepagesize")
        size_kb = self.settings.size_kb
        total = free = 0
        nr: int | None = None
        if default_kb == size_kb:
            total, free = info.get("HugePages_Total", 0), info.get("HugePages_Free", 0)
        if self.settings.reserve_at_runtime or default_kb != size_kb:
            result = self.read(["cat", f"{self.sysfs}/nr_hugepages", f"{self.sysfs}/free_hugepages"])
            values = [int(x) for x in result.stdout.split() if x.isdigit()] if result.ok else []
            if len(values) == 2:
                nr = values[0]
                if default_kb != size_kb:
                    total, free = values
        mount = other = None
        for m in parse_mounts(self.read_ok(["cat", "/proc/mounts"], what="reading /proc/mounts")).mounts:
            if m.mountpoint == self.mount_path:
                if m.fstype == "hugetlbfs":
                    mount = m
                else:
                    other = m
        dir_exists = None
        if self.settings.reserve_at_runtime and mount is None:
            dir_exists = self.read(["test", "-d", self.mount_path]).ok
        return HugepagesState(size_kb, default_kb, total, free, nr, mount, other, dir_exists,
                              info.get("MemAvailable"))

    def fresh_state(self) -> HugepagesState:
        """A fresh host: on the seed, the kernel command line already reserved the pages (section 2-1)."""
        size_kb = self.settings.size_kb
        if self.settings.reserve_at_runtime:
            return HugepagesState(size_kb, 2048, 0, 0, 0, None, None, False)
        count = self.settings.count
        mount = Mount("nodev", self.mount_path, "hugetlbfs", ["rw", f"pagesize={_size_label(size_kb)}"], 0, 0)
        return HugepagesState(size_kb, size_kb, count, count, None, mount, None, None)

    def plan(self, state: Any | None = None) -> list[PlannedCommand]:
        st: HugepagesState = self.probe() if state is None else state
        if not self.settings.reserve_at_runtime:
            return []  # kernel command line + fstab: verify only
        out = []
        need, _ = self.needed_pages()
        extra_kb = max(0, need - st.free) * st.size_kb
        if st.mem_available_kb is not None and extra_kb > st.mem_available_kb:
            # writing a huge nr_hugepages makes the kernel take every free page it finds, starving the host:
            # a lab asking for more than MemAvailable is broken (LayerError), not served
            raise LayerError(
                self.name,
                f"refusing to reserve {need - st.free} more {_size_label(st.size_kb)} pages ({extra_kb // 1024} MiB) "
                f"for {need} free: the host has only {st.mem_available_kb // 1024} MiB available (MemAvailable)",
            )
        if st.free < need:
            target = (st.nr if st.nr is not None else st.total) + (need - st.free)
            out.append(
                self.planned(
                    f"echo {target} > {self.sysfs}/nr_hugepages",
                    f"reserve {need - st.free} more {_size_label(st.size_kb)} page(s) so {need} are free",
                )
            )
        if st.mount is None:
            if st.other_mount is not None:
                return out  # verify reports what is mounted there; never mount over it
            if not st.dir_exists:
                out.append(self.planned(["mkdir", "-p", self.mount_path], "the hugetlbfs mount point"))
            out.append(
                self.planned(
                    ["mount", "-t", "hugetlbfs", "-o", f"pagesize={_size_label(st.size_kb)}", "nodev", self.mount_path],
                    "hugetlbfs for DPDK/QEMU (seed 2-1 /etc/fstab line)",
                )
            )
        return out

    def journal_before(self, state: Any, planned: list[PlannedCommand]) -> None:
        st: HugepagesState = state
        for cmd in planned:
            if cmd.command.endswith("/nr_hugepages"):
                before = st.nr if st.nr is not None else st.total
                target = int(cmd.command.split()[1])
                self.journal.record(
                    "nr_hugepages", {"path": f"{self.sysfs}/nr_hugepages", "before": st.nr, "added": target - before}
                )
            elif cmd.command.startswith("mkdir "):
                self.journal.record("created_dir", self.mount_path)
            elif cmd.command.startswith("mount "):
                self.journal.record("mounted", self.mount_path)

    def verify(self) -> Evidence:
        st = self.probe()
        need, why = self.needed_pages()
        label = _size_label(st.size_kb)
        details = [
            f"{label} pages: total {st.total}, free {st.free} (default size {st.default_size_kb} kB)",
            "needed: " + ", ".join(why) + f" -> {need}",
        ]
        problems = []
        enough = st.free >= need or (st.total >= need and st.used <= need)
        if st.free < need and enough:
            details.append(f"{st.used} page(s) in use, no more than this lab needs: taken as the lab's own")
        if not enough:
            msg = f"only {st.free} of {st.total} {label} hugepages free, {need} needed"
            if not self.settings.reserve_at_runtime:
                msg += (
                    f" (reserve_at_runtime = false: reserve them on the kernel command line, e.g. "
                    f"default_hugepagesz={label} hugepagesz={label} hugepages={need}, and reboot; seed 2-1)"
                )
            problems.append(msg)
        if st.mount is None:
            msg = f"hugetlbfs is not mounted at {self.mount_path}"
            if st.other_mount is not None:
                msg += f" ({st.other_mount.fstype} is mounted there)"
            elif not self.settings.reserve_at_runtime:
                msg += f" (add `nodev {self.mount_path} hugetlbfs pagesize={label}B 0 0` to /etc/fstab; seed 2-1)"
            problems.append(msg)
        else:
            pagesize = st.mount.option("pagesize")
            details.append(f"hugetlbfs at {self.mount_path}: {','.join(st.mount.options)}")
            if pagesize is not None and _text.size_bytes(pagesize) != st.size_kb * 1024:
                problems.append(f"hugetlbfs at {self.mount_path} has pagesize={pagesize}, the lab wants {label}")
        if problems:
            return Evidence(False, "; ".join(problems), tuple(details))
        return Evidence(
            True, f"{st.free} free {label} hugepages (need {need}), hugetlbfs at {self.mount_path}", tuple(details)
        )

    def down_plan(self) -> list[PlannedCommand]:
        planned = []
        if "mounted" in self.journal:
            planned.append(self.planned(["umount", self.journal.get("mounted")], "unmount what up mounted"))
        if "created_dir" in self.journal:
            planned.append(self.planned(["rmdir", self.journal.get("created_dir")], "remove the mount point up made"))
        entry = self.journal.get("nr_hugepages")
        if entry and entry.get("before") is not None:
            restore = f"echo {self._restored_count(entry)} > {entry['path']}"
            planned.append(self.planned(restore, "restore nr_hugepages"))
        return planned

    def _restored_count(self, entry: dict[str, Any]) -> int:
        """The count once this lab's pages are given back: now minus what up added (never below 0).

        A journal from before ``added`` was recorded, or a host that cannot be read now, gets the
        count up saw.
        """
        added = entry.get("added")
        if added is None or "host" not in self.ctx.hosts:
            return int(entry["before"])
        try:
            result = self.read(["cat", entry["path"]])
        except HostError:
            return int(entry["before"])
        now = result.stdout.strip()
        if not result.ok or not now.isdigit():
            return int(entry["before"])
        return max(0, int(now) - int(added))

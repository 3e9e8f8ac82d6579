"""Host-side pieces an OVS-DPDK instance of the emulated lab needs, each undoable so ``down`` leaves no trace.

* hugepages: reserve N pages of one size via sysfs and give back exactly what was added;
* a private hugetlbfs mount in the lab's state dir (``--huge-dir``), so the lab's page files never mix with
  another DPDK application's in /dev/hugepages;
* the EAL runtime directory ``/var/run/dpdk/<file-prefix>`` that DPDK leaves behind (``--file-prefix`` per lab);
* the ``other_config`` for ``ovs-vswitchd-dpdk`` (pure), with a fallback without hugepages.

:class:`HugepageLease` records what it changed in a JSON journal, so a later process (``vdpalab down``) can undo
it even after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vdpalab.errors import LabStateError

DPDK_RUNTIME_ROOT = Path("/var/run/dpdk")
HUGEPAGES_SYSFS = Path("/sys/kernel/mm/hugepages")
VSWITCHD_DPDK_CANDIDATES = (
    "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk",  # Debian/Ubuntu openvswitch-switch-dpdk
    "/usr/sbin/ovs-vswitchd",  # distributions built with DPDK
)


# ----------------------------------------------------------------------------------------------- pure helpers


def find_vswitchd_dpdk() -> str:
    """The ovs-vswitchd binary linked with DPDK (Debian ships it beside the plain one, not on PATH)."""
    for path in VSWITCHD_DPDK_CANDIDATES:
        if os.access(path, os.X_OK):
            out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
            if "DPDK" in out:
                return path
    raise LabStateError(
        "no ovs-vswitchd built with DPDK found (tried " + ", ".join(VSWITCHD_DPDK_CANDIDATES) + "); "
        "install openvswitch-switch-dpdk"
    )


def dpdk_extra_args(*, file_prefix: str, huge_dir: Path | None, no_huge_mem_mb: int = 1024) -> str:
    """The ``other_config:dpdk-extra`` string.

    With hugepages: ``--huge-dir=<private mount> --file-prefix=<lab> --no-pci``. Without: ``--no-huge --legacy-mem
    -m N`` (OVS would otherwise add ``--in-memory``, which EAL refuses together with ``--no-huge``).
    ``--no-pci`` keeps EAL from probing (and possibly grabbing) the host's real NICs.
    """
    if huge_dir is not None:
        return f"--huge-dir={huge_dir} --file-prefix={file_prefix} --no-pci"
    return f"--no-huge --legacy-mem -m {no_huge_mem_mb} --no-pci --file-prefix={file_prefix}"


def ovs_dpdk_other_config(
    *,
    file_prefix: str,
    huge_dir: Path | None,
    socket_mem_mb: int = 256,
    vhost_iommu_support: bool = True,
    pmd_maxsleep_us: int | None = 50,
    pmd_cpu_mask: str | None = None,
    no_huge_mem_mb: int = 1024,
) -> dict[str, str]:
    """``Open_vSwitch . other_config`` for the emulated OVS-DPDK, set before ovs-vswitchd starts.

    ``vhost-iommu-support=true`` is what the seed sets; QEMU's ``iommu_platform=on`` on the guest NIC is refused
    without it. ``pmd-maxsleep`` lets an idle PMD sleep instead of spinning a whole core (2-core machines).
    """
    cfg = {
        "dpdk-init": "true",
        "dpdk-extra": dpdk_extra_args(file_prefix=file_prefix, huge_dir=huge_dir, no_huge_mem_mb=no_huge_mem_mb),
        "vhost-iommu-support": "true" if vhost_iommu_support else "false",
    }
    if huge_dir is not None:
        cfg["dpdk-socket-mem"] = str(socket_mem_mb)
    if pmd_maxsleep_us is not None:
        cfg["pmd-maxsleep"] = str(pmd_maxsleep_us)
    if pmd_cpu_mask is not None:
        cfg["pmd-cpu-mask"] = pmd_cpu_mask
    return cfg


def vsctl_set_other_config(cfg: dict[str, str]) -> list[str]:
    """``ovs-vsctl`` arguments (after the ``ovs-vsctl --db=...`` prefix) that set ``cfg``; values are quoted."""
    return ["set", "Open_vSwitch", "."] + [f'other_config:{k}="{v}"' for k, v in cfg.items()]


DPDK_PMD_DIRS = tuple(sorted(Path("/usr/lib/x86_64-linux-gnu/dpdk").glob("pmds-*")))
#: driver library -> Debian package; a vdev needs its bus too (EAL otherwise says 'failed to parse device').
DPDK_DRIVER_PACKAGES = {
    "librte_bus_vdev": "librte-bus-vdev23",
    "librte_net_af_packet": "librte-net-af-packet23",
    "librte_net_tap": "librte-net-tap23",
    "librte_mempool_ring": "librte-mempool-ring23",
}


def missing_dpdk_drivers(
    needed: tuple[str, ...] = ("librte_bus_vdev", "librte_net_af_packet", "librte_mempool_ring"),
    *,
    pmd_dirs: tuple[Path, ...] | None = None,
) -> list[str]:
    """Debian packages to install for the DPDK plugins ``needed`` (Debian's DPDK is shared-linked: PMDs are plugins
    loaded from ``pmds-<abi>/``; a missing one surfaces only as ``EAL: failed to parse device "net_af_packet0"``)."""
    dirs = DPDK_PMD_DIRS if pmd_dirs is None else pmd_dirs
    missing = []
    for lib in needed:
        if not any(any(d.glob(f"{lib}.so*")) for d in dirs):
            missing.append(DPDK_DRIVER_PACKAGES.get(lib, lib))
    return missing


# ----------------------------------------------------------------------------------------------- runtime dir


def dpdk_runtime_dir(file_prefix: str, *, root: Path = DPDK_RUNTIME_ROOT) -> Path:
    """Where EAL (as root) keeps its config, memseg fbarrays and mp socket for ``--file-prefix``."""
    if not file_prefix or "/" in file_prefix or file_prefix in (".", ".."):
        raise ValueError(f"bad DPDK file prefix {file_prefix!r}")
    return root / file_prefix


def cleanup_dpdk_runtime(file_prefix: str, *, root: Path = DPDK_RUNTIME_ROOT, remove_root: bool = False) -> list[Path]:
    """Remove ``/var/run/dpdk/<prefix>`` (call after the DPDK process exited); returns what was removed.

    ``remove_root`` also removes ``/var/run/dpdk`` when it is left empty: pass it when the directory did not exist
    before the lab, so the machine afterwards equals the machine before.
    """
    removed: list[Path] = []
    path = dpdk_runtime_dir(file_prefix, root=root)
    if path.exists():
        shutil.rmtree(path)
        removed.append(path)
    if remove_root and root.is_dir() and not any(root.iterdir()):
        root.rmdir()
        removed.append(root)
    return removed


# ----------------------------------------------------------------------------------------------- mounts


def _unescape_mount(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts_at(path: Path) -> list[tuple[str, str]]:
    """(fstype, options) of every mount at ``path`` in this mount namespace (stacked mounts give several)."""
    target = str(Path(path).resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        if len(fields) >= 5 and _unescape_mount(fields[4]) == target:
            post_fields = post.split()
            found.append((post_fields[0], post_fields[2] if len(post_fields) > 2 else ""))
    return found


def mount_hugetlbfs(mountpoint: Path, *, page_size_kb: int = 2048, size_mb: int | None = None) -> None:
    """Mount a private hugetlbfs (``pagesize`` set, optionally capped) at ``mountpoint``; refuses to stack mounts."""
    mountpoint = Path(mountpoint)
    mountpoint.mkdir(parents=True, exist_ok=True)
    if mounts_at(mountpoint):
        raise LabStateError(f"{mountpoint} is already a mount point: {mounts_at(mountpoint)}")
    opts = f"pagesize={page_size_kb}K,mode=0700"
    if size_mb is not None:
        opts += f",size={size_mb}M"
    _run(["mount", "-t", "hugetlbfs", "-o", opts, "nodev", str(mountpoint)], what="mounting hugetlbfs")


def unmount_hugetlbfs(mountpoint: Path, *, timeout: float = 10.0) -> bool:
    """Unmount our hugetlbfs at ``mountpoint`` (retrying while a dying DPDK process still holds page files)."""
    mountpoint = Path(mountpoint)
    if not any(fs == "hugetlbfs" for fs, _ in mounts_at(mountpoint)):
        return False
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return True
        if time.monotonic() > deadline:
            raise LabStateError(f"umount {mountpoint} failed: {proc.stderr.strip()}")
        time.sleep(0.2)


# ----------------------------------------------------------------------------------------------- hugepages


def hugepages_path(page_size_kb: int = 2048) -> Path:
    return HUGEPAGES_SYSFS / f"hugepages-{page_size_kb}kB" / "nr_hugepages"


def read_nr_hugepages(page_size_kb: int = 2048) -> int:
    path = hugepages_path(page_size_kb)
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        raise LabStateError(f"this kernel has no {page_size_kb} kB hugepages ({path} is missing)")


def write_nr_hugepages(count: int, page_size_kb: int = 2048) -> int:
    """Ask the kernel for ``count`` pages; returns how many it actually has (fragmented memory may give fewer)."""
    hugepages_path(page_size_kb).write_text(f"{count}\n")
    return read_nr_hugepages(page_size_kb)


@dataclass
class HugepageLease:
    """Hugepages added for one lab plus the private hugetlbfs mount; :meth:`release` restores both.

    The journal (JSON beside the mount) holds ``previous`` so a ``down`` in another process restores exactly the
    count the machine had. Pages are added on top of what others reserved, never taken from them.
    """

    mountpoint: Path
    pages: int
    page_size_kb: int = 2048
    previous: int | None = None
    mounted: bool = False
    journal: Path | None = None

    @classmethod
    def acquire(
        cls, mountpoint: Path, pages: int, *, page_size_kb: int = 2048, journal: Path | None = None
    ) -> HugepageLease:
        """Reserve ``pages`` more pages and mount hugetlbfs at ``mountpoint``; undone on any failure."""
        mountpoint = Path(mountpoint).resolve()
        lease = cls(mountpoint=mountpoint, pages=pages, page_size_kb=page_size_kb,
                    journal=journal or mountpoint.with_name(mountpoint.name + ".journal.json"))
        lease.previous = read_nr_hugepages(page_size_kb)
        lease._save()
        try:
            got = write_nr_hugepages(lease.previous + pages, page_size_kb)
            if got < lease.previous + pages:
                raise LabStateError(
                    f"asked the kernel for {pages} more {page_size_kb} kB hugepages, got {got - lease.previous} "
                    "(memory too fragmented?); use the --no-huge fallback"
                )
            mount_hugetlbfs(mountpoint, page_size_kb=page_size_kb, size_mb=pages * page_size_kb // 1024)
            lease.mounted = True
            lease._save()
        except BaseException:
            lease.release()
            raise
        return lease

    @classmethod
    def from_journal(cls, journal: Path) -> HugepageLease | None:
        try:
            data = json.loads(Path(journal).read_text())
        except (FileNotFoundError, ValueError):
            return None
        data["mountpoint"] = Path(data["mountpoint"])
        data["journal"] = Path(journal)
        return cls(**data)

    def _save(self) -> None:
        if self.journal is not None:
            data = asdict(self)
            data["mountpoint"] = str(self.mountpoint)
            data.pop("journal")
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            self.journal.write_text(json.dumps(data) + "\n")

    def release(self, *, timeout: float = 15.0) -> None:
        """Unmount, give the pages back (to ``previous``), delete the journal; safe to call twice.

        A DPDK process that just exited may still hold its hugepage memfds for a moment after its pid looks gone
        (``/proc/PID/cmdline`` empties before the files are closed); pages still in use then become surplus, so the
        count is re-written until it reads back as ``previous`` or ``timeout`` passes.
        """
        errors = []
        try:
            unmount_hugetlbfs(self.mountpoint)
            self.mounted = False
            with contextlib.suppress(OSError):
                self.mountpoint.rmdir()
        except LabStateError as exc:
            errors.append(str(exc))
        if self.previous is not None:
            try:
                deadline = time.monotonic() + timeout
                got = write_nr_hugepages(self.previous, self.page_size_kb)
                while got != self.previous and time.monotonic() < deadline:
                    time.sleep(0.1)
                    got = write_nr_hugepages(self.previous, self.page_size_kb)
                if got != self.previous:
                    errors.append(f"nr_hugepages is {got} {timeout:g} s after restoring {self.previous} "
                                  "(pages still in use by a live process?)")
            except OSError as exc:
                errors.append(f"restoring nr_hugepages={self.previous}: {exc}")
        if errors:
            raise LabStateError("hugepage release: " + "; ".join(errors))
        if self.journal is not None:
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()


def _run(cmd: list[str], *, what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabStateError(f"{what}: {' '.join(cmd)} exited with rc={proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout

"""The hugepages layer for real on this machine: reserve 2 MiB pages at runtime, mount hugetlbfs, restore.

Needs root (it writes nr_hugepages and mounts); the previous nr_hugepages is put back and the
mount removed even when an assertion fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vdpalab.config import HugepagesSettings, load_lab
from vdpalab.hosts.local import LocalHost
from vdpalab.layers import Hugepages, LayerContext, LayerStatus, run_layer

pytestmark = [pytest.mark.selftest, pytest.mark.emulated]

ROOT = Path(__file__).resolve().parent.parent
SYSFS = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")


def read_int(name: str) -> int:
    return int((SYSFS / name).read_text())


def mounted_at(path: Path) -> str | None:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(path):
            return line
    return None


@pytest.fixture()
def restore_hugepages(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root: writes nr_hugepages and mounts hugetlbfs")
    if not (SYSFS / "nr_hugepages").exists():
        pytest.skip("no 2 MiB hugepages on this kernel")
    before = read_int("nr_hugepages")
    mount = tmp_path / "hugepages"
    yield before, mount
    if mounted_at(mount):
        subprocess.run(["umount", str(mount)], check=False)
    (SYSFS / "nr_hugepages").write_text(f"{before}\n")


def test_hugepages_reserve_mount_verify_and_restore(restore_hugepages: tuple[int, Path], tmp_path: Path) -> None:
    before, mount = restore_hugepages
    want = read_int("free_hugepages") + 4  # at least 4 pages must be reserved by up
    lab = load_lab(ROOT / "lab.toml")
    lab = lab.model_copy(
        update={"hugepages": HugepagesSettings(size="2M", count=want, mount=str(mount), reserve_at_runtime=True)}
    )
    host = LocalHost("local", command_timeout=30)
    layer = Hugepages(LayerContext(lab=lab, hosts={"host": host}, state_dir=tmp_path / "state"))

    outcome = run_layer(layer)
    assert outcome.status is LayerStatus.UP, outcome.reason
    assert outcome.changed
    assert outcome.commands_run == [
        f"host: echo {before + 4} > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        f"host: mkdir -p {mount}",
        f"host: mount -t hugetlbfs -o pagesize=2M nodev {mount}",
    ]
    assert read_int("nr_hugepages") == before + 4
    assert read_int("free_hugepages") >= want
    line = mounted_at(mount)
    assert line is not None and " hugetlbfs " in line and "pagesize=2M" in line
    assert any(e.command == "cat /proc/meminfo" for e in host.history.entries())  # verify read /proc/meminfo
    assert outcome.evidence is not None
    assert outcome.evidence.summary.endswith(f"(need {want}), hugetlbfs at {mount}")

    assert layer.up() is False  # idempotent: already up, nothing run

    layer.down()
    assert read_int("nr_hugepages") == before
    assert mounted_at(mount) is None
    assert not mount.exists()
    assert not layer.journal

"""Hugepages: the lab's page size and count are reserved, hugetlbfs is mounted, and /proc/meminfo agrees."""

from __future__ import annotations

import pytest

from tests_bringup.conftest import check_layer
from vdpalab.config import Lab
from vdpalab.parsers import parse
from vdpalab.session import LabSession

pytestmark = pytest.mark.bringup


def test_hugepages(lab: Lab, lab_session: LabSession, record) -> None:  # type: ignore[no-untyped-def]
    check_layer(lab_session, "hugepages", record)
    host = lab_session.hosts["host"]
    size_kb = lab.hugepages.size_kb
    total = int(host.read_text(f"/sys/kernel/mm/hugepages/hugepages-{size_kb}kB/nr_hugepages").strip())
    print(f"{size_kb} kB pages reserved: {total} (lab wants {lab.hugepages.count})")
    assert total >= lab.hugepages.count, f"{total} pages of {size_kb} kB reserved, lab.toml wants {lab.hugepages.count}"
    meminfo = parse("meminfo", host.read_text("/proc/meminfo"))
    assert "HugePages_Total" in meminfo.fields, "/proc/meminfo has no HugePages_Total line"
    mounts = host.read_text("/proc/mounts")
    assert " hugetlbfs " in mounts, "no hugetlbfs mount in /proc/mounts"

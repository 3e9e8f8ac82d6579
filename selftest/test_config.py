"""The lab file loader: valid labs load into frozen models, and every bad file gives one exact line.

Each file in ``data/bad_labs/`` starts with one ``# expect: MESSAGE`` line per problem it holds;
loading it must raise ``LabConfigError`` whose lines are exactly ``PATH: MESSAGE``, every problem
in order (nothing cut to "and 1 more problem"). The CLI and pytest print those lines and nothing
else (no traceback).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from vdpalab.config import Lab, load_lab, parse_lab
from vdpalab.errors import LabConfigError

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent
BAD_LABS = sorted((Path(__file__).parent / "data" / "bad_labs").glob("*.toml"))


def expected_messages(path: Path) -> list[str]:
    lines = [ln[len("# expect: "):] for ln in path.read_text().splitlines() if ln.startswith("# expect: ")]
    assert lines, f"{path} lacks its '# expect:' header"
    return lines


def expected_message(path: Path) -> str:
    (only,) = expected_messages(path)
    return only


def test_there_are_enough_bad_labs() -> None:
    assert len(BAD_LABS) >= 45


@pytest.mark.parametrize("path", BAD_LABS, ids=lambda p: p.stem)
def test_bad_lab_gives_its_exact_lines(path: Path) -> None:
    with pytest.raises(LabConfigError) as info:
        load_lab(str(path))
    assert str(info.value).split("\n") == [f"{path}: {m}" for m in expected_messages(path)]
    assert info.value.lines() == str(info.value).split("\n")


def test_check_lab_prints_every_problem_of_every_file() -> None:
    many = [p for p in BAD_LABS if len(expected_messages(p)) > 1]
    assert len(many) >= 3
    vdpalab = Path(sys.executable).parent / "vdpalab"
    proc = subprocess.run([str(vdpalab), "check-lab", *map(str, many), "lab.toml"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 2
    want = [f"{p}: {m}" for p in many for m in expected_messages(p)]
    assert proc.stdout.splitlines()[:-1] == want and proc.stdout.splitlines()[-1].startswith("lab.toml: ok:")
    assert "more problem" not in proc.stdout and proc.stderr == ""


def test_a_guest_may_use_the_vdpa_devices_own_mac() -> None:
    """The lab 'says otherwise' by giving the vdpa device its own MAC: the guest uses that one."""
    text = (BAD_LABS[0].parent / "60_guest_mac_not_the_vdpa_devices.toml").read_text()
    fixed = text.replace('mac = "00:11:22:33:44:00"\nip', 'mac = "02:00:00:00:00:01"\nip')
    lab = parse_lab(tomllib.loads(fixed))
    assert lab.guest[0].mac == lab.vdpa.devices[0].mac == "02:00:00:00:00:01"


@pytest.mark.parametrize("name", ["lab.toml", "labs/cx6dx-qemu.toml", "labs/cx6dx-libvirt.toml"])
def test_shipped_labs_load(name: str) -> None:
    lab = load_lab(ROOT / name)
    assert isinstance(lab, Lab)
    assert [g.address for g in lab.guest] == ["192.168.30.153", "192.168.30.159"]
    assert [b.name for b in lab.bridge] == ["br30-ovs", "br31-ovs"]


def test_seed_lab_is_transcribed_exactly() -> None:
    lab = load_lab(ROOT / "labs/cx6dx-qemu.toml")
    assert [(pf.name, pf.pci, pf.num_vfs, pf.vf_macs, pf.representors) for pf in lab.pf] == [
        ("ens2f0", "0000:07:00.0", 1, ["00:11:22:33:44:00"], ["ens2f0_0"]),
        ("ens2f1", "0000:07:00.1", 1, ["00:11:22:33:44:10"], ["ens2f1_0"]),
    ]
    assert [pf.vf_pcis for pf in lab.pf] == [["0000:07:00.2"], ["0000:07:01.2"]]
    assert (lab.hugepages.size, lab.hugepages.count, lab.hugepages.mount) == ("1G", 16, "/dev/hugepages")
    assert {"intel_iommu=on", "iommu=pt", "pci=realloc", "hugepages=16"} <= set(lab.kernel.required_cmdline)
    ovs = lab.ovs
    assert (ovs.dpdk, ovs.hw_offload, ovs.tc_policy, ovs.socket_mem, ovs.vhost_iommu_support) == (
        True,
        True,
        "none",
        "1024,1024",
        True,
    )
    assert ovs.dpdk_devargs == [
        "0000:07:00.0,representor=[0],dv_flow_en=1,dv_esw_en=1,dv_xmeta_en=0",
        "0000:07:00.1,representor=[0],dv_flow_en=1,dv_esw_en=1,dv_xmeta_en=0",
    ]
    br30 = lab.bridge[0]
    assert (br30.uplink.name, br30.uplink.type, br30.uplink.options) == (
        "ens2f0",
        "dpdk",
        {"dpdk-devargs": "0000:07:00.0"},
    )
    assert br30.representors[0].options == {"dpdk-devargs": "0000:07:00.0,representor=[0]"}
    assert [(g.name, g.vdpa_device, g.mac) for g in lab.guest] == [
        ("c77g153", "/dev/vhost-vdpa-0", "00:11:22:33:44:00"),
        ("c77g159", "/dev/vhost-vdpa-1", "00:11:22:33:44:10"),
    ]
    assert lab.guest[0].device_options == ["page-per-vq=on", "iommu_platform=on", "disable-legacy=on"]
    libvirt = load_lab(ROOT / "labs/cx6dx-libvirt.toml")
    assert {g.kind for g in libvirt.guest} == {"libvirt"}


def test_models_are_frozen() -> None:
    lab = load_lab(ROOT / "lab.toml")
    with pytest.raises(ValidationError):
        lab.host.port = 2222  # type: ignore[misc]


def test_relative_paths_resolve_against_the_lab_file(tmp_path: Path) -> None:
    lab_file = tmp_path / "sub" / "my.toml"
    lab_file.parent.mkdir()
    lab_file.write_text((ROOT / "lab.toml").read_text())
    lab = load_lab(lab_file)
    assert lab.resolve(lab.host.key_file) == lab_file.parent / ".state/emu/id_ed25519"
    assert lab.resolve("/abs/key") == Path("/abs/key")


def test_missing_file_is_one_line() -> None:
    with pytest.raises(LabConfigError, match=r"^nope\.toml: file not found$"):
        load_lab("nope.toml")


def test_check_lab_cli_prints_one_line_and_no_traceback() -> None:
    bad = BAD_LABS[0]
    vdpalab = Path(sys.executable).parent / "vdpalab"
    proc = subprocess.run([str(vdpalab), "check-lab", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stdout.strip() == f"{bad}: {expected_message(bad)}"
    assert "Traceback" not in proc.stderr


def test_pytest_with_bad_lab_is_a_usage_error() -> None:
    bad = BAD_LABS[7]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "datapath", "--lab", str(bad), "-p", "no:cacheprovider", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert f"{bad}: {expected_message(bad)}" in out
    assert "Traceback" not in out

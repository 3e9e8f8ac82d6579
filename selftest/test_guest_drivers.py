"""Guest kinds: each kind is one pydantic model and one driver, and the guests layer only talks to the driver.

Proves that every kind the lab schema accepts has a driver, that a driver put into the registry is what the
layer runs (so a new kind needs no new branch anywhere), and that what a driver says the host needs is what
preflight and hugepages check.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from vdpalab import guests
from vdpalab.config import GUEST_MODELS, Lab, LibvirtGuest, NetnsGuest, QemuGuest, VdpaNetnsGuest, load_lab
from vdpalab.guests import DRIVERS, GuestRun, driver_for
from vdpalab.guests.netns import NetnsDriver
from vdpalab.layers import Guests, Hugepages, LayerContext
from vdpalab.testing.scripted import ScriptedHost

ROOT = Path(__file__).resolve().parent.parent


def test_every_guest_kind_has_a_driver_and_a_model() -> None:
    assert set(GUEST_MODELS) == set(DRIVERS)
    assert {kind: model for kind, model in GUEST_MODELS.items()} == {
        "qemu": QemuGuest, "libvirt": LibvirtGuest, "netns": NetnsGuest, "vdpa-netns": VdpaNetnsGuest,
    }
    for kind, driver in DRIVERS.items():
        assert driver.kind == kind


def test_lab_files_load_each_guest_as_its_kinds_model() -> None:
    assert {type(g) for g in load_lab(ROOT / "lab.toml").guest} == {NetnsGuest}
    assert {type(g) for g in load_lab(ROOT / "labs" / "emulated-qemu.toml").guest} == {QemuGuest}
    assert {type(g) for g in load_lab(ROOT / "labs" / "cx6dx-libvirt.toml").guest} == {LibvirtGuest}
    assert not hasattr(load_lab(ROOT / "lab.toml").guest[0], "qemu_binary")  # a netns guest has no VM fields


def test_an_unknown_kind_has_no_driver() -> None:
    guest = load_lab(ROOT / "lab.toml").guest[0]
    fake = guest.model_copy(update={"kind": "lxc"})
    with pytest.raises(LookupError, match=r"no driver for kind 'lxc' \(known: libvirt, netns, qemu, vdpa-netns\)"):
        driver_for(fake)


class RecordingDriver(NetnsDriver):
    """A stand-in kind: records what the layer asked, starts nothing."""

    calls: ClassVar[list[str]] = []
    runtime_files: ClassVar[str] = "recording"

    def runtime_dir(self) -> str | None:
        return "/run/recording"

    def probe(self) -> GuestRun:
        self.calls.append(f"probe {self.guest.name}")
        return GuestRun(False)

    def start_plan(self, run: GuestRun) -> list:
        return [self.ctx.planned(["start-guest", self.guest.name], "the recording kind")]

    def wait_ready(self) -> float:
        self.calls.append(f"wait {self.guest.name}")
        return 0.0


def test_the_layer_runs_whatever_driver_the_registry_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lab = load_lab(ROOT / "lab.toml")
    single = lab.model_copy(update={"guest": lab.guest[:1]})
    monkeypatch.setitem(guests.DRIVERS, "netns", RecordingDriver)
    RecordingDriver.calls = []
    recorded = ROOT / "selftest" / "data" / "recorded" / "13_json_netns_lab"  # this lab's own guest, ip -j
    guest = ScriptedHost.from_pairs([
        ("ip -j link show dev eth0", (recorded / "guest-ip-j-link-show-eth0-json.txt").read_text()),
        ("ip -j -4 addr show dev eth0", (recorded / "guest-ip-j-4-addr-show-eth0-json.txt").read_text()),
    ])
    host = ScriptedHost.from_pairs([("mkdir -p /run/recording", ""), ("start-guest c77g153", "")])
    layer = Guests(LayerContext(lab=single, hosts={"host": host, "c77g153": guest}, state_dir=tmp_path))
    assert [c.command for c in layer.plan_host(layer.fresh_state())] == [
        "mkdir -p /run/recording", "start-guest c77g153",
    ]
    assert layer.up() is True
    host.assert_done()
    guest.assert_done()
    assert RecordingDriver.calls == ["probe c77g153", "wait c77g153"]


def test_hugepages_and_preflight_ask_the_driver_what_a_guest_needs(tmp_path: Path) -> None:
    lab: Lab = load_lab(ROOT / "labs" / "cx6dx-qemu.toml")
    seed = [driver_for(g).needs() for g in lab.guest]
    assert [(n.qemu_binary, sorted(n.netdev_backends), n.hugepages_mib) for n in seed] == [
        ("/usr/local/bin/qemu-system-x86_64", ["vhost-vdpa"], 0)
    ] * 2  # the seed's vDPA guests run on QEMU's own RAM
    libvirt = load_lab(ROOT / "labs" / "cx6dx-libvirt.toml")
    assert all(driver_for(g).needs().libvirt for g in libvirt.guest)
    assert not any(driver_for(g).needs().libvirt for g in lab.guest)
    emulated_qemu = load_lab(ROOT / "labs" / "emulated-qemu.toml")
    assert [sorted(driver_for(g).needs().netdev_backends) for g in emulated_qemu.guest] == [["vhost-user"]] * 2
    assert [driver_for(g).needs().hugepages_mib for g in emulated_qemu.guest] == [0, 0]  # memfd, not hugetlbfs
    file_backed = emulated_qemu.model_copy(
        update={"guest": [g.model_copy(update={"memory_backend": "file"}) for g in emulated_qemu.guest]}
    )
    need, why = Hugepages(LayerContext(lab=file_backed, hosts={}, state_dir=tmp_path)).needed_pages()
    assert why[-2:] == ["guest c77g153 512 MiB = 256 page(s)", "guest c77g159 512 MiB = 256 page(s)"]
    assert need >= 512


def test_a_libvirt_guest_on_hugepages_needs_them_too() -> None:
    libvirt = load_lab(ROOT / "selftest" / "data" / "labs" / "libvirt-both-ways.toml")
    defined = next(g for g in libvirt.guest if g.libvirt is None or g.libvirt.domain == "define")
    assert driver_for(defined.model_copy(update={"memory_backend": "file"})).needs().hugepages_mib == defined.memory_mib
    assert driver_for(defined.model_copy(update={"memory_backend": "memfd"})).needs().hugepages_mib == 0

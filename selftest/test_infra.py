"""The infrastructure interface: every emulated flavour has a class that implements it, a hardware lab has none.

Proves that the registry and the lab schema agree on the flavours, that each flavour's class offers what
``vdpalab.control`` and the session call (without building anything), and that the session and control reach
the emulated labs only through ``vdpalab.infra``.
"""

from __future__ import annotations

import ast
import importlib
import typing
from pathlib import Path

import pytest

from vdpalab.config import EmulatedSettings, load_lab
from vdpalab.errors import LabStateError
from vdpalab.infra import INFRASTRUCTURES, Infrastructure, has_infrastructure, infrastructure_for

ROOT = Path(__file__).resolve().parent.parent


def test_every_flavour_of_the_schema_has_an_infrastructure() -> None:
    flavours = typing.get_args(EmulatedSettings.model_fields["flavour"].annotation)
    assert set(flavours) == set(INFRASTRUCTURES)


@pytest.mark.parametrize("flavour", sorted(INFRASTRUCTURES))
def test_each_infrastructure_class_offers_the_interface(flavour: str) -> None:
    module_name, _, class_name = INFRASTRUCTURES[flavour].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    members = [m for m in vars(Infrastructure) if not m.startswith("_")] + ["provides_guests"]
    missing = [m for m in members if not hasattr(cls, m)]
    assert missing == [], f"{cls.__name__} lacks {missing}"
    assert isinstance(cls.provides_guests, bool)


def test_the_netns_lab_provides_its_guests_and_the_qemu_lab_does_not() -> None:
    netns = infrastructure_for(load_lab(ROOT / "lab.toml"))
    assert netns is not None and netns.provides_guests is True
    qemu = infrastructure_for(load_lab(ROOT / "labs" / "emulated-qemu.toml"))
    assert qemu is not None and qemu.provides_guests is False


def test_a_hardware_lab_has_no_infrastructure() -> None:
    lab = load_lab(ROOT / "labs" / "cx6dx-qemu.toml")
    assert not has_infrastructure(lab) and infrastructure_for(lab) is None
    from vdpalab import control

    with pytest.raises(LabStateError, match="is a hardware lab: there is no infrastructure to build"):
        control.builder_for(lab)


def test_session_and_control_reach_emulation_only_through_infra() -> None:
    for module in ("session.py", "control.py", "infra.py", "bringup.py"):
        tree = ast.parse((ROOT / "vdpalab" / module).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not [m for m in imported if m.startswith("vdpalab.emulated")], f"vdpalab/{module} imports emulation"

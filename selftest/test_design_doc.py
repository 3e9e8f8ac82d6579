"""docs/DESIGN.md stays true: every path it names exists, and every room of vdpalab/ is in its table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "DESIGN.md"
PATH_RE = re.compile(r"`((?:vdpalab|fixtures|selftest|benchmarks|tests_datapath|tests_bringup|docs)/[^`*<>]*)`")


def named_paths(text: str) -> set[str]:
    return set(PATH_RE.findall(text))


def test_the_path_finder_sees_paths() -> None:
    assert named_paths("a `vdpalab/x.py` and `fixtures/` but not `vdpalab/<kind>.py` or `other/y`") == {
        "vdpalab/x.py", "fixtures/",
    }


def test_every_path_the_design_doc_names_exists() -> None:
    paths = named_paths(DOC.read_text())
    assert len(paths) > 25
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_every_room_of_the_package_is_in_the_table() -> None:
    text = DOC.read_text()
    table = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    rooms = sorted(
        f"vdpalab/{p.name}" + ("/" if p.is_dir() else "")
        for p in (ROOT / "vdpalab").iterdir()
        if p.name not in ("__init__.py", "__pycache__") and (p.is_dir() or p.suffix == ".py")
    )
    assert len(rooms) > 15
    assert [room for room in rooms if f"`{room}`" not in table] == []

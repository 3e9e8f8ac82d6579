"""The layout holds: no import circles, no test code in the library, no emulation in the hardware layers.

Walks every module's imports with ``ast`` (top-level, inside functions and under ``TYPE_CHECKING`` alike: a
circle that only typing or a lazy import hides is still a circle) and proves: the import graph of ``vdpalab``
and ``fixtures`` has no cycle; only ``vdpalab.testing`` itself imports ``vdpalab.testing`` (the self-tests and
benchmarks may); the hardware layers and the guest drivers never import ``vdpalab.emulated`` and never compare
a ``kind``. The detectors are checked on small made-up trees first, so each check can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vdpalab", "fixtures")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules ``path`` imports, wherever the import statement is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if m in known and m != name}


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    mods = modules(root, packages)
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def importers_of_testing(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    return {
        name: sorted(d for d in deps if d.startswith("vdpalab.testing"))
        for name, deps in graph.items()
        if not name.startswith("vdpalab.testing") and any(d.startswith("vdpalab.testing") for d in deps)
    }


def kind_comparisons(path: Path) -> list[str]:
    """``x.kind == ...`` / ``x.kind in ...`` in a module: a branch on what kind a lab or guest is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.name}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(side, ast.Attribute) and side.attr == "kind" for side in [node.left, *node.comparators])
    ]


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# --- the detectors can fail ---------------------------------------------------------------------------------


def test_the_detectors_find_what_they_look_for(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "vdpalab/__init__.py": "",
        "vdpalab/a.py": "from vdpalab import b\n",
        "vdpalab/b.py": "def f():\n    from vdpalab.c import x\n",
        "vdpalab/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vdpalab.a import y\n",
        "vdpalab/d.py": "from .testing.scripted import ScriptedHost\n",
        "vdpalab/testing/__init__.py": "",
        "vdpalab/testing/scripted.py": "from vdpalab.d import z\n",
        "vdpalab/layers/bad.py": "if lab.lab.kind == 'emulated':\n    pass\nok = [g for g in gs if g.kinds]\n",
    })
    graph = import_graph(tmp_path, ("vdpalab",))
    assert graph["vdpalab.a"] == {"vdpalab.b"}
    assert cycles(graph) == [["vdpalab.a", "vdpalab.b", "vdpalab.c"], ["vdpalab.d", "vdpalab.testing.scripted"]]
    assert importers_of_testing(graph) == {"vdpalab.d": ["vdpalab.testing.scripted"]}
    assert kind_comparisons(tmp_path / "vdpalab/layers/bad.py") == ["bad.py:1: lab.lab.kind == 'emulated'"]


# --- the real tree -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    assert len(graph) > 50, "the walk found too few modules to mean anything"
    assert cycles(graph) == []


def test_no_library_module_imports_test_code(graph: dict[str, set[str]]) -> None:
    assert importers_of_testing(graph) == {}


def test_hardware_layers_and_guest_drivers_know_nothing_of_emulation(graph: dict[str, set[str]]) -> None:
    hardware = [m for m in graph if m.startswith(("vdpalab.layers", "vdpalab.guests")) or m == "vdpalab.qemu"]
    assert len(hardware) >= 12
    leaks = {m: sorted(d for d in graph[m] if d.startswith("vdpalab.emulated")) for m in hardware}
    assert {m: d for m, d in leaks.items() if d} == {}


def test_no_kind_branches_in_layers_or_guest_drivers() -> None:
    files = sorted((ROOT / "vdpalab" / "layers").glob("*.py")) + sorted((ROOT / "vdpalab" / "guests").glob("*.py"))
    assert len(files) >= 12
    assert [hit for path in files for hit in kind_comparisons(path)] == []


# Modules other code runs as ``python -m`` (the emulated-qemu lab's ovs-ctl script, the screenshot script): each is
# the first thing its interpreter imports, so an import circle that another import order hides breaks them.
ENTRY_MODULES = ("vdpalab.emulated.qemu_lab", "vdpalab.reports.browser")


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_each_entry_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    import subprocess
    import sys

    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-1500:]

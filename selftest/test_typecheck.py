"""The type check is a gate: mypy with the project's settings passes on vdpalab/ and fixtures/, `make test`
runs it, and the same settings report a type error introduced into the library or the fixtures.

The check runs on a copy of the tree with one wrong return type planted in each of the two packages, plus an
escape hatch without its error code and one that silences nothing: mypy must report exactly those four errors (the
rest of the copy, i.e. today's tree, being clean), so a bare or stale ``# type: ignore`` cannot hide an error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (file, the text appended to it, the error mypy must report for it)
PLANTED = (
    ("vdpalab/results.py",
     '\n\ndef _planted_error(result: Result) -> float:\n    return result.unit\n',
     r'Incompatible return value type \(got "str", expected "float"\)'),
    ("fixtures/lab_session.py",
     '\n\ndef _planted_error(config: pytest.Config) -> int:\n    return run_id_of(config)\n',
     r'Incompatible return value type \(got "str", expected "int"\)'),
    ("vdpalab/parsers/_common.py",
     '\n\n_PLANTED_BARE: int = "x"  # type: ignore\n',
     r'"type: ignore" comment without error code'),
    ("fixtures/lab_session.py",
     '\n\n_PLANTED_UNUSED: int = 1  # type: ignore[assignment]\n',
     r'Unused "type: ignore" comment'),
)


def _mypy_settings() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def test_settings_cover_the_library_and_fixtures_without_escape_hatches() -> None:
    settings = _mypy_settings()
    assert settings["files"] == ["vdpalab", "fixtures"]
    assert not settings.get("ignore_errors") and "overrides" not in settings, "no module may opt out of the check"
    assert settings.get("warn_unused_ignores") and "ignore-without-code" in settings.get("enable_error_code", [])
    makefile = (ROOT / "Makefile").read_text()
    test_target = re.search(r"^test:.*?\n((?:\t.*\n)+)", makefile, re.M)
    assert test_target and ".venv/bin/mypy" in test_target.group(1), "make test must run mypy"


def test_a_type_error_introduced_in_the_tree_is_reported(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("vdpalab", "fixtures"):
        shutil.copytree(ROOT / package, tree / package, ignore=ignore)  # copy2: mtimes kept, the cache stays valid
    shutil.copy2(ROOT / "pyproject.toml", tree / "pyproject.toml")
    if (ROOT / ".mypy_cache").is_dir():  # `make test` ran mypy just before: only the planted files are rechecked
        shutil.copytree(ROOT / ".mypy_cache", tree / ".mypy_cache")
    lines: list[int] = []
    for rel, text, _ in PLANTED:
        path = tree / rel
        after = path.read_text() + text
        path.write_text(after)
        lines.append(len(after.splitlines()))  # the planted line is the file's last (when planted)
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=tree, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    errors = [ln for ln in out.splitlines() if ": error: " in ln]
    assert done.returncode == 1, out
    for (rel, _, message), line in zip(PLANTED, lines, strict=True):
        assert any(ln.startswith(f"{rel}:{line}: error: ") and re.search(message, ln) for ln in errors), out
    assert len(errors) == len(PLANTED), "the tree itself has type errors (run `make typecheck`):\n" + out

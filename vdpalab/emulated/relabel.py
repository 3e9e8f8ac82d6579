"""A copy of an emulated lab file under another name, prefix and state dir (self-tests, benchmarks).

Self-tests and benchmarks must never disturb a lab someone is using (the default ``emu``), so
they build a renamed copy: every ``<prefix>-<name>-`` (namespaces) becomes
``<prefix>-<new name>-``, the state dir (and the key, known_hosts and hugepage paths under it)
moves to ``state_dir``, and ``[lab] name`` changes. Everything else (addresses, bridges, guests,
traffic profiles) stays as in the original.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from vdpalab.config import Lab, load_lab
from vdpalab.errors import LabStateError


def relabel_lab_file(source: str | Path, dest_dir: str | Path, name: str, state_dir: str | Path | None = None) -> Path:
    """Write ``dest_dir/<name>.toml``: ``source`` renamed to ``name``, with its state under ``state_dir``.

    ``state_dir`` defaults to ``dest_dir/state``; keep it short (OVS's unix sockets live in it).
    """
    src = Path(source)
    text = src.read_text()
    data = tomllib.loads(text)
    emulated = data.get("emulated")
    if not isinstance(emulated, dict):
        raise LabStateError(f"{src}: not an emulated lab (no [emulated] table)")
    old_name = data["lab"]["name"]
    prefix = emulated.get("prefix", "vdpalab")
    old_state = emulated.get("state_dir", ".state")
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    new_state = Path(state_dir) if state_dir is not None else dest / "state"
    text = text.replace(f"{prefix}-{old_name}-", f"{prefix}-{name}-")
    # the state dir as written (relative paths are relative to the source file's directory)
    text = re.sub(rf'"{re.escape(old_state)}(?=[/"])', f'"{new_state.absolute()}', text)
    text, count = re.subn(
        r'^(\[lab\][^\[]*?^name\s*=\s*)"[^"]*"', rf'\g<1>"{name}"', text, count=1, flags=re.MULTILINE | re.DOTALL
    )
    if count != 1:
        raise LabStateError(f"{src}: could not find [lab] name")
    out = dest / f"{name}.toml"
    out.write_text(text)
    return out


def relabeled_lab(source: str | Path, dest_dir: str | Path, name: str, state_dir: str | Path | None = None) -> Lab:
    """``relabel_lab_file`` then ``load_lab``."""
    return load_lab(relabel_lab_file(source, dest_dir, name, state_dir))

"""The few facts the layers read from tool output, on top of the strict parsers in ``vdpalab.parsers``.

Parsing is ``vdpalab.parsers``' job (a ``ParseError`` there breaks the layer with the line it
could not read); what is here are the layers' own comparisons (sizes, versions, required kernel
arguments) and thin wrappers that turn an empty output into "nothing" where that is what an
empty output means (no vDPA devices yet, no bridges).
"""

from __future__ import annotations

import json
import re
from typing import Any

from vdpalab.parsers import procfs

_SIZE_RE = re.compile(r"^(\d+)\s*([KMGT]?)(i?B)?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def size_bytes(text: str) -> int | None:
    """``1G``, ``1GB``, ``1024M``, ``1048576K``, ``2MiB`` -> bytes; None when it is not a size."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        return None
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def version_tuple(text: str) -> tuple[int, ...]:
    """The leading dotted numbers of a version string: ``5.11.11-1.el8.elrepo.x86_64`` -> (5, 11, 11)."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if not m:
        return ()
    return tuple(int(x) for x in m.group(1).split("."))


def version_at_least(have: str, want: str) -> bool:
    a, b = version_tuple(have), version_tuple(want)
    if not a:
        return False
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


# --- /proc/cmdline ---------------------------------------------------------------------------------------

_SIZE_ARGS = {"hugepagesz", "default_hugepagesz"}


def cmdline_missing(text: str, required: list[str]) -> list[str]:
    """Required arguments absent from the /proc/cmdline ``text``.

    Sizes are normalised (``default_hugepagesz=1GB`` counts as ``=1G``), and ``hugepages=N`` is
    satisfied by any count >= N; everything else must appear as written (a bare flag as a flag).
    """
    args = procfs.parse_cmdline(text)
    missing = []
    for req in required:
        key, sep, want = req.partition("=")
        values = [v for v in args.values(key) if v is not None]
        if not sep:
            ok = args.has_flag(key)
        elif key in _SIZE_ARGS:
            ok = size_bytes(want) is not None and any(size_bytes(v) == size_bytes(want) for v in values)
        elif key == "hugepages" and want.isdigit():
            ok = any(v.isdigit() and int(v) >= int(want) for v in values)
        else:
            ok = want in values
        if not ok:
            missing.append(req)
    return missing


def lsmod_modules(text: str) -> set[str]:
    """Loaded module names (an empty ``lsmod | grep`` is no modules)."""
    return set(procfs.parse_lsmod(text).modules) if text.strip() else set()


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None

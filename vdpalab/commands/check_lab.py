"""``vdpalab check-lab FILE``: validate a lab file and print a one-line verdict."""

from __future__ import annotations

import argparse

from vdpalab.config import load_lab
from vdpalab.errors import LabConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check-lab",
        help="validate a lab file (lab.toml) and summarise it",
        description="Load FILE with the lab schema and check its cross-references. A bad file gives one line per "
        "problem, every problem: FILE: KEY: problem (exit 2).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="lab file(s) to check")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            lab = load_lab(path)
        except LabConfigError as exc:
            print("\n".join(exc.lines()))
            status = 2
            continue
        guests = ", ".join(f"{g.name} ({g.kind}, {g.ip})" for g in lab.guest) or "none"
        bridges = ", ".join(b.name for b in lab.bridge) or "none"
        print(
            f"{path}: ok: lab {lab.lab.name!r} ({lab.lab.kind}), {len(lab.pf)} PF, bridges {bridges}; guests {guests}"
        )
    return status

"""``vdpalab lab up|down|status --lab FILE``: the emulated lab by hand (the test session does the same).

``up`` builds the infrastructure (namespaces, veth cables, OVS, sshd) and runs the bring-up
layers over SSH; on a lab that is already up it only probes. ``down`` restores what the layers
changed and removes the infrastructure, also after a crash. ``status`` probes without changing
anything (exit 0 when the lab is up, 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from vdpalab.config import Lab, load_lab
from vdpalab.errors import LabStateError
from vdpalab.logs import console_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lab",
        help="bring an emulated lab up or down, or show its state (root)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(title="actions", metavar="ACTION")
    for name, helptext in (
        ("up", "build the emulated lab and run the bring-up layers (idempotent)"),
        ("down", "restore what the layers changed and remove the emulated lab"),
        ("status", "probe the emulated lab (exit 0 when up, 1 otherwise)"),
    ):
        sub = actions.add_parser(name, help=helptext, description=helptext)
        sub.add_argument("--lab", default="lab.toml", metavar="FILE", help="lab file (default: lab.toml)")
        sub.add_argument("--json", action="store_true", help="print a JSON document instead of text")
        sub.add_argument(
            "-v", "--verbose", action="count", default=0, help="more progress on stderr (-v details, -vv every command)"
        )
        if name == "up":
            sub.add_argument(
                "--infra-only", action="store_true", help="build the infrastructure only, no bring-up layers"
            )
        sub.set_defaults(handler=run, action=name)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _print(args: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> None:
    text = json.dumps(data, indent=2, default=str) if args.json else "\n".join(lines)
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `vdpalab lab status | head -1`: the reader is gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run(args: argparse.Namespace) -> int:
    from vdpalab.infra import has_infrastructure

    lab = load_lab(args.lab)
    if not has_infrastructure(lab):
        raise LabStateError(f"{args.lab}: lab {lab.lab.name!r} is a hardware lab; `vdpalab lab` drives emulated labs")
    with console_logging(getattr(args, "verbose", 0), quiet=args.json):
        return _run(args, lab)


def _run(args: argparse.Namespace, lab: Lab) -> int:
    from vdpalab import control

    t0 = time.monotonic()
    if args.action == "up":
        with control.lab_up(lab, layers=not args.infra_only) as handle:
            elapsed = time.monotonic() - t0
            outcomes = {name: o.status.value for name, o in handle.outcomes.items()}
            reasons = {name: o.reason for name, o in handle.outcomes.items() if o.reason}
            broken = [name for name, status in outcomes.items() if status == "broken"]
            data = {
                "lab": lab.lab.name,
                "changed": handle.changed,
                "infrastructure": list(getattr(handle.build, "changed", [])),
                "layers": outcomes,
                "reasons": reasons,
                "bringup_available": handle.bringup_available,
                "seconds": round(elapsed, 3),
            }
            verb = "built" if handle.changed else "already up (probed only)"
            lines = [f"lab {lab.lab.name}: {verb} in {elapsed:.2f} s"]
            lines += [f"  layer {name}: {status}" + (f" ({reasons[name]})" if name in reasons else "")
                      for name, status in outcomes.items()]
            _print(args, data, lines)
            return 1 if broken else 0
    if args.action == "down":
        done = control.lab_down(lab)
        elapsed = time.monotonic() - t0
        lines = [f"lab {lab.lab.name}: down in {elapsed:.2f} s", *(f"  {line}" for line in done)]
        _print(args, {"lab": lab.lab.name, "done": done, "seconds": round(elapsed, 3)}, lines)
        return 0
    status = control.lab_status(lab)
    lines = [f"lab {status['lab']}: {status['state']}  (state dir {status['state_dir']})"]
    lines += [f"  namespace {ns}: {'present' if ok else 'missing'}" for ns, ok in status["namespaces"].items()]
    lines += [f"  {name}: {'pid ' + str(pid) if pid else 'not running'}" for name, pid in status["daemons"].items()]
    if status["journals"]:
        lines.append(f"  layers with changes to undo: {', '.join(status['journals'])}")
    lines += [f"  problem: {p}" for p in status["problems"]] if status["state"] == "partial" else []
    _print(args, status, lines)
    return 0 if status["up"] else 1

"""``vdpalab plan --lab FILE``: every command bring-up would run, per host and layer, without running any.

A dry run for an operator to review before touching a production host. Live (the default) it
connects and runs read-only probes (``cat``, ``devlink ... show``, ``ovs-vsctl list``...) to plan
only what is missing; ``--offline`` prints the whole plan for a fresh host without connecting.
``--down`` prints what ``down`` would run from the recorded journals instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from vdpalab.bringup import BringUp
from vdpalab.config import Lab, load_lab
from vdpalab.hosts.base import Host
from vdpalab.layers import LAYER_ORDER
from vdpalab.layers.base import PlannedCommand


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan",
        help="print every command bring-up would run on each host, without running any",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--lab", required=True, metavar="FILE", help="the lab file (lab.toml)")
    p.add_argument("--offline", action="store_true", help="plan from a fresh host; do not connect")
    p.add_argument("--down", action="store_true", help="print the teardown plan (from the journals) instead")
    p.add_argument("--state-dir", metavar="DIR", help="where bring-up keeps its journals (default: .state/LAB)")
    p.add_argument("--layer", action="append", choices=LAYER_ORDER, help="only these layers (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


class _OfflineHosts(dict[str, Host]):
    """Hosts for an offline plan: any attempt to use one is a bug, said loudly."""

    def __missing__(self, key: str) -> Host:
        raise RuntimeError(f"offline plan tried to reach host {key!r}")


def open_hosts(lab: Lab) -> Mapping[str, Host]:
    from vdpalab.hosts.factory import HostPool

    return HostPool(lab)


def host_label(lab: Lab, role: str) -> str:
    if role == "host":
        return f"{lab.host.name} (lab host, {lab.host.user}@{lab.host.address})"
    guest = lab.guest_by_name(role)
    return f"{role} (guest, {guest.ssh.user}@{guest.ssh.address})" if guest else role


def render(lab: Lab, plans: dict[str, list[PlannedCommand]], na: dict[str, str], out: TextIO, *, title: str) -> int:
    """Print the plan grouped by layer; each command with the host it runs on. Returns the command count."""
    total = 0
    print(f"# {title}: lab {lab.lab.name!r} ({lab.lab.kind})", file=out)
    for name, planned in plans.items():
        if name in na:
            print(f"\n## {name}: not applicable ({na[name]})", file=out)
            continue
        if not planned:
            print(f"\n## {name}: nothing to change", file=out)
            continue
        print(f"\n## {name}: {len(planned)} command(s)", file=out)
        current = None
        for cmd in planned:
            if cmd.host != current:
                current = cmd.host
                print(f"# on {host_label(lab, cmd.host)}", file=out)
            why = f"    # {cmd.why}" if cmd.why else ""
            print(f"{cmd.command}{why}", file=out)
            total += 1
    print(f"\n# {total} command(s) in all; none was run", file=out)
    return total


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    lab = load_lab(args.lab)
    state_dir = Path(args.state_dir) if args.state_dir else lab.state_dir
    hosts = _OfflineHosts() if (args.offline or args.down) else open_hosts(lab)
    try:
        bring = BringUp(lab, hosts, state_dir, layers=args.layer)
        na = bring.not_applicable()
        if args.down:
            plans, title = bring.down_plan(), "teardown plan (from the journals)"
        else:
            plans = bring.plan(offline=args.offline)
            title = "bring-up plan (fresh host, offline)" if args.offline else "bring-up plan (probed live)"
        if args.json:
            doc = {
                name: {"not_applicable": na.get(name), "commands": [c.__dict__ for c in planned]}
                for name, planned in plans.items()
            }
            json.dump({"lab": lab.lab.name, "title": title, "layers": doc}, out, indent=2)
            out.write("\n")
        else:
            render(lab, plans, na, out, title=title)
    finally:
        close = getattr(hosts, "close", None)
        if callable(close):
            close()
    return 0

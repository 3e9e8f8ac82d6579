"""The ``vdpalab`` console script: lab checks, parsers, lab control, plans, reports and history."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from vdpalab import __version__
from vdpalab.commands import COMMAND_MODULES
from vdpalab.errors import VdpaLabError

EPILOG = """\
examples:
  vdpalab check-lab lab.toml                 validate a lab file
  vdpalab plan --lab labs/cx6dx-qemu.toml    print every bring-up command without running it
  vdpalab lab up --lab lab.toml              build the emulated lab (root)
  ovs-ofctl -O OpenFlow14 dump-ports br30-ovs | vdpalab parse dump-ports | jq .
  vdpalab trend --metric throughput_gbps     regressions over the history (exit 1 on a regression)

The test suite itself runs with pytest:  pytest -m datapath --lab lab.toml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vdpalab",
        description="vdpa-lab: validation and benchmarking of vDPA datapaths (vhost_vdpa, OVS-DPDK offload).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vdpalab {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"vdpalab.commands.{name}")
        except ModuleNotFoundError as exc:  # a command whose module is not installed is simply absent
            if exc.name != f"vdpalab.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except VdpaLabError as exc:
        print(f"vdpalab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

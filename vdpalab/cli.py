"""The ``vdpalab`` console script: lab checks, parsers, lab control, plans, reports and history."""

from __future__ import annotations

import argparse
import importlib
import os
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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or (``only``) just the one subcommand about to run: each command module is
    imported when needed, so ``vdpalab parse`` does not pay for pandas, SQLAlchemy and matplotlib."""
    parser = argparse.ArgumentParser(
        prog="vdpalab",
        description="vdpa-lab: validation and benchmarking of vDPA datapaths (vhost_vdpa, OVS-DPDK offload).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vdpalab {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if only is not None and name.replace("_", "-") != only:
            continue
        try:
            module = importlib.import_module(f"vdpalab.commands.{name}")
        except ModuleNotFoundError as exc:  # a command whose module is not installed is simply absent
            if exc.name != f"vdpalab.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv else None
    known = {name.replace("_", "-") for name in COMMAND_MODULES}
    parser = build_parser(first if first in known else None)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except VdpaLabError as exc:  # one line per problem (a lab file may have several)
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"vdpalab: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vdpalab plan ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file that cannot be read or written: one line, never a traceback
        print(f"vdpalab: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``vdpalab parse KIND [FILE]``: parse a tool's output (FILE or stdin) and print it as JSON.

Exit status 0 with JSON (indent 2) on stdout; 2 with one line ``vdpalab parse: <message>`` on stderr
when the input is not understood or cannot be read (no traceback: the message names the line).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO

from vdpalab.errors import ParseError
from vdpalab.parsers import PARSERS


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``parse`` subcommand to the main CLI's subparsers."""
    kinds = "\n".join(f"  {k:<16} {s.reads}" for k, s in PARSERS.items())
    p = subparsers.add_parser(
        "parse",
        help="parse a tool's output (FILE or stdin) into JSON",
        description="Parse the output of one of the lab's tools and print it as JSON (keys are interface; "
        "null means the output did not say).",
        epilog="kinds:\n" + kinds,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=sorted(PARSERS), metavar="KIND", help="what the text is (see the list below)")
    p.add_argument("file", nargs="?", metavar="FILE", help="file to read (default: standard input)")
    p.set_defaults(handler=run)
    return p


def _read(path: str | None, stdin: IO[str]) -> str:
    if path is None or path == "-":
        return stdin.read()
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return f.read()


def run(args: argparse.Namespace, *, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
        stderr: IO[str] | None = None) -> int:
    """Handler of ``vdpalab parse``; returns the exit status."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    spec = PARSERS[args.kind]
    try:
        text = _read(args.file, stdin)
        result = spec.to_json(spec.parse(text))
    except ParseError as exc:
        print(f"vdpalab parse: {exc}", file=stderr)
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        print(f"vdpalab parse: cannot read {args.file or 'standard input'}: {exc}", file=stderr)
        return 2
    json.dump(result, stdout, indent=2, ensure_ascii=False)
    stdout.write("\n")
    return 0

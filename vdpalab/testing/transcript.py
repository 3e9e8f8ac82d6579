"""Transcripts: an ordered list of host commands with their recorded results, as a text file.

A transcript is what a layer is expected to run on one host and what the host answered,
so the same file both drives a ``ScriptedHost`` in the self-tests and documents, line by
line, the seed's procedure as the layers issue it. Format (one directive per line)::

    # a comment (blank lines are ignored too)
    $ uname -r                      the exact command expected next
    $~ qemu-system-x86_64 .* -daemonize    a command matched by a regular expression (fullmatch)
    | 5.11.11-1.el8.elrepo.x86_64    a line of stdout ("|" alone is an empty line)
    < ../../seed/meminfo-grep-huge.txt   stdout read from a file (relative to this transcript)
    ! some error text               a line of stderr
    rc 1                            the exit code (default 0)
    raise unreachable               the transport fails instead (or: raise timeout)
    @include 01-preflight.script    the steps of another transcript, in place

Outputs are given once, either inline or by file, so recorded outputs stay byte for byte
in their own files (``selftest/data/seed/``) and are never retyped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

from vdpalab.testing.scripted import RAISES, Raise, ScriptedHost, ScriptedOptions, ScriptStep


class TranscriptError(ValueError):
    """A transcript file that does not follow the format (names the file and line)."""


@dataclass
class _Draft:
    expect: str | re.Pattern[str]
    stdout: list[str] = field(default_factory=list)
    stdout_file: Path | None = None
    stderr: list[str] = field(default_factory=list)
    rc: int = 0
    raises: Raise | None = None

    def step(self) -> ScriptStep:
        out = "\n".join(self.stdout) + "\n" if self.stdout else ""
        err = "\n".join(self.stderr) + "\n" if self.stderr else ""
        return ScriptStep(
            self.expect,
            rc=self.rc,
            stdout=out,
            stderr=err,
            stdout_file=self.stdout_file,
            raises=self.raises,
        )


def load_transcript(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[ScriptStep]:
    """Read a transcript file into ScriptSteps (includes resolved relative to the including file)."""
    p = Path(path).resolve()
    if p in _seen:
        raise TranscriptError(f"{p}: @include loop")
    steps: list[ScriptStep] = []
    draft: _Draft | None = None

    def close() -> None:
        nonlocal draft
        if draft is not None:
            steps.append(draft.step())
            draft = None

    for no, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.rstrip("\n")
        where = f"{p}:{no}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("$~ "):
            close()
            draft = _Draft(re.compile(line[3:]))
        elif line.startswith("$ "):
            close()
            draft = _Draft(line[2:])
        elif line.startswith("@include "):
            close()
            steps.extend(load_transcript(p.parent / line[len("@include ") :].strip(), (*_seen, p)))
        else:
            if draft is None:
                raise TranscriptError(f"{where}: output before any '$ command' line: {line!r}")
            if line == "|" or line.startswith("| "):
                if draft.stdout_file is not None:
                    raise TranscriptError(f"{where}: both '<' file and '|' lines")
                draft.stdout.append(line[2:])
            elif line == "!" or line.startswith("! "):
                draft.stderr.append(line[2:])
            elif line.startswith("< "):
                if draft.stdout:
                    raise TranscriptError(f"{where}: both '|' lines and a '<' file")
                draft.stdout_file = (p.parent / line[2:].strip()).resolve()
                if not draft.stdout_file.is_file():
                    raise TranscriptError(f"{where}: no such output file {draft.stdout_file}")
            elif line.startswith("rc "):
                draft.rc = int(line[3:])
            elif line.startswith("raise "):
                what = line[len("raise ") :].strip()
                if what in RAISES:
                    draft.raises = what
                else:
                    raise TranscriptError(f"{where}: 'raise' takes {' or '.join(RAISES)}, not {what!r}")
            else:
                raise TranscriptError(f"{where}: not a transcript directive: {line!r}")
    close()
    return steps


def scripted_host(name: str, *paths: str | Path, **kwargs: Unpack[ScriptedOptions]) -> ScriptedHost:
    """A ScriptedHost replaying the given transcripts one after the other."""
    steps: list[ScriptStep] = []
    for path in paths:
        steps.extend(load_transcript(path))
    return ScriptedHost(name, steps, **kwargs)


"""The suite's `logging` pieces: per-object loggers, an append-only file handler, the CLI's console.

Every module logs to ``logging.getLogger(__name__)`` (all under ``vdpalab``). Progress (a layer
starting and ending, a VM boot being waited for, the teardown) is INFO; detail is DEBUG; every
command a host runs is a DEBUG record of ``vdpalab.hosts.base`` (with ``-vv`` on the terminal).

Objects that keep their own record of what happened (a host's command history, a lab's
``session-events.log``) get a private logger (:func:`own_logger`): a child of their module's logger
that is not registered by name, so two hosts called ``host`` never share handlers and nothing
leaks when they go. Its level is DEBUG so its own handler always sees its records; the records
then propagate as usual (``--log-file``, ``--log-cli-level``, caplog).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROGRESS = logging.INFO


def own_logger(parent: logging.Logger, suffix: str) -> logging.Logger:
    """A logger named ``parent.suffix`` that is not in the registry (so it dies with its owner)."""
    logger = logging.Logger(f"{parent.name}.{suffix}", logging.DEBUG)
    logger.parent = parent
    return logger


class AppendFileHandler(logging.Handler):
    """Append each record as one line to a file, opening it per record.

    Several processes of one run append to the same file (xdist workers); opening per line keeps
    each write a single ``O_APPEND`` write and survives the directory being removed and remade.
    """

    def __init__(self, path: Path, fmt: str, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.path = Path(path)
        self.setFormatter(logging.Formatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(line)
        except Exception:
            self.handleError(record)


@contextmanager
def console_logging(verbosity: int = 0, *, quiet: bool = False) -> Iterator[None]:
    """Progress of a ``vdpalab`` command on stderr: INFO by default, DEBUG with -v, every command with -vv."""
    root = logging.getLogger("vdpalab")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    if quiet:
        handler.setLevel(logging.WARNING)
    else:
        handler.setLevel(logging.DEBUG if verbosity > 0 else PROGRESS)
        if verbosity < 2:
            handler.addFilter(without_commands)
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(handler.level, level or logging.WARNING))
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def without_commands(record: logging.LogRecord) -> bool:
    """Drop the per-command records (shown only at the highest verbosity)."""
    return not hasattr(record, "command_entry")


def seconds(elapsed: float) -> str:
    """Elapsed time as progress lines show it."""
    return f"{elapsed:.1f} s" if elapsed < 100 else f"{elapsed / 60:.1f} min"

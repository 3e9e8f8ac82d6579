"""Subcommands of the ``vdpalab`` console script; each module exposes ``register(subparsers)``."""

COMMAND_MODULES = ("check_lab", "parse", "lab", "plan", "report", "compare", "trend", "baseline")

"""Tables of the history store (SQLAlchemy Core, one schema for SQLite and PostgreSQL).

Every column that is part of a unique key is NOT NULL (a NULL never equals another NULL,
so it would let duplicates in). Times are epoch seconds as double precision: exact round
trips, cheap comparisons for ``--since``, no time zone ambiguity.

Bump ``SCHEMA_VERSION`` when a table changes and add a step to ``MIGRATIONS``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 2

metadata = MetaData()


def _run_ref(**kwargs: Any) -> Column[Any]:
    """The ``run_id`` column of a table whose rows belong to a run (and go with it)."""
    return Column("run_id", String(128), ForeignKey("runs.run_id", ondelete="CASCADE"), **kwargs)


def _per_test(*, metric: bool) -> list[Column[Any]]:
    """The leading columns of a row per test of a run (and per metric and parameters, with ``metric``)."""
    columns: list[Column[Any]] = [
        Column("id", Integer, primary_key=True, autoincrement=True),
        _run_ref(nullable=False),
        Column("lab", String(64), nullable=False, default=""),
        Column("test_id", String(512), nullable=False),
    ]
    if metric:
        columns += [
            Column("metric", String(128), nullable=False),
            Column("params_key", String(1024), nullable=False, default="{}"),
        ]
    return columns

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
    Column("vdpalab_version", String(32), nullable=False, default=""),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("started", Float, nullable=False),
    Column("ended", Float),
    Column("status", String(16), nullable=False, default="incomplete"),
    Column("suite_revision", String(64)),
    Column("pytest_args", Text, nullable=False, default="[]"),  # JSON list
    Column("updated", Float, nullable=False),
    Index("ix_runs_started", "started"),
)

fingerprints = Table(
    "fingerprints",
    metadata,
    _run_ref(primary_key=True),
    Column("lab", String(64), primary_key=True),
    Column("host", String(255)),
    Column("kernel", String(128)),
    Column("nic_firmware", String(128)),
    Column("components", Text, nullable=False, default="{}"),  # JSON object component -> version|null
)

outcomes = Table(
    "outcomes",
    metadata,
    *_per_test(metric=False),
    Column("outcome", String(16), nullable=False),
    Column("duration", Float, nullable=False, default=0.0),
    Column("message", Text, nullable=False, default=""),
    Column("diagnostics", Text, nullable=False, default="{}"),  # JSON object name -> text
    Column("started", Float),
    UniqueConstraint("run_id", "lab", "test_id", name="uq_outcomes"),
)

results = Table(
    "results",
    metadata,
    *_per_test(metric=True),
    Column("trial", Integer, nullable=False, default=0),
    Column("value", Float),
    Column("unit", String(32), nullable=False, default=""),
    Column("better", String(8)),
    Column("n_samples", Integer, nullable=False, default=0),
    Column("stdev", Float),
    Column("min", Float),
    Column("max", Float),
    Column("samples", Text, nullable=False, default="[]"),  # JSON list, at most MAX_STORED_SAMPLES
    Column("started", Float),
    Column("ended", Float),
    Column("recorded", Float, nullable=False),
    UniqueConstraint("run_id", "lab", "test_id", "metric", "params_key", "trial", name="uq_results"),
    Index("ix_results_series", "lab", "metric", "test_id"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _run_ref(nullable=False),
    Column("cmd_key", String(40), nullable=False),  # sha1 of lab, host, started, command
    Column("lab", String(64), nullable=False, default=""),
    Column("host", String(255), nullable=False),
    Column("command", Text, nullable=False),
    Column("rc", Integer),
    Column("started", Float, nullable=False),
    Column("duration", Float, nullable=False, default=0.0),
    UniqueConstraint("run_id", "cmd_key", name="uq_commands"),
)

verdicts = Table(
    "verdicts",
    metadata,
    *_per_test(metric=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("expected", Text, nullable=False, default=""),
    Column("seen", Float),
    Column("unit", String(32), nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Column("limit_value", Float),  # v2: the number ``seen`` was compared with
    Column("direction", String(8)),  # v2: "higher"/"lower": which way is better
    Column("source", Text, nullable=False, default=""),  # v2: the lab-file key or the baseline run
    UniqueConstraint("run_id", "lab", "test_id", "metric", "params_key", "kind", name="uq_verdicts"),
)

# v2: how each layer (and the infrastructure) came up and went down in a run. phase "up" statuses are the
# layer outcomes (up / broken / not-applicable); phase "down" rows exist when a teardown failed ("broken").
layer_outcomes = Table(
    "layer_outcomes",
    metadata,
    _run_ref(primary_key=True),
    Column("lab", String(64), primary_key=True),
    Column("layer", String(64), primary_key=True),
    Column("phase", String(8), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
)

# v2: a baseline a user pinned for a lab (``vdpalab baseline pin RUN_ID``).
baseline_pins = Table(
    "baseline_pins",
    metadata,
    Column("lab", String(64), primary_key=True),
    _run_ref(nullable=False),
    Column("pinned_at", Float, nullable=False),
)

# v2: which run each run was judged against (``--baseline``), per lab: a run that passed its gate
# hands its baseline on, so a slow drift is measured against one reference and cannot ratchet.
run_baselines = Table(
    "run_baselines",
    metadata,
    _run_ref(primary_key=True),
    Column("lab", String(64), primary_key=True),
    Column("baseline_run", String(128)),
    Column("how", String(32), nullable=False, default=""),
)

#: version -> SQL statements that bring a store of version-1 to version. New tables need no statement
#: (``create_all`` adds them); new columns of existing tables do.
MIGRATIONS: dict[int, list[str]] = {
    2: [
        "ALTER TABLE verdicts ADD COLUMN limit_value FLOAT",
        "ALTER TABLE verdicts ADD COLUMN direction VARCHAR(8)",
        "ALTER TABLE verdicts ADD COLUMN source TEXT NOT NULL DEFAULT ''",
    ],
}

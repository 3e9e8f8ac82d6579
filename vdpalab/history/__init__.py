"""History of runs: the store (SQLite/PostgreSQL), the run collector, compare and trend."""

from vdpalab.history.collector import RunCollector, status_from_exitstatus
from vdpalab.history.store import (
    DEFAULT_URL,
    ENV_URL,
    HistoryError,
    HistorySchemaError,
    HistoryStore,
    display_url,
    normalize_url,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "HistoryError",
    "HistorySchemaError",
    "HistoryStore",
    "RunCollector",
    "display_url",
    "normalize_url",
    "status_from_exitstatus",
]

"""The history store: every run, its fingerprints, outcomes, results, verdicts and commands.

SQLite by default (``reports/history.sqlite``), PostgreSQL for a fleet
(``postgresql://user@host/db`` is mapped to SQLAlchemy's psycopg 3 driver).

Concurrency rules, because xdist workers and parallel labs write at the same time:

* every write is one short transaction, retried on "database is locked" / deadlock;
* every row has a natural unique key and is written with ``INSERT .. ON CONFLICT``
  (an idempotent upsert), so a re-sent row never duplicates and a lost race never loses;
* rows are sorted by key before a batch upsert so two writers lock in the same order;
* SQLite runs in WAL mode with a busy timeout and takes the write lock at BEGIN
  (``BEGIN IMMEDIATE``), which avoids the read-then-upgrade deadlock;
* schema creation is serialised (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL).

A run row is inserted at start with status ``incomplete`` and results go in as they come,
so a run that dies half-way keeps what it measured.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from sqlalchemy import Connection, Engine, RowMapping, and_, create_engine, delete, event, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from vdpalab import __version__
from vdpalab.errors import VdpaLabError
from vdpalab.history import schema as S
from vdpalab.results import (
    RUN_STATUSES,
    CommandRecord,
    LayerRecord,
    Result,
    RunFingerprint,
    RunRecord,
    TestOutcome,
    Verdict,
    VerdictStatus,
    canonical_params,
    check_run_id,
)

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PgInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

DEFAULT_URL = "sqlite:///reports/history.sqlite"
ENV_URL = "VDPALAB_RESULTS_DB"
MAX_STORED_SAMPLES = 20000
_PG_LOCK_KEY = 0x76647061  # "vdpa": serialises schema creation across a fleet

T = TypeVar("T")


class HistoryError(VdpaLabError):
    """The history store is missing, unreachable or does not know a run."""


class HistorySchemaError(HistoryError):
    """The store was written by a newer vdpalab (or is not a vdpalab store)."""


# --------------------------------------------------------------------------- URLs


def normalize_url(
    url: str | os.PathLike[str] | None = None, *, reports_dir: str | os.PathLike[str] | None = None
) -> str:
    """A user's idea of a database -> a SQLAlchemy URL.

    None -> ``$VDPALAB_RESULTS_DB`` or ``sqlite:///<reports_dir>/history.sqlite``; a bare path ->
    SQLite file; ``postgresql://`` and ``postgres://`` -> ``postgresql+psycopg://`` (psycopg 3).
    """
    if url is None or str(url) == "":
        url = os.environ.get(ENV_URL) or (
            f"sqlite:///{Path(reports_dir) / 'history.sqlite'}" if reports_dir is not None else DEFAULT_URL
        )
    text_url = str(url)
    if "://" not in text_url:
        return f"sqlite:///{text_url}"
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if text_url.startswith(prefix):
            return "postgresql+psycopg://" + text_url[len(prefix):]
    return text_url


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages and reports."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot parse is shown as given, it has no password field anyway
        return url


def _retriable(exc: BaseException) -> bool:
    """Lock contention that a retry fixes: SQLite busy/locked, PostgreSQL deadlock/serialization."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in {"40001", "40P01", "55P03"}:
        return True
    message = str(orig or exc).lower()
    return "database is locked" in message or "database is busy" in message or "deadlock" in message


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _float_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _subsample(samples: Sequence[float], limit: int = MAX_STORED_SAMPLES) -> list[float]:
    """At most ``limit`` samples, evenly strided and in order (first and last kept)."""
    n = len(samples)
    if n <= limit:
        return list(samples)
    step = (n - 1) / (limit - 1)
    return [samples[round(i * step)] for i in range(limit)]


def command_key(cmd: CommandRecord) -> str:
    """The natural identity of a command-log line: where, when (to the microsecond) and what."""
    raw = f"{cmd.lab}\0{cmd.host}\0{cmd.started:.6f}\0{cmd.command}"
    return hashlib.sha1(raw.encode("utf-8", "surrogateescape")).hexdigest()


# --------------------------------------------------------------------------- the store


class HistoryStore:
    """One history database. Cheap to open; open one per process (never share across fork).

    ``create=False`` opens an existing store only (for ``compare``/``trend``), so a typo in a
    path says "no history" instead of silently creating an empty database.
    """

    def __init__(self, url: str | os.PathLike[str] | None = None, *, create: bool = True, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self._pid = os.getpid()
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise HistoryError(f"history store {display_url(self.url)}: only sqlite and postgresql are supported")
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                path = Path(database)
                if not path.exists():
                    if not create:
                        raise HistoryError(f"no history store at {path} (no run has been recorded there yet)")
                    path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(self.url, echo=echo, connect_args={"timeout": 60})
            _install_sqlite_hooks(self.engine)
        else:
            self.engine = create_engine(self.url, echo=echo, pool_pre_ping=True)
        try:
            self._ensure_schema(create)
        except OperationalError as exc:
            raise HistoryError(f"history store {display_url(self.url)}: cannot open: {exc.orig or exc}") from exc

    # ----------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close every connection; for SQLite first fold the write-ahead log into the database file
        (``wal_checkpoint(TRUNCATE)``), so the ``.sqlite`` file alone holds every run (a CI job that
        keeps only that file as an artifact keeps everything)."""
        if self.dialect == "sqlite":
            self._check_fork()
            try:
                raw = self.engine.raw_connection()
                try:
                    raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    raw.close()
            except Exception as exc:  # a checkpoint is housekeeping: say it failed, do not lose the close
                logging.getLogger(__name__).warning("history store %s: checkpoint failed: %s",
                                                    display_url(self.url), exc)
        self.engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HistoryStore({display_url(self.url)!r})"

    def _check_fork(self) -> None:
        """After a fork the parent's pooled connections must not be reused by the child."""
        if os.getpid() != self._pid:
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._check_fork()
        with self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                yield conn

    def _write(self, fn: Callable[[Connection], T], *, attempts: int = 30) -> T:
        """Run ``fn`` in one write transaction, retrying lock contention with jittered backoff."""
        self._check_fork()
        delay = 0.02
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    return fn(conn)
            except (OperationalError, DBAPIError) as exc:
                if attempt == attempts - 1 or not _retriable(exc):
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def _upsert(self, conn: Connection, table: Any, rows: list[dict[str, Any]], keys: Sequence[str],
                update_cols: Sequence[str] | None) -> None:
        if not rows:
            return
        stmt: PgInsert | SqliteInsert
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table)
        # One row per key (PostgreSQL refuses to upsert the same row twice in one statement), sorted so
        # that concurrent writers take row locks in the same order (no deadlock).
        unique = {tuple(str(r[k]) for k in keys): r for r in rows}
        rows = [unique[k] for k in sorted(unique)]
        if update_cols:
            stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                              set_={c: stmt.excluded[c] for c in update_cols})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        conn.execute(stmt, rows)

    def _ensure_schema(self, create: bool) -> None:
        def work(conn: Connection) -> None:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            names = set(inspect(conn).get_table_names())
            if "schema_version" in names:
                found = conn.execute(select(S.schema_version.c.version)).scalars().all()
                version = max(found) if found else 0
                if version > S.SCHEMA_VERSION:
                    raise HistorySchemaError(
                        f"history store {display_url(self.url)} has schema version {version}, but this vdpalab "
                        f"({__version__}) understands up to version {S.SCHEMA_VERSION}: upgrade vdpalab "
                        "(or point --db at another store); refusing to read or write it"
                    )
            elif names & {"runs", "results"}:
                raise HistorySchemaError(
                    f"history store {display_url(self.url)} has tables but no schema_version table: "
                    "not a vdpalab store, refusing to touch it"
                )
            else:
                if not create:
                    raise HistoryError(f"no history store at {display_url(self.url)} (no run has been recorded yet)")
                version = 0
            if version:  # an older store: its tables get the new columns first (a fresh one is created whole)
                for step in range(version + 1, S.SCHEMA_VERSION + 1):
                    for statement in S.MIGRATIONS.get(step, []):
                        conn.execute(text(statement))
            S.metadata.create_all(conn, checkfirst=True)
            if version < S.SCHEMA_VERSION:
                self._upsert(conn, S.schema_version, [{
                    "version": S.SCHEMA_VERSION, "applied_at": time.time(), "vdpalab_version": __version__,
                }], ["version"], None)

        self._write(work)

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(S.schema_version.c.version)).scalars().all()[-1])

    # ----------------------------------------------------------------- writes

    def begin_run(
        self,
        run_id: str,
        *,
        started: float | None = None,
        suite_revision: str | None = None,
        pytest_args: Sequence[str] = (),
        fingerprints: Iterable[RunFingerprint] = (),
    ) -> None:
        """Insert the run as ``incomplete`` if it is not there yet (every xdist worker may call it)."""
        check_run_id(run_id)
        now = time.time()
        row = {
            "run_id": run_id, "started": started if started is not None else now, "ended": None,
            "status": "incomplete", "suite_revision": suite_revision, "pytest_args": _dumps(list(pytest_args)),
            "updated": now,
        }
        fps = list(fingerprints)

        def work(conn: Connection) -> None:
            self._upsert(conn, S.runs, [row], ["run_id"], None)
            self._put_fingerprints(conn, run_id, fps)

        self._write(work)

    def _put_fingerprints(self, conn: Connection, run_id: str, fps: Sequence[RunFingerprint]) -> None:
        rows = [{
            "run_id": run_id, "lab": fp.lab, "host": fp.host, "kernel": fp.kernel, "nic_firmware": fp.nic_firmware,
            "components": _dumps(dict(fp.ordered())),
        } for fp in fps]
        self._upsert(conn, S.fingerprints, rows, ["run_id", "lab"], ["host", "kernel", "nic_firmware", "components"])

    def put_fingerprints(self, run_id: str, fingerprints: Iterable[RunFingerprint]) -> None:
        fps = list(fingerprints)
        self._write(lambda conn: self._put_fingerprints(conn, run_id, fps))

    def put_results(self, run_id: str, results: Iterable[Result]) -> int:
        """Upsert results (same key -> the row is updated, never duplicated). Returns how many."""
        now = time.time()
        rows = _result_rows(run_id, results, now)

        def work(conn: Connection) -> None:
            self._upsert(conn, S.results, rows, _RESULT_KEYS, _RESULT_UPDATE)
            conn.execute(update(S.runs).where(S.runs.c.run_id == run_id).values(updated=now))

        self._write(work)
        return len(rows)

    def put_outcomes(self, run_id: str, outcomes: Iterable[TestOutcome]) -> None:
        rows = _outcome_rows(run_id, outcomes)
        self._write(lambda conn: self._upsert(conn, S.outcomes, rows, _OUTCOME_KEYS, _OUTCOME_UPDATE))

    def put_commands(self, run_id: str, commands: Iterable[CommandRecord]) -> None:
        rows = _command_rows(run_id, commands)
        self._write(lambda conn: self._upsert(conn, S.commands, rows, ["run_id", "cmd_key"], None))

    def put_verdicts(self, run_id: str, verdicts: Iterable[Verdict]) -> None:
        rows = _verdict_rows(run_id, verdicts)
        self._write(lambda conn: self._upsert(conn, S.verdicts, rows, _VERDICT_KEYS, _VERDICT_UPDATE))

    def put_layers(self, run_id: str, layers: Iterable[LayerRecord]) -> None:
        """Layer outcomes (phase up) and failed restores (phase down) of a run."""
        rows = _layer_rows(run_id, layers)
        self._write(lambda conn: self._upsert(conn, S.layer_outcomes, rows, _LAYER_KEYS, ["status", "reason"]))

    # ----------------------------------------------------------------- baselines

    def pin_baseline(self, run_id: str, labs: Iterable[str] | None = None) -> list[str]:
        """Pin ``run_id`` as the baseline of ``labs`` (default: every lab of that run). Returns the labs."""
        with self._read() as conn:
            known = list(conn.execute(select(S.fingerprints.c.lab).where(S.fingerprints.c.run_id == run_id))
                         .scalars())
        if not known:
            raise HistoryError(f"run {run_id!r} has no lab in {display_url(self.url)}: nothing to pin")
        chosen = list(labs) if labs else known
        missing = [lab for lab in chosen if lab not in known]
        if missing:
            raise HistoryError(f"run {run_id} did not run lab(s) {', '.join(missing)} (it ran {', '.join(known)})")
        rows = [{"lab": lab, "run_id": run_id, "pinned_at": time.time()} for lab in chosen]
        self._write(lambda conn: self._upsert(conn, S.baseline_pins, rows, ["lab"], ["run_id", "pinned_at"]))
        return chosen

    def unpin_baseline(self, *, run_id: str | None = None, lab: str | None = None) -> list[str]:
        """Remove pins (of one run, of one lab, or all); returns the labs that were unpinned."""
        q = select(S.baseline_pins.c.lab)
        d = delete(S.baseline_pins)
        if run_id is not None:
            q, d = q.where(S.baseline_pins.c.run_id == run_id), d.where(S.baseline_pins.c.run_id == run_id)
        if lab is not None:
            q, d = q.where(S.baseline_pins.c.lab == lab), d.where(S.baseline_pins.c.lab == lab)

        def work(conn: Connection) -> list[str]:
            labs = list(conn.execute(q).scalars())
            conn.execute(d)
            return labs

        return self._write(work)

    def pins(self) -> dict[str, str]:
        """{lab: pinned run id}."""
        with self._read() as conn:
            return {lab: rid for lab, rid in conn.execute(select(S.baseline_pins.c.lab, S.baseline_pins.c.run_id))}

    def put_run_baseline(self, run_id: str, lab: str, baseline_run: str | None, how: str) -> None:
        """Which run ``run_id`` was judged against for ``lab`` (None: there was none)."""
        row = {"run_id": run_id, "lab": lab, "baseline_run": baseline_run, "how": how}
        self._write(lambda conn: self._upsert(conn, S.run_baselines, [row], ["run_id", "lab"],
                                              ["baseline_run", "how"]))

    def run_baseline(self, run_id: str, lab: str) -> str | None:
        with self._read() as conn:
            return conn.execute(select(S.run_baselines.c.baseline_run).where(
                S.run_baselines.c.run_id == run_id, S.run_baselines.c.lab == lab)).scalar_one_or_none()

    def finish_run(self, run_id: str, status: str, ended: float | None = None) -> None:
        if status not in RUN_STATUSES:
            raise HistoryError(f"run {run_id}: status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
        now = time.time()

        def work(conn: Connection) -> None:
            done = conn.execute(update(S.runs).where(S.runs.c.run_id == run_id).values(
                status=status, ended=ended if ended is not None else now, updated=now))
            if done.rowcount == 0:
                raise HistoryError(f"run {run_id} was never started in {display_url(self.url)}")

        self._write(work)

    def import_run(self, run: RunRecord) -> None:
        """Write a whole RunRecord in one transaction (tests, benchmarks, re-imports)."""
        check_run_id(run.run_id)
        now = time.time()
        run_row = {
            "run_id": run.run_id, "started": run.started, "ended": run.ended, "status": run.status,
            "suite_revision": run.suite_revision, "pytest_args": _dumps(list(run.pytest_args)), "updated": now,
        }

        def work(conn: Connection) -> None:
            self._upsert(conn, S.runs, [run_row], ["run_id"], ["started", "ended", "status", "suite_revision",
                                                              "pytest_args", "updated"])
            self._put_fingerprints(conn, run.run_id, list(run.fingerprints.values()))
            self._upsert(conn, S.outcomes, _outcome_rows(run.run_id, run.outcomes), _OUTCOME_KEYS, _OUTCOME_UPDATE)
            self._upsert(conn, S.results, _result_rows(run.run_id, run.results, now), _RESULT_KEYS, _RESULT_UPDATE)
            self._upsert(conn, S.commands, _command_rows(run.run_id, run.commands), ["run_id", "cmd_key"], None)
            self._upsert(conn, S.verdicts, _verdict_rows(run.run_id, run.verdicts), _VERDICT_KEYS, _VERDICT_UPDATE)
            self._upsert(conn, S.layer_outcomes, _layer_rows(run.run_id, run.layers), _LAYER_KEYS,
                         ["status", "reason"])

        self._write(work)

    # ----------------------------------------------------------------- reads

    def run_ids(self) -> list[str]:
        with self._read() as conn:
            return list(conn.execute(select(S.runs.c.run_id).order_by(S.runs.c.started, S.runs.c.run_id)).scalars())

    def runs_frame(self, *, lab: str | None = None, since: float | None = None) -> pd.DataFrame:
        """One row per (run, lab) with status and the fingerprint's kernel and firmware."""
        q = (
            select(S.runs.c.run_id, S.runs.c.started, S.runs.c.ended, S.runs.c.status,
                   S.fingerprints.c.lab, S.fingerprints.c.kernel, S.fingerprints.c.nic_firmware)
            .select_from(S.runs.outerjoin(S.fingerprints, S.fingerprints.c.run_id == S.runs.c.run_id))
            .order_by(S.runs.c.started, S.runs.c.run_id)
        )
        if since is not None:
            q = q.where(S.runs.c.started >= since)
        with self._read() as conn:
            frame = pd.DataFrame(_tuples(conn.execute(q)),
                                 columns=["run_id", "started", "ended", "status", "lab", "kernel", "nic_firmware"])
        if lab is not None:
            frame = frame[frame["lab"] == lab]
        return frame.reset_index(drop=True)

    def resolve(self, ref: str, *, lab: str | None = None) -> str:
        """``latest``, ``latest~N``, ``previous``, an exact run id or a unique prefix -> run id."""
        ref = ref.strip()
        with self._read() as conn:
            q = select(S.runs.c.run_id).order_by(S.runs.c.started.desc(), S.runs.c.run_id.desc())
            if lab is not None:
                q = q.where(S.runs.c.run_id.in_(select(S.fingerprints.c.run_id).where(S.fingerprints.c.lab == lab)))
            if ref == "latest" or ref == "previous" or ref.startswith("latest~"):
                back = 1 if ref == "previous" else int(ref.partition("~")[2] or 0) if "~" in ref else 0
                ids = list(conn.execute(q.limit(back + 1)).scalars())
                if len(ids) <= back:
                    raise HistoryError(f"{ref}: the store has only {len(ids)} run(s)"
                                       + (f" of lab {lab!r}" if lab else ""))
                return ids[back]
            exact = conn.execute(select(S.runs.c.run_id).where(S.runs.c.run_id == ref)).scalar_one_or_none()
            if exact:
                return exact
            like = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            matches = list(conn.execute(q.where(S.runs.c.run_id.like(like, escape="\\")).limit(5)).scalars())
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise HistoryError(f"no run {ref!r} in {display_url(self.url)}")
        raise HistoryError(f"run {ref!r} is ambiguous: {', '.join(matches)}, ...")

    def previous_run(
        self, lab: str, *, before: str | None = None, statuses: Sequence[str] = ("complete",)
    ) -> str | None:
        """The newest run of ``lab`` (before run ``before``) with one of ``statuses``: the default baseline."""
        with self._read() as conn:
            q = (
                select(S.runs.c.run_id)
                .join(S.fingerprints, S.fingerprints.c.run_id == S.runs.c.run_id)
                .where(S.fingerprints.c.lab == lab, S.runs.c.status.in_(list(statuses)))
                .order_by(S.runs.c.started.desc(), S.runs.c.run_id.desc())
            )
            if before is not None:
                started = conn.execute(select(S.runs.c.started).where(S.runs.c.run_id == before)).scalar_one_or_none()
                if started is not None:
                    q = q.where(and_(S.runs.c.started <= started, S.runs.c.run_id != before))
            return conn.execute(q.limit(1)).scalar_one_or_none()

    def load_results(self, run_id: str) -> list[Result]:
        with self._read() as conn:
            rows = conn.execute(select(S.results).where(S.results.c.run_id == run_id)
                                .order_by(S.results.c.id)).mappings().all()
        return [_result_from_row(r) for r in rows]

    def load_run(self, run_id: str) -> RunRecord:
        """The full RunRecord back from the store (what ``vdpalab report`` regenerates from)."""
        with self._read() as conn:
            run = conn.execute(select(S.runs).where(S.runs.c.run_id == run_id)).mappings().one_or_none()
            if run is None:
                raise HistoryError(f"no run {run_id!r} in {display_url(self.url)}")
            fps = conn.execute(select(S.fingerprints).where(S.fingerprints.c.run_id == run_id)
                               .order_by(S.fingerprints.c.lab)).mappings().all()
            outs = conn.execute(select(S.outcomes).where(S.outcomes.c.run_id == run_id)
                                .order_by(S.outcomes.c.id)).mappings().all()
            res = conn.execute(select(S.results).where(S.results.c.run_id == run_id)
                               .order_by(S.results.c.id)).mappings().all()
            cmds = conn.execute(select(S.commands).where(S.commands.c.run_id == run_id)
                                .order_by(S.commands.c.started, S.commands.c.id)).mappings().all()
            verdict_rows = conn.execute(select(S.verdicts).where(S.verdicts.c.run_id == run_id)
                                        .order_by(S.verdicts.c.id)).mappings().all()
            layer_rows = conn.execute(select(S.layer_outcomes).where(S.layer_outcomes.c.run_id == run_id)
                                      .order_by(S.layer_outcomes.c.lab, S.layer_outcomes.c.phase)).mappings().all()
        return RunRecord(
            run_id=run["run_id"], started=run["started"], ended=run["ended"], status=run["status"],
            suite_revision=run["suite_revision"], pytest_args=tuple(json.loads(run["pytest_args"] or "[]")),
            fingerprints={f["lab"]: RunFingerprint(f["lab"], json.loads(f["components"] or "{}"), f["host"])
                          for f in fps},
            outcomes=[TestOutcome(test_id=o["test_id"], outcome=o["outcome"], duration=o["duration"] or 0.0,
                                  message=o["message"] or "", diagnostics=json.loads(o["diagnostics"] or "{}"),
                                  lab=o["lab"], started=o["started"]) for o in outs],
            results=[_result_from_row(r) for r in res],
            commands=[CommandRecord(c["host"], c["command"], c["rc"], c["started"], c["duration"] or 0.0, c["lab"])
                      for c in cmds],
            verdicts=[Verdict(metric=v["metric"], status=VerdictStatus(v["status"]), message=v["message"],
                              expected=v["expected"], seen=v["seen"], unit=v["unit"], kind=v["kind"],
                              test_id=v["test_id"], lab=v["lab"], params=json.loads(v["params_key"] or "{}"),
                              limit=v["limit_value"], direction=v["direction"], source=v["source"] or "")
                      for v in verdict_rows],
            layers=[LayerRecord(lab=r["lab"], layer=r["layer"], phase=r["phase"], status=r["status"],
                                reason=r["reason"] or "") for r in layer_rows],
        )

    def results_frame(
        self,
        *,
        run_ids: Sequence[str] | None = None,
        lab: str | None = None,
        metric: str | None = None,
        test: str | None = None,
        since: float | None = None,
    ) -> pd.DataFrame:
        """Results joined with their run (started, status) as a DataFrame, for trend and compare.

        ``metric``/``test``/``lab`` filters are exact here (globs are applied by the caller).
        """
        r, runs = S.results, S.runs
        q = (
            select(r.c.run_id, runs.c.started.label("run_started"), runs.c.status, r.c.lab, r.c.test_id, r.c.metric,
                   r.c.params_key, r.c.trial, r.c.value, r.c.unit, r.c.better, r.c.n_samples)
            .join(runs, runs.c.run_id == r.c.run_id)
        )
        if run_ids is not None:
            q = q.where(r.c.run_id.in_(list(run_ids)))
        if lab is not None:
            q = q.where(r.c.lab == lab)
        if metric is not None:
            q = q.where(r.c.metric == metric)
        if test is not None:
            q = q.where(r.c.test_id == test)
        if since is not None:
            q = q.where(runs.c.started >= since)
        cols = ["run_id", "run_started", "status", "lab", "test_id", "metric", "params_key", "trial", "value", "unit",
                "better", "n_samples"]
        with self._read() as conn:
            return pd.DataFrame(_tuples(conn.execute(q)), columns=cols)

    def outcomes_frame(self, *, lab: str | None = None, since: float | None = None) -> pd.DataFrame:
        o, runs = S.outcomes, S.runs
        q = (select(o.c.run_id, runs.c.started.label("run_started"), runs.c.status, o.c.lab, o.c.test_id, o.c.outcome)
             .join(runs, runs.c.run_id == o.c.run_id))
        if lab is not None:
            q = q.where(o.c.lab == lab)
        if since is not None:
            q = q.where(runs.c.started >= since)
        with self._read() as conn:
            return pd.DataFrame(_tuples(conn.execute(q)),
                                columns=["run_id", "run_started", "status", "lab", "test_id", "outcome"])

    def count_rows(self) -> dict[str, int]:
        """Row count per table (the concurrency self-tests use it)."""
        from sqlalchemy import func

        out = {}
        with self._read() as conn:
            for table in (S.runs, S.fingerprints, S.outcomes, S.results, S.commands, S.verdicts, S.layer_outcomes):
                out[table.name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        return out


_RESULT_KEYS = ["run_id", "lab", "test_id", "metric", "params_key", "trial"]
_RESULT_UPDATE = ["value", "unit", "better", "n_samples", "stdev", "min", "max", "samples", "started", "ended",
                  "recorded"]
_OUTCOME_KEYS = ["run_id", "lab", "test_id"]
_OUTCOME_UPDATE = ["outcome", "duration", "message", "diagnostics", "started"]
_VERDICT_KEYS = ["run_id", "lab", "test_id", "metric", "params_key", "kind"]
_VERDICT_UPDATE = ["status", "expected", "seen", "unit", "message", "limit_value", "direction", "source"]
_LAYER_KEYS = ["run_id", "lab", "layer", "phase"]


def _layer_rows(run_id: str, layers: Iterable[LayerRecord]) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "lab": rec.lab, "layer": rec.layer, "phase": rec.phase, "status": rec.status,
             "reason": rec.reason} for rec in layers]


def _result_rows(run_id: str, results: Iterable[Result], now: float) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        stats = r.stats()
        rows.append({
            "run_id": run_id, "lab": r.lab, "test_id": r.test_id, "metric": r.name,
            "params_key": r.params_key, "trial": r.trial, "value": _float_or_none(r.value), "unit": r.unit,
            "better": r.better, "n_samples": r.n_samples, "stdev": _float_or_none(stats.get("stdev")),
            "min": _float_or_none(stats.get("min")), "max": _float_or_none(stats.get("max")),
            "samples": _dumps(_subsample(r.samples)), "started": r.started, "ended": r.ended, "recorded": now,
        })
    return rows


def _outcome_rows(run_id: str, outcomes: Iterable[TestOutcome]) -> list[dict[str, Any]]:
    return [{
        "run_id": run_id, "lab": o.lab, "test_id": o.test_id, "outcome": o.outcome, "duration": o.duration,
        "message": o.message, "diagnostics": _dumps(dict(o.diagnostics)), "started": o.started,
    } for o in outcomes]


def _command_rows(run_id: str, commands: Iterable[CommandRecord]) -> list[dict[str, Any]]:
    rows = {}
    for c in commands:
        key = command_key(c)
        rows[key] = {"run_id": run_id, "cmd_key": key, "lab": c.lab, "host": c.host, "command": c.command,
                     "rc": c.rc, "started": c.started, "duration": c.duration}
    return list(rows.values())


def _verdict_rows(run_id: str, verdicts: Iterable[Verdict]) -> list[dict[str, Any]]:
    return [{
        "run_id": run_id, "lab": v.lab, "test_id": v.test_id, "metric": v.metric, "params_key": v.params_key,
        "kind": v.kind, "status": str(v.status), "expected": v.expected, "seen": _float_or_none(v.seen),
        "unit": v.unit, "message": v.message, "limit_value": _float_or_none(v.limit), "direction": v.direction,
        "source": v.source,
    } for v in verdicts]


def _tuples(result: Any) -> list[tuple[Any, ...]]:
    """Plain tuples: pandas probes each SQLAlchemy Row with hasattr(), which is slow on big results."""
    return [tuple(row) for row in result]


def _result_from_row(r: RowMapping) -> Result:
    samples = json.loads(r["samples"] or "[]")
    n = int(r["n_samples"] or 0)
    return Result(
        name=r["metric"], value=math.nan if r["value"] is None else r["value"], unit=r["unit"] or "",
        samples=tuple(samples), params=json.loads(r["params_key"] or "{}"), test_id=r["test_id"], lab=r["lab"],
        better=r["better"], started=r["started"], ended=r["ended"], trial=r["trial"],
        sample_count=n if n != len(samples) else None,
    )


def _install_sqlite_hooks(engine: Engine) -> None:
    """WAL, busy timeout, foreign keys, and BEGIN IMMEDIATE for writes (DEFERRED for reads)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite must not BEGIN by itself; the "begin" hook does
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "HistoryError",
    "HistorySchemaError",
    "HistoryStore",
    "canonical_params",
    "display_url",
    "normalize_url",
]

"""``RunCollector``: the one object the pytest plugin feeds during a session.

It writes through to the history store as things happen (so a crash keeps what was
measured, with the run still marked ``incomplete``) and keeps a copy in memory (so the
reports can be written even when the store is unreachable).

Typical plugin use::

    collector = RunCollector(store_url, reports_dir)             # controller and each xdist worker
    collector.start_run(fingerprints, run_id=run_id, suite_revision=rev, pytest_args=args)
    collector.add_result(result); collector.add_test_outcome(test_id, "failed", message=..., diagnostics=...)
    collector.add_commands(host.history.entries(), lab="emu")
    run = collector.finish(status_from_exitstatus(exitstatus))  # controller only
    collector.write_reports(run)                                 # reports/<run-id>/ + reports/latest

Workers join the controller's run by passing the same ``run_id`` to ``start_run``: the
run row is created once, every later ``start_run`` is a no-op upsert.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from vdpalab.history.store import HistoryStore
from vdpalab.results import (
    CommandRecord,
    LayerRecord,
    Outcome,
    Result,
    RunFingerprint,
    RunRecord,
    RunStatus,
    TestOutcome,
    Verdict,
    check_run_id,
    new_run_id,
    ran_anything,
)


def status_from_exitstatus(exitstatus: int, outcomes: Iterable[TestOutcome] | None = None) -> RunStatus:
    """pytest's exit status (and, when given, the tests' outcomes) -> run status.

    0 ok, 1 tests failed -> ``complete``; 5 nothing collected -> ``incomplete`` (a run that
    checked nothing is no baseline and no point of a trend); 2 interrupted, 3 internal
    error, 4 usage error -> ``failed`` (the run itself broke: trend counts its series as 0).
    A run that exited 0 although no test passed, failed or errored (everything deselected or
    skipped) checked nothing either: ``incomplete`` too, never a green complete run.
    """
    code = int(exitstatus)
    if code == 5:
        return "incomplete"
    if code == 0 and outcomes is not None and not ran_anything(outcomes):
        return "incomplete"
    return "complete" if code in (0, 1) else "failed"


class RunCollector:
    """Collects one run; thread-safe; persistence errors are recorded, not raised (by default).

    ``store`` is a ``HistoryStore``, a URL, or None for "no history" (reports only).
    ``raise_store_errors=True`` makes a store failure raise instead (the self-tests use it).
    """

    def __init__(
        self,
        store: HistoryStore | str | os.PathLike[str] | None = None,
        reports_dir: str | os.PathLike[str] | None = "reports",
        *,
        raise_store_errors: bool = False,
    ) -> None:
        self.store = HistoryStore(store) if isinstance(store, (str, os.PathLike)) else store
        self.reports_dir = Path(reports_dir) if reports_dir is not None else None
        self.raise_store_errors = raise_store_errors
        self.store_errors: list[str] = []
        self._run: RunRecord | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- helpers

    @property
    def run(self) -> RunRecord:
        if self._run is None:
            raise RuntimeError("RunCollector: start_run() was not called")
        return self._run

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def _persist(self, what: str, fn: Callable[[HistoryStore], object]) -> None:
        if self.store is None:
            return
        try:
            fn(self.store)
        except Exception as exc:
            if self.raise_store_errors:
                raise
            line = f"{what}: {type(exc).__name__}: {exc}".splitlines()[0][:500]
            self.store_errors.append(line)
            traceback.print_exc()

    # ----------------------------------------------------------------- the plugin API

    def start_run(
        self,
        fingerprint: RunFingerprint | Iterable[RunFingerprint] = (),
        *,
        run_id: str | None = None,
        suite_revision: str | None = None,
        pytest_args: Iterable[str] = (),
        started: float | None = None,
        label: str | None = None,
    ) -> RunRecord:
        """Open the run (row inserted as ``incomplete``); returns the in-memory record.

        ``run_id`` None -> a new sortable id built from ``label`` (default: the first lab).
        """
        fps = [fingerprint] if isinstance(fingerprint, RunFingerprint) else list(fingerprint)
        started = time.time() if started is None else started
        if run_id is None:
            run_id = new_run_id(label or (fps[0].lab if fps else "run"), started)
        check_run_id(run_id)
        with self._lock:
            self._run = RunRecord(run_id=run_id, started=started, suite_revision=suite_revision,
                                  pytest_args=tuple(pytest_args), fingerprints={fp.lab: fp for fp in fps})
        self._persist("start_run", self._begin)
        return self._run

    def _begin(self, store: HistoryStore) -> None:
        run = self.run
        store.begin_run(run.run_id, started=run.started, suite_revision=run.suite_revision,
                             pytest_args=run.pytest_args, fingerprints=list(run.fingerprints.values()))

    def update_fingerprint(self, fingerprint: RunFingerprint) -> None:
        """Add or replace one lab's fingerprint (versions are often known only after bring-up)."""
        with self._lock:
            self.run.fingerprints[fingerprint.lab] = fingerprint
        self._persist("update_fingerprint", lambda store: store.put_fingerprints(self.run_id, [fingerprint]))

    def add_test_outcome(
        self,
        test_id: str | TestOutcome,
        outcome: Outcome | None = None,
        *,
        duration: float = 0.0,
        message: str = "",
        diagnostics: Mapping[str, str] | None = None,
        lab: str = "",
        started: float | None = None,
    ) -> TestOutcome:
        """Record how a test ended (a second call for the same test replaces the first)."""
        if isinstance(test_id, TestOutcome):
            item = test_id
        else:
            if outcome is None:
                raise TypeError("add_test_outcome: outcome is required")
            item = TestOutcome(test_id=test_id, outcome=outcome, duration=duration, message=message,
                               diagnostics=diagnostics or {}, lab=lab, started=started)
        with self._lock:
            self.run.outcomes[:] = [o for o in self.run.outcomes if (o.test_id, o.lab) != (item.test_id, item.lab)]
            self.run.outcomes.append(item)
        self._persist("add_test_outcome", lambda store: store.put_outcomes(self.run_id, [item]))
        return item

    def add_result(self, result: Result | Iterable[Result]) -> None:
        """Record one result (or several); stored immediately, so a later crash keeps it."""
        items = [result] if isinstance(result, Result) else list(result)
        with self._lock:
            keys = {r.key for r in items}
            self.run.results[:] = [r for r in self.run.results if r.key not in keys]
            self.run.results.extend(items)
        self._persist("add_result", lambda store: store.put_results(self.run_id, items))

    def add_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        items = list(verdicts)
        with self._lock:
            keys = {(v.lab, v.test_id, v.metric, v.params_key, v.kind) for v in items}
            self.run.verdicts[:] = [v for v in self.run.verdicts
                                    if (v.lab, v.test_id, v.metric, v.params_key, v.kind) not in keys]
            self.run.verdicts.extend(items)
        self._persist("add_verdicts", lambda store: store.put_verdicts(self.run_id, items))

    def add_layers(self, layers: Iterable[LayerRecord]) -> None:
        """How each layer came up (phase "up") and which restores failed (phase "down")."""
        items = list(layers)
        with self._lock:
            keys = {(rec.lab, rec.layer, rec.phase) for rec in items}
            self.run.layers[:] = [rec for rec in self.run.layers if (rec.lab, rec.layer, rec.phase) not in keys]
            self.run.layers.extend(items)
        self._persist("add_layers", lambda store: store.put_layers(self.run_id, items))

    def add_commands(self, commands: Iterable[Any], *, lab: str = "") -> None:
        """Command-log lines: ``CommandResult``/``HistoryEntry`` objects, mappings or tuples.

        Sending the same line twice is harmless (deduplicated by host, start time and text).
        """
        items = [CommandRecord.from_any(c, lab) for c in commands]
        with self._lock:
            seen = {(c.lab, c.host, c.started, c.command) for c in self.run.commands}
            self.run.commands.extend(c for c in items if (c.lab, c.host, c.started, c.command) not in seen)
            self.run.commands.sort(key=lambda c: c.started)
        self._persist("add_commands", lambda store: store.put_commands(self.run_id, items))

    def finish(self, status: RunStatus = "complete", *, ended: float | None = None, reload: bool = True) -> RunRecord:
        """Close the run; returns the full record (re-read from the store, which holds what the
        xdist workers wrote too, unless the store failed or ``reload`` is False)."""
        ended = time.time() if ended is None else ended
        with self._lock:
            self.run.status = status
            self.run.ended = ended
        self._persist("finish", lambda store: store.finish_run(self.run_id, status, ended))
        if self.store is not None and reload and not self.store_errors:
            try:
                return self.store.load_run(self.run_id)
            except Exception as exc:
                if self.raise_store_errors:
                    raise
                self.store_errors.append(f"reload: {type(exc).__name__}: {exc}")
        return self.run

    def write_reports(self, run: RunRecord | None = None, out_dir: str | os.PathLike[str] | None = None, *,
                      context: Any = None) -> Any:
        """Write ``<out_dir>/<run-id>/`` (CSV, HTML, JUnit, metadata) and update ``<out_dir>/latest``."""
        from vdpalab.reports import write_reports

        target = out_dir if out_dir is not None else self.reports_dir
        if target is None:
            raise RuntimeError("RunCollector: no reports directory")
        return write_reports(run or self.run, target, store_errors=self.store_errors,
                             history_url=self.store.url if self.store is not None else None, context=context)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


__all__ = ["RunCollector", "check_run_id", "status_from_exitstatus"]

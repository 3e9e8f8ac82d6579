"""The history store: schema versioning, idempotent upserts, concurrent writers, a run that
crashes half-way, run references; on SQLite and on a real PostgreSQL server.

The PostgreSQL tests (marker ``postgres``) share one server started for this module by
``vdpalab.testing.postgres.PostgresServer``: initdb into a fresh /tmp directory, ``postgres``
on a unix socket there (no TCP), run as the ``postgres`` system user when we are root,
stopped by its pid at the end. They skip only if the server binaries are not installed.
The concurrency and crash checks take a URL, so both backends run the same code.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from vdpalab.history import HistoryError, HistorySchemaError, HistoryStore, RunCollector, normalize_url
from vdpalab.history import schema as S
from vdpalab.history.collector import status_from_exitstatus
from vdpalab.history.trend import analyze, load_series
from vdpalab.reports import write_reports
from vdpalab.results import CommandRecord, Result, RunFingerprint, TestOutcome
from vdpalab.testing.postgres import PostgresServer, PostgresUnavailable, find_bin_dir
from vdpalab.testing.synthetic import Step, synthetic_runs

pytestmark = pytest.mark.selftest

ROOT = Path(__file__).resolve().parent.parent


def sqlite_url(tmp_path: Path, name: str = "history.sqlite") -> str:
    return f"sqlite:///{tmp_path / name}"


# --------------------------------------------------------------------------- URLs and schema


def test_normalize_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VDPALAB_RESULTS_DB", raising=False)
    assert normalize_url(None) == "sqlite:///reports/history.sqlite"
    assert normalize_url("/tmp/h.sqlite") == "sqlite:////tmp/h.sqlite"
    assert normalize_url("postgresql://u:pw@db/vdpalab") == "postgresql+psycopg://u:pw@db/vdpalab"
    assert normalize_url("postgres://db/v") == "postgresql+psycopg://db/v"
    assert normalize_url("postgresql+psycopg://db/v") == "postgresql+psycopg://db/v"
    assert normalize_url(None, reports_dir="out") == "sqlite:///out/history.sqlite"
    monkeypatch.setenv("VDPALAB_RESULTS_DB", "postgresql://fleet/v")
    assert normalize_url(None) == "postgresql+psycopg://fleet/v"


def test_schema_is_created_once_and_versioned(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    with HistoryStore(url) as store:
        assert store.schema_version == S.SCHEMA_VERSION
    with HistoryStore(url) as store, store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(S.schema_version)).scalar_one() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    with HistoryStore(url) as store, store.engine.begin() as conn:
        conn.execute(insert(S.schema_version).values(version=S.SCHEMA_VERSION + 1, applied_at=0.0,
                                                     vdpalab_version="9.9"))
    with pytest.raises(HistorySchemaError) as exc:
        HistoryStore(url)
    message = str(exc.value)
    assert f"schema version {S.SCHEMA_VERSION + 1}" in message
    assert f"understands up to version {S.SCHEMA_VERSION}" in message and "upgrade vdpalab" in message


def test_foreign_tables_are_not_touched_and_missing_store_is_reported(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE results (x INTEGER)")
    with pytest.raises(HistorySchemaError, match="not a vdpalab store"):
        HistoryStore(f"sqlite:///{path}")
    with pytest.raises(HistoryError, match="no history store"):
        HistoryStore(sqlite_url(tmp_path, "absent.sqlite"), create=False)
    assert not (tmp_path / "absent.sqlite").exists()


# --------------------------------------------------------------------------- writes and reads


def _result(i: int, value: float, *, lab: str = "emu", trial: int = 0) -> Result:
    return Result("tcp_throughput_gbps", value, "Gbit/s", (value, value + 0.1), {"streams": i}, f"t::tp[{i}]",
                  lab, "higher", 1.0 + i, 2.0 + i, trial=trial)


def test_upserts_are_idempotent_and_a_run_round_trips(tmp_path: Path) -> None:
    c = RunCollector(sqlite_url(tmp_path), tmp_path / "reports", raise_store_errors=True)
    fp = RunFingerprint("emu", {"kernel": "6.1.0", "ovs": "3.1.0"}, host="h1")
    c.start_run(fp, run_id="run-1", suite_revision="abc123", pytest_args=["-m", "datapath"], started=100.0)
    c.start_run(fp, run_id="run-1", started=100.0)  # an xdist worker joining: no second row
    for _ in range(3):
        c.add_result([_result(1, 9.0), _result(2, 9.5)])
    c.add_result(_result(1, 9.1))  # same key, new value: updated in place
    c.add_result(_result(1, 8.0, trial=1))  # another trial is another row
    c.add_test_outcome("t::tp[1]", "failed", message="slow", diagnostics={"dmesg": "x"}, lab="emu")
    c.add_test_outcome("t::tp[1]", "failed", message="slow", diagnostics={"dmesg": "x"}, lab="emu")
    cmd = CommandRecord("h1", "iperf3 -c x", 0, 101.0, 3.0, "emu")
    c.add_commands([cmd, cmd])
    c.add_commands([cmd])
    run = c.finish("complete", ended=200.0)
    assert c.store.count_rows() == {"runs": 1, "fingerprints": 1, "outcomes": 1, "results": 3, "commands": 1,
                                    "verdicts": 0, "layer_outcomes": 0}
    assert run.status == "complete" and (run.started, run.ended) == (100.0, 200.0)
    assert run.suite_revision == "abc123" and run.pytest_args == ("-m", "datapath")
    assert run.fingerprints["emu"].components["kernel"] == "6.1.0" and run.fingerprints["emu"].host == "h1"
    values = {(r.test_id, r.trial): r.value for r in run.results}
    assert values == {("t::tp[1]", 0): 9.1, ("t::tp[1]", 1): 8.0, ("t::tp[2]", 0): 9.5}
    r1 = next(r for r in run.results if r.test_id == "t::tp[1]" and r.trial == 0)
    assert r1.samples == (9.1, 9.2) and r1.params == {"streams": 1} and r1.better == "higher"
    assert run.outcomes[0].diagnostics == {"dmesg": "x"}
    assert run.commands == [cmd]
    c.close()


def test_huge_sample_sets_are_subsampled_but_counted(tmp_path: Path) -> None:
    with HistoryStore(sqlite_url(tmp_path)) as store:
        store.begin_run("r", started=1.0)
        store.put_results("r", [Result("ping_rtt_ms", 0.1, "ms", tuple(0.1 + i * 1e-6 for i in range(85742)))])
        (back,) = store.load_results("r")
    assert back.n_samples == 85742 and len(back.samples) == 20000
    assert back.samples[0] == pytest.approx(0.1) and back.samples[-1] == pytest.approx(0.1 + 85741e-6)


def test_resolve_run_references(tmp_path: Path) -> None:
    with HistoryStore(sqlite_url(tmp_path)) as store:
        for i, (rid, lab) in enumerate([("20260101-a", "x"), ("20260102-b", "y"), ("20260103-c", "x")]):
            store.begin_run(rid, started=1000.0 + i, fingerprints=[RunFingerprint(lab)])
            store.finish_run(rid, "complete")
        assert store.resolve("latest") == "20260103-c"
        assert store.resolve("latest~1") == store.resolve("previous") == "20260102-b"
        assert store.resolve("latest", lab="y") == "20260102-b"
        assert store.resolve("20260101") == "20260101-a"
        assert store.previous_run("x", before="20260103-c") == "20260101-a"
        assert store.previous_run("y", before="20260102-b") is None
        with pytest.raises(HistoryError, match="ambiguous"):
            store.resolve("2026")
        with pytest.raises(HistoryError, match="no run"):
            store.resolve("nope")
        with pytest.raises(HistoryError, match="only 3 run"):
            store.resolve("latest~5")
        with pytest.raises(HistoryError, match="never started"):
            store.finish_run("nope", "complete")


def test_status_from_pytest_exit_status() -> None:
    assert [status_from_exitstatus(c) for c in range(6)] == [
        "complete", "complete", "failed", "failed", "failed", "incomplete"]  # 5: nothing collected, not complete


def test_a_run_that_checked_nothing_is_not_complete() -> None:
    def outcome(kind: str) -> TestOutcome:
        return TestOutcome(test_id=f"t::{kind}", outcome=kind, lab="emu")  # type: ignore[arg-type]

    assert status_from_exitstatus(0, []) == "incomplete"  # everything deselected, yet pytest said 0
    assert status_from_exitstatus(0, [outcome("skipped")]) == "incomplete"  # only skips: nothing checked
    assert status_from_exitstatus(0, [outcome("skipped"), outcome("passed")]) == "complete"
    assert status_from_exitstatus(1, [outcome("skipped"), outcome("failed")]) == "complete"  # red, but complete
    assert status_from_exitstatus(1, [outcome("error")]) == "complete"
    assert status_from_exitstatus(2, []) == "failed"


def test_store_errors_do_not_lose_the_report(tmp_path: Path) -> None:
    class Broken:
        url = "sqlite:///broken"

        def __getattr__(self, name: str) -> object:
            def fail(*_a: object, **_k: object) -> None:
                raise OSError("disk on fire")
            return fail

    c = RunCollector(None, tmp_path / "reports")
    c.store = Broken()  # type: ignore[assignment]
    c.start_run(RunFingerprint("emu"), run_id="r1")
    c.add_result(_result(1, 9.0))
    run = c.finish("complete")
    assert len(run.results) == 1 and c.store_errors and "disk on fire" in c.store_errors[0]
    paths = c.write_reports(run)
    assert "could not be written" in paths.report_html.read_text()


# --------------------------------------------------------------------------- concurrency (shared with PostgreSQL)

N_PROCS = 6
N_OWN = 25
N_SHARED = 20


def _writer(url: str, proc: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    """One xdist-worker-like process: joins the shared run, writes shared and own rows, in batches."""
    barrier.wait(30)
    store = HistoryStore(url)  # every process races to create the schema too
    store.begin_run("shared-run", started=1.0, fingerprints=[RunFingerprint("lab-a"), RunFingerprint("lab-b")])
    store.begin_run(f"own-run-{proc}", started=2.0 + proc)
    shared = [Result("m_gbps", float(i), "Gbit/s", (float(i),), {"i": i}, f"t::shared[{i}]", "lab-a", "higher")
              for i in range(N_SHARED)]
    own = [Result("m_gbps", float(i), "Gbit/s", (), {"i": i, "proc": proc}, f"t::own[{i}]", "lab-b", "higher")
           for i in range(N_OWN)]
    for k in range(0, N_SHARED, 5):  # same keys from every process, reversed order in odd ones
        batch = shared[k:k + 5]
        store.put_results("shared-run", batch if proc % 2 else batch[::-1])
    for r in own:
        store.put_results("shared-run", [r])
    store.put_results(f"own-run-{proc}", own)
    store.put_outcomes("shared-run", [TestOutcome(f"t::shared[{i}]", "passed", lab="lab-a") for i in range(5)])
    store.put_commands("shared-run", [CommandRecord("h", "same command", 0, 5.0, 1.0, "lab-a"),
                                      CommandRecord("h", f"own {proc}", 0, 5.0 + proc, 1.0, "lab-b")])
    store.close()


def run_concurrent_writers(url: str) -> HistoryStore:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(N_PROCS)
    procs = [ctx.Process(target=_writer, args=(url, p, barrier)) for p in range(N_PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * N_PROCS, "a writer process failed (see its traceback above)"
    return HistoryStore(url, create=False)


def check_concurrent_rows(store: HistoryStore) -> None:
    counts = store.count_rows()
    assert counts["runs"] == 1 + N_PROCS
    assert counts["results"] == N_SHARED + N_OWN * N_PROCS + N_OWN * N_PROCS
    assert counts["outcomes"] == 5
    assert counts["commands"] == 1 + N_PROCS
    assert counts["fingerprints"] == 2
    with store.engine.connect() as conn:
        dupes = conn.execute(
            select(S.results.c.run_id, S.results.c.test_id, S.results.c.params_key, func.count())
            .group_by(S.results.c.run_id, S.results.c.test_id, S.results.c.params_key)
            .having(func.count() > 1)
        ).all()
        assert dupes == []
        assert conn.execute(select(func.count()).select_from(S.schema_version)).scalar_one() == 1
    shared = {(r.test_id, r.params.get("proc")): r.value for r in store.load_results("shared-run")}
    assert all(shared[(f"t::shared[{i}]", None)] == float(i) for i in range(N_SHARED))
    assert all((f"t::own[{i}]", p) in shared for i in range(N_OWN) for p in range(N_PROCS))
    for p in range(N_PROCS):
        assert len(store.load_results(f"own-run-{p}")) == N_OWN


def test_concurrent_writers_on_sqlite_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    store = run_concurrent_writers(sqlite_url(tmp_path))
    try:
        check_concurrent_rows(store)
    finally:
        store.close()


# --------------------------------------------------------------------------- crash half-way (shared)

CRASHER = textwrap.dedent("""
    import sys, time
    from vdpalab.history import RunCollector
    from vdpalab.results import Result, RunFingerprint
    c = RunCollector(sys.argv[1], None, raise_store_errors=True)
    c.start_run(RunFingerprint("emu", {"kernel": "6.1"}), run_id="crashed-run")
    for i in range(3):
        c.add_result(Result("tcp_throughput_gbps", 9.0 + i, "Gbit/s", (9.0,), {"streams": i}, "t::tp", "emu"))
    c.add_test_outcome("t::tp", "passed", lab="emu")
    print("measured", flush=True)
    time.sleep(120)  # killed here, before finish()
""")


def crash_half_way(url: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, url], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "measured", f"the crashing writer did not get to measure (rc={proc.poll()})"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def check_crashed_run(url: str, reports: Path) -> None:
    with HistoryStore(url, create=False) as store:
        run = store.load_run("crashed-run")
    assert run.status == "incomplete" and run.ended is None
    assert sorted(r.value for r in run.results) == [9.0, 10.0, 11.0]
    assert [o.outcome for o in run.outcomes] == ["passed"]
    html = write_reports(run, reports).report_html.read_text()
    assert "Incomplete run" in html


def test_a_run_that_crashes_half_way_keeps_its_results_marked_incomplete(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    start = time.monotonic()
    crash_half_way(url)
    check_crashed_run(url, tmp_path / "reports")
    assert time.monotonic() - start < 30


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    if find_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries not installed (no /usr/lib/postgresql/*/bin/postgres)")
    try:
        server = PostgresServer(database="vdpalab").start()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        pid = server.pid
        server.stop()
        if pid is not None:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # our server is gone, by its pid


def fresh_db(pg: PostgresServer, name: str) -> str:
    """A new database on the module's server, so tests do not see each other's rows."""
    import psycopg

    with psycopg.connect(host=str(pg.socket_dir), dbname="postgres", user="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg.url.replace(f"/{pg.database}?", f"/{name}?")


@pytest.mark.postgres
def test_server_is_real_postgresql_on_a_unix_socket(pg: PostgresServer) -> None:
    assert pg.url.startswith("postgresql+psycopg://postgres@/vdpalab?host=/tmp/")
    with HistoryStore(pg.url) as store, store.engine.connect() as conn:
        assert store.dialect == "postgresql"
        assert conn.execute(text("SHOW listen_addresses")).scalar_one() == ""
        assert "PostgreSQL" in conn.execute(text("SELECT version()")).scalar_one()
        assert store.schema_version == S.SCHEMA_VERSION


@pytest.mark.postgres
def test_plain_postgresql_urls_use_psycopg3(pg: PostgresServer) -> None:
    url = pg.url.replace("postgresql+psycopg://", "postgresql://")
    with HistoryStore(url) as store:
        assert store.engine.dialect.driver == "psycopg"


@pytest.mark.postgres
def test_concurrent_writers_on_postgresql_lose_and_duplicate_nothing(pg: PostgresServer) -> None:
    store = run_concurrent_writers(fresh_db(pg, "concurrency"))
    try:
        check_concurrent_rows(store)
    finally:
        store.close()


@pytest.mark.postgres
def test_crash_half_way_on_postgresql(pg: PostgresServer, tmp_path: Path) -> None:
    url = fresh_db(pg, "crash")
    crash_half_way(url)
    check_crashed_run(url, tmp_path / "reports")


@pytest.mark.postgres
def test_newer_schema_refused_on_postgresql(pg: PostgresServer) -> None:
    url = fresh_db(pg, "newer")
    with HistoryStore(url) as store, store.engine.begin() as conn:
        conn.execute(insert(S.schema_version).values(version=S.SCHEMA_VERSION + 5, applied_at=0.0,
                                                     vdpalab_version="9"))
    with pytest.raises(HistorySchemaError, match=f"schema version {S.SCHEMA_VERSION + 5}"):
        HistoryStore(url)


@pytest.mark.postgres
def test_trend_over_a_postgresql_history(pg: PostgresServer) -> None:
    url = fresh_db(pg, "trend")
    with HistoryStore(url) as store:
        for run in synthetic_runs(40, 4, steps=[Step(0, 25, 0.85)]):
            store.import_run(run)
        trends = analyze(load_series(store), window=0, workers=1)
    found = {(t.metric, t.test_id, a.index, a.kind) for t in trends for a in t.anomalies}
    assert found == {("tcp_throughput_gbps", "tests_datapath/test_iperf3.py::test_tcp_throughput[cx6dx-0]", 25,
                      "regression")}


# ------------------------------------------------------------------- the .sqlite file on its own
def _read_back_alone(db: Path, tmp_path: Path) -> list[Result]:
    """Copy only the .sqlite file (no -wal, no -shm) elsewhere and read every result from it."""
    alone = tmp_path / "copied" / "history.sqlite"
    alone.parent.mkdir()
    alone.write_bytes(db.read_bytes())
    with HistoryStore(sqlite_url(alone.parent), create=False) as store:
        run_id = store.resolve("latest")
        return store.load_results(run_id)


def test_closing_the_store_folds_the_wal_into_the_sqlite_file(tmp_path: Path) -> None:
    c = RunCollector(sqlite_url(tmp_path), None, raise_store_errors=True)
    c.start_run(RunFingerprint("emu", {}, host="h1"), run_id="run-1", started=100.0)
    c.add_result([_result(1, 9.0), _result(2, 9.5)])
    c.finish("complete", ended=200.0)
    assert (tmp_path / "history.sqlite-wal").exists()  # WAL mode: the rows are in the log so far
    c.close()
    wal = tmp_path / "history.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert sorted(r.value for r in _read_back_alone(tmp_path / "history.sqlite", tmp_path)) == [9.0, 9.5]


def test_a_pytest_run_leaves_a_history_file_complete_on_its_own(tmp_path: Path) -> None:
    """Through the pytest plugin, as CI runs it: the run's metric is in the .sqlite file alone."""
    module = ROOT / "selftest" / f"test_zz_history_alone_{os.getpid()}.py"
    module.write_text('"""Writes one metric (for test_history)."""\nimport pytest\n\n'
                      'pytestmark = pytest.mark.selftest\n\n\n'
                      'def test_one(record):\n    record("copy_check_metric", 4.25, "units", better="higher")\n')
    db = tmp_path / "h" / "history.sqlite"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", str(module), "--lab", str(ROOT / "lab.toml"), "-p", "no:cacheprovider",
             "--results-db", f"sqlite:///{db}", "--reports-dir", str(tmp_path / "reports"), "-q"],
            cwd=ROOT, capture_output=True, text=True, timeout=180)
    finally:
        module.unlink()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wal = db.with_name("history.sqlite-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    results = _read_back_alone(db, tmp_path)
    assert [(r.name, r.value) for r in results] == [("copy_check_metric", 4.25)]

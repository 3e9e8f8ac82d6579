"""``vdpalab report RUN_DIR_OR_ID``: regenerate a run's reports from the history store.

RUN may be a run id (or prefix, ``latest``, ``latest~N``) looked up in the store, or a
run directory ``reports/<run-id>``; a directory whose run is not in the store is rebuilt
from its own metadata.json and results.csv (charts of raw samples need the store).
From the store, the report is compared as the run's own was: with the baseline the history had
then, under the noise bands of the lab file the run was run with (``vdpalab.history.bands``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vdpalab.history.bands import bands_for_run
from vdpalab.history.store import HistoryError, HistoryStore, display_url
from vdpalab.reports import write_reports
from vdpalab.reports.meta import load_run_dir
from vdpalab.reports.view import TREND_HREF, ReportContext, build_context
from vdpalab.results import RunRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="regenerate a run's reports (HTML, CSV, JUnit, metadata) from the history",
        description="Write reports/<run-id>/ again from the history store (or from the run directory itself).",
    )
    p.add_argument("run", metavar="RUN_DIR_OR_ID", help="run id, prefix, latest, latest~N, or a reports/<run-id> dir")
    p.add_argument("--db", default=None, metavar="URL", help="history store (default $VDPALAB_RESULTS_DB or "
                                                             "reports/history.sqlite)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="reports root (default: the run directory's parent, or ./reports)")
    p.set_defaults(handler=run)


def _run_id_of_dir(path: Path) -> str:
    meta = path / "metadata.json"
    if meta.exists():
        try:
            return str(json.loads(meta.read_text(encoding="utf-8"))["run_id"])
        except (ValueError, KeyError):
            pass
    return path.resolve().name


def load(ref: str, db: str | None) -> tuple[RunRecord, str | None, Path | None]:
    """The RunRecord for ``ref``, the store URL it came from (None: from the directory), its directory."""
    path = Path(ref)
    run_dir = path if path.is_dir() else None
    run_id = _run_id_of_dir(path) if run_dir else ref
    try:
        with HistoryStore(db, create=False) as store:
            resolved = store.resolve(run_id)
            return store.load_run(resolved), store.url, run_dir
    except HistoryError as exc:
        if run_dir is not None and (run_dir / "metadata.json").exists():
            print(f"vdpalab report: {exc}; rebuilding from {run_dir}/ instead", file=sys.stderr)
            return load_run_dir(run_dir), None, run_dir
        raise


def context_of(record: RunRecord, url: str | None) -> ReportContext | None:
    """Baseline, sparklines and noise bands for a report rebuilt from the store (None: no store)."""
    if url is None:
        return None
    with HistoryStore(url, create=False) as store:
        bands, said = bands_for_run(store, record.run_id)
        print(said)
        labs = record.labs
        return build_context(store, record, noise_pct={lab: bands.pct for lab in labs},
                             default_noise_pct=dict.fromkeys(labs, bands.default_pct),
                             noise_abs={lab: bands.absolute for lab in labs}, trend_href=TREND_HREF)


def run(args: argparse.Namespace) -> int:
    record, url, run_dir = load(args.run, args.db)
    out = Path(args.out) if args.out else (run_dir.resolve().parent if run_dir else Path("reports"))
    paths = write_reports(record, out, history_url=url, context=context_of(record, url))
    source = display_url(url) if url else f"{run_dir}/ (metadata.json + results.csv)"
    counts = record.counts()
    print(f"run {record.run_id} ({record.status}): {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['error']} errors, {counts['skipped']} skipped, {len(record.results)} metrics; from {source}")
    for p in (paths.report_html, paths.results_csv, paths.junit_xml, paths.metadata_json):
        print(f"  {p}")
    if paths.latest is not None:
        print(f"  {paths.latest} -> {record.run_id}")
    return 0

"""Run reports: ``reports/<run-id>/`` with results.csv, verdicts.csv, report.html, junit.xml, metadata.json,
and ``reports/latest`` pointing at the newest run (replaced atomically).

Files are written to temporary names and renamed into place, so a reader (a CI artifact
upload, a browser) never sees half a file, and a crash leaves the previous version.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vdpalab.results import RunRecord, check_run_id

if TYPE_CHECKING:
    from vdpalab.reports.view import ReportContext

LATEST = "latest"


@dataclass(frozen=True)
class ReportPaths:
    run_dir: Path
    results_csv: Path
    verdicts_csv: Path
    report_html: Path
    junit_xml: Path
    metadata_json: Path
    latest: Path | None


def _atomic_write(path: Path, writer: Callable[[Path], object]) -> Path:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def update_latest(reports_dir: str | os.PathLike[str], run_id: str) -> Path:
    """Point ``<reports_dir>/latest`` at ``<run_id>`` (relative link, atomic ``rename`` over the old one)."""
    reports_dir = Path(reports_dir)
    link = reports_dir / LATEST
    tmp = reports_dir / f".{LATEST}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_id, tmp, target_is_directory=True)
    os.replace(tmp, link)
    return link


def _is_newest(reports_dir: Path, run: RunRecord) -> bool:
    """Only move ``latest`` forward: regenerating an old run's report must not steal it."""
    link = reports_dir / LATEST
    if not link.is_symlink():
        return True
    current = os.readlink(link)
    if current == run.run_id:
        return True
    meta = reports_dir / current / "metadata.json"
    try:
        import json

        started = float(json.loads(meta.read_text(encoding="utf-8"))["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return run.started >= started


def write_reports(
    run: RunRecord,
    out_dir: str | os.PathLike[str],
    *,
    update_latest_link: bool = True,
    store_errors: Sequence[str] = (),
    history_url: str | None = None,
    context: ReportContext | None = None,
) -> ReportPaths:
    """Write every report of ``run`` into ``<out_dir>/<run-id>/`` and move ``<out_dir>/latest``."""
    from vdpalab.history.store import display_url
    from vdpalab.reports.html import write_html
    from vdpalab.reports.junit import write_junit
    from vdpalab.reports.meta import write_metadata
    from vdpalab.reports.tidy import write_results_csv, write_verdicts_csv

    check_run_id(run.run_id)
    root = Path(out_dir)
    run_dir = root / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    shown_url = display_url(history_url) if history_url else None
    files = ["results.csv", "verdicts.csv", "report.html", "junit.xml", "metadata.json"]
    csv_path = _atomic_write(run_dir / "results.csv", lambda p: write_results_csv(run, p))
    verdicts_path = _atomic_write(run_dir / "verdicts.csv", lambda p: write_verdicts_csv(run, p))
    html_path = _atomic_write(run_dir / "report.html",
                              lambda p: write_html(run, p, store_errors=store_errors, history_url=shown_url,
                                                     context=context))
    junit_path = _atomic_write(run_dir / "junit.xml", lambda p: write_junit(run, p))
    meta_path = _atomic_write(run_dir / "metadata.json", lambda p: write_metadata(
        run, p, files=files, store_errors=store_errors, history_url=shown_url))
    latest = None
    if update_latest_link and _is_newest(root, run):
        latest = update_latest(root, run.run_id)
    return ReportPaths(run_dir, csv_path, verdicts_path, html_path, junit_path, meta_path, latest)


__all__ = ["LATEST", "ReportPaths", "update_latest", "write_reports"]

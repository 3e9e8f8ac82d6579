"""``metadata.json``: the run without its results (those are in results.csv).

It holds the fingerprints, outcomes with diagnostics, verdicts and the command log, so a
run directory is self-describing: ``vdpalab report reports/<run-id>`` can rebuild the
HTML and JUnit from the directory alone when the history store is not at hand.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vdpalab import __version__
from vdpalab.results import (
    CommandRecord,
    RunFingerprint,
    RunRecord,
    TestOutcome,
    Verdict,
    VerdictStatus,
    iso,
)

FORMAT = "vdpalab-run/1"


def build_metadata(run: RunRecord, *, files: Sequence[str] = (), store_errors: Sequence[str] = (),
                   history_url: str | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "run_id": run.run_id,
        "status": run.status,
        "started": run.started,
        "ended": run.ended,
        "started_iso": iso(run.started),
        "ended_iso": iso(run.ended),
        "duration_s": run.duration,
        "suite_revision": run.suite_revision,
        "pytest_args": list(run.pytest_args),
        "labs": run.labs,
        "fingerprints": {lab: fp.to_dict() for lab, fp in sorted(run.fingerprints.items())},
        "counts": run.counts(),
        "n_results": len(run.results),
        "outcomes": [o.to_dict() for o in run.outcomes],
        "verdicts": [
            {"test_id": v.test_id, "lab": v.lab, "metric": v.metric, "params": dict(v.params), "kind": v.kind,
             "status": str(v.status), "expected": v.expected, "seen": v.seen, "unit": v.unit, "message": v.message}
            for v in run.verdicts
        ],
        "commands": [c.to_dict() for c in run.commands],
        "history_url": history_url,
        "store_errors": list(store_errors),
        "files": list(files),
        "generated_at": iso(time.time()),
        "vdpalab_version": __version__,
    }


def write_metadata(run: RunRecord, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    path = Path(path)
    data = build_metadata(run, **kwargs)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


def load_run_dir(path: str | os.PathLike[str]) -> RunRecord:
    """Rebuild a RunRecord from ``reports/<run-id>/`` (metadata.json + results.csv; no samples)."""
    from vdpalab.reports.tidy import read_results_csv

    path = Path(path)
    data = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path / 'metadata.json'}: not a vdpalab run ({data.get('format')!r})")
    csv_path = path / "results.csv"
    return RunRecord(
        run_id=data["run_id"], started=data["started"], ended=data.get("ended"), status=data["status"],
        suite_revision=data.get("suite_revision"), pytest_args=tuple(data.get("pytest_args") or ()),
        fingerprints={lab: RunFingerprint.from_dict(fp) for lab, fp in (data.get("fingerprints") or {}).items()},
        outcomes=[TestOutcome.from_dict(o) for o in data.get("outcomes") or ()],
        results=read_results_csv(csv_path) if csv_path.exists() else [],
        commands=[CommandRecord.from_any(c) for c in data.get("commands") or ()],
        verdicts=[Verdict(metric=v["metric"], status=VerdictStatus(v["status"]), message=v["message"],
                          expected=v["expected"], seen=v["seen"], unit=v["unit"], kind=v["kind"],
                          test_id=v["test_id"], lab=v["lab"], params=v.get("params") or {})
                  for v in data.get("verdicts") or ()],
    )

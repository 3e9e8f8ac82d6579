"""``results.csv``: tidy data, one row per metric per test per parameter set (per trial).

Columns: run_id, lab, test_id, metric, value, unit, better, params (canonical JSON), one
``param.<name>`` column per parameter seen in the run, trial, n_samples, stdev, started,
ended (ISO 8601 UTC). Load it with ``pandas.read_csv`` and pivot as you like.

``verdicts.csv``: the judge's verdicts, one row each (``VERDICT_COLUMNS``): metric, limit,
measured, verdict (pass / fail / no baseline), direction, kind (threshold / baseline), source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from vdpalab.results import VERDICT_COLUMNS, Result, RunRecord, iso

BASE_COLUMNS = ["run_id", "lab", "test_id", "metric", "value", "unit", "better", "params", "trial", "n_samples",
                "stdev", "started", "ended"]


def results_frame(run: RunRecord) -> pd.DataFrame:
    """The run's results as a tidy DataFrame (same columns as results.csv)."""
    param_names = sorted({k for r in run.results for k in r.params})
    rows = []
    for r in sorted(run.results, key=lambda r: (r.lab, r.test_id, r.name, r.params_key, r.trial)):
        row: dict[str, object] = {
            "run_id": run.run_id, "lab": r.lab, "test_id": r.test_id, "metric": r.name, "value": r.value,
            "unit": r.unit, "better": r.direction or "", "params": r.params_key, "trial": r.trial,
            "n_samples": r.n_samples, "stdev": r.stats().get("stdev"), "started": iso(r.started),
            "ended": iso(r.ended),
        }
        for name in param_names:
            value = r.params.get(name)
            row[f"param.{name}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
        rows.append(row)
    return pd.DataFrame(rows, columns=BASE_COLUMNS + [f"param.{n}" for n in param_names])


def write_results_csv(run: RunRecord, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    results_frame(run).to_csv(path, index=False, float_format="%.10g")
    return path


def verdicts_frame(run: RunRecord) -> pd.DataFrame:
    """One row per verdict of the judge (``VERDICT_COLUMNS``: metric, limit, measured, verdict, direction, ...)."""
    rows = [{"run_id": run.run_id, **v.row()} for v in sorted(
        run.verdicts, key=lambda v: (v.lab, v.test_id, v.metric, v.params_key, v.kind))]
    return pd.DataFrame(rows, columns=["run_id", *VERDICT_COLUMNS])


def write_verdicts_csv(run: RunRecord, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    verdicts_frame(run).to_csv(path, index=False, float_format="%.10g")
    return path


def read_results_csv(path: str | os.PathLike[str]) -> list[Result]:
    """results.csv -> Results (without samples): lets ``vdpalab report`` work from a run directory alone."""
    frame = pd.read_csv(path, dtype={"params": str, "better": str, "unit": str, "test_id": str, "lab": str},
                        keep_default_na=False, na_values={"value": ["", "nan", "NaN"]})
    out = []
    for row in frame.to_dict("records"):
        out.append(Result(
            name=row["metric"], value=float(row["value"]), unit=row["unit"] or "",
            params=json.loads(row["params"] or "{}"), test_id=row["test_id"], lab=row["lab"],
            better=row["better"] or None, trial=int(row["trial"]), sample_count=int(row["n_samples"] or 0),
            started=_parse_iso(row["started"]), ended=_parse_iso(row["ended"]),
        ))
    return out


def _parse_iso(text: object) -> float | None:
    if not text or not isinstance(text, str):
        return None
    return pd.Timestamp(text).timestamp()

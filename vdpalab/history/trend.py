"""Trend over the history: change detection with ``jumpavg`` (FD.io CSIT's detector).

Each series is (lab, test, metric, parameter set), one point per run, in run start order.
Points are classified with ``jumpavg.classify``: it splits the series into groups of
minimal description length and marks each group that starts a new average as a
``regression`` or a ``progression`` relative to the previous group.

How the values are fed to jumpavg (it assumes bigger is better and values in [0, max]):

* higher-is-better: the value itself;
* lower-is-better (rtt, loss): reflected, ``ceiling - value`` with ``ceiling`` above every
  value seen, so a drop in goodness is still a regression and the spacing of the values
  (hence jumpavg's resolution) is unchanged;
* a failed run (the test failed/errored without a value, or the whole run failed) counts
  as 0 goodness, as CSIT counts it: it shows up as a severe regression;
* no known direction: the value itself; new groups are reported as ``change``, never as
  a regression (but an all-failed group still is one).

Noise (the lab's own bands): jumpavg splits a noisy series of a few runs into groups that differ
by tens of percent on a shared machine. A group whose average differs from the level before it by
no more than the lab's noise band for the metric (``[reports] noise_pct`` / ``default_noise_pct``
of the lab file, 5 % by default; ``vdpalab.history.bands``) joins that level instead of being a
regression or progression: groups are folded left to right, each compared with the level it would
join, so a slow drift still leaves the band after a few steps. A group holding a failed run never
joins. The long-term gate is the larger of the tolerance and the band.

Long term (as CSIT): jumpavg compares each group with the one before it only, so a failed run
followed by nights at a 15 %-lower level reads "progression" and the regression would vanish.
``long_term`` compares the newest group's average with the best group average before the newest
week; worse by more than the tolerance (5 % by default) is a regression until the level recovers.

Cost: ``jumpavg.classify`` is quadratic in the number of points (about 20 ms for 90
points, 0.3 s for 365, in CPython), so by default only the newest ``DEFAULT_WINDOW`` (90)
points of a series are classified, like a dashboard's recent period; the chart shows the
older points shaded. ``window=0`` classifies everything. Series are classified and charted
in worker processes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import jumpavg
import numpy as np
import pandas as pd

from vdpalab.history.bands import NoiseBands
from vdpalab.history.store import HistoryStore

DEFAULT_WINDOW = 90
DEFAULT_TOLERANCE = 0.05  # the newest level may be this much worse than the long-term best (CSIT's 5 %)
LONG_TERM_EXCLUDE_S = 7 * 86400.0  # the newest week is not part of the long-term best
Kind = Literal["regression", "progression", "change"]
KINDS: tuple[Kind, ...] = ("regression", "progression", "change")  # a group with any other comment is "normal"


@dataclass(frozen=True)
class Point:
    run_id: str
    started: float
    value: float  # NaN for a failed run
    failed: bool
    kernel: str | None = None
    firmware: str | None = None

    @property
    def env(self) -> str:
        """What the chart groups points by: kernel and NIC firmware of the lab in that run."""
        return f"{self.kernel or 'kernel ?'} · fw {self.firmware or '?'}"


@dataclass(frozen=True)
class Group:
    start: int  # index of the first point (in the whole series)
    end: int  # one past the last point
    avg: float  # mean of the measured (non-failed) values; NaN if all failed
    comment: str  # jumpavg's comment mapped to the metric's direction: normal/regression/progression/change
    failed: int = 0


@dataclass(frozen=True)
class Anomaly:
    index: int
    run_id: str
    started: float
    kind: Kind
    before: float
    after: float

    @property
    def delta_pct(self) -> float:
        if math.isnan(self.before) or math.isnan(self.after) or self.before == 0:
            return math.nan
        return (self.after - self.before) / abs(self.before) * 100.0


@dataclass
class SeriesTrend:
    lab: str
    test_id: str
    metric: str
    params_key: str
    unit: str
    better: str | None
    points: list[Point]
    groups: list[Group] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    window_start: int = 0
    chart: str | None = None
    long_term_best: float = math.nan  # best average of the groups before the newest week (NaN: none)
    long_term_pct: float = math.nan  # newest group's average vs that best, in %, signed so negative is worse
    long_term_regression: bool = False
    within_noise: int = 0  # jumpavg's changes that stayed inside the lab's noise band (folded into the level)
    bands: NoiseBands = field(default_factory=NoiseBands)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.lab, self.test_id, self.metric, self.params_key)

    @property
    def params_text(self) -> str:
        params = json.loads(self.params_key or "{}")
        return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))

    @property
    def label(self) -> str:
        params = f" [{self.params_text}]" if self.params_text else ""
        return f"{self.lab} {self.test_id} {self.metric}{params}"

    @property
    def last_status(self) -> str:
        return self.groups[-1].comment if self.groups else "no data"

    @property
    def regressed(self) -> bool:
        """What makes ``vdpalab trend`` exit 1: the newest group is a regression (jumpavg), or its level
        is worse than the series' long-term best by more than the tolerance (it has not recovered)."""
        return self.last_status == "regression" or self.long_term_regression


# --------------------------------------------------------------------------- loading


def parse_since(text: str | None, *, now: float | None = None) -> float | None:
    """``30d``, ``12h``, ``2w``, ``90m`` (ago) or an ISO date/time -> epoch seconds."""
    if not text:
        return None
    import time

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
        return (time.time() if now is None else now) - float(m.group(1)) * scale
    try:
        ts = pd.Timestamp(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: expected an ISO date (2026-01-31) or an age like 30d, 12h, 2w")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.timestamp()


def _glob(frame: pd.DataFrame, column: str, pattern: str | None) -> pd.DataFrame:
    if not pattern:
        return frame
    if any(ch in pattern for ch in "*?["):
        values = frame[column].astype(str).unique()
        keep = {v for v in values if fnmatch.fnmatchcase(v, pattern)}
        return frame[frame[column].isin(keep)]
    return frame[frame[column] == pattern]


def load_series(
    store: HistoryStore,
    *,
    lab: str | None = None,
    metric: str | None = None,
    test: str | None = None,
    since: float | None = None,
) -> list[SeriesTrend]:
    """Every selected series with its points (measured values and failed runs), oldest first.

    ``lab``, ``metric`` and ``test`` accept shell globs (``'*rtt*'``).
    """
    res = store.results_frame(since=since)
    res = _glob(_glob(_glob(res, "lab", lab), "metric", metric), "test_id", test)
    if res.empty:
        return []
    keys = ["lab", "test_id", "metric", "params_key"]
    measured = (
        res.groupby(["run_id", *keys], sort=False, dropna=False)
        .agg(value=("value", "mean"), run_started=("run_started", "first"), unit=("unit", "last"),
             better=("better", "last"))
        .reset_index()
    )
    measured["failed"] = False
    series_meta = measured.groupby(keys, sort=False).agg(unit=("unit", "last"), better=("better", "last")).reset_index()

    runs = store.runs_frame(since=since)
    failed_parts = []
    outs = store.outcomes_frame(since=since)
    if not outs.empty:
        bad = outs[outs["outcome"].isin(["failed", "error"])][["run_id", "run_started", "lab", "test_id"]]
        failed_parts.append(bad.merge(series_meta[keys], on=["lab", "test_id"]))
    if not runs.empty:
        dead = runs[(runs["status"] == "failed") & runs["lab"].notna()][["run_id", "started", "lab"]]
        dead = dead.rename(columns={"started": "run_started"})
        failed_parts.append(dead.merge(series_meta[keys], on=["lab"]))
    frames = [measured[["run_id", "run_started", *keys, "value", "failed"]]]
    if failed_parts:
        fails = pd.concat(failed_parts, ignore_index=True).drop_duplicates(["run_id", *keys])
        have = measured[["run_id", *keys]].assign(_have=True)
        fails = fails.merge(have, on=["run_id", *keys], how="left")
        fails = fails[fails["_have"].isna()].drop(columns="_have")
        if not fails.empty:
            fails = fails.assign(value=math.nan, failed=True)
            frames.append(fails[["run_id", "run_started", *keys, "value", "failed"]])
    allpts = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    env = runs[["run_id", "lab", "kernel", "nic_firmware"]].drop_duplicates(["run_id", "lab"])
    allpts = allpts.merge(env, on=["run_id", "lab"], how="left")
    allpts = allpts.sort_values(["run_started", "run_id"], kind="stable")

    meta = {tuple(row[:4]): (row[4], row[5]) for row in series_meta.itertuples(index=False, name=None)}
    out: list[SeriesTrend] = []
    for key, grp in allpts.groupby(keys, sort=True):
        unit, better = meta[key]
        better = better if isinstance(better, str) and better else None
        points = [
            Point(r, float(s), float(v), bool(f), k if isinstance(k, str) else None,
                  fw if isinstance(fw, str) else None)
            for r, s, v, f, k, fw in zip(grp["run_id"].tolist(), grp["run_started"].tolist(), grp["value"].tolist(),
                                         grp["failed"].tolist(), grp["kernel"].tolist(), grp["nic_firmware"].tolist(),
                                         strict=True)
        ]
        out.append(SeriesTrend(lab=key[0], test_id=key[1], metric=key[2], params_key=key[3],
                               unit=unit if isinstance(unit, str) else "", better=better, points=points))
    return out


# --------------------------------------------------------------------------- classification


def goodness(values: Sequence[float], failed: Sequence[bool], better: str | None) -> list[float]:
    """Values on jumpavg's scale (>= 0, bigger is better); failed points are 0."""
    ok = [v for v, f in zip(values, failed, strict=True) if not f and not math.isnan(v)]
    if not ok:
        return [0.0] * len(values)
    lo = min(0.0, min(ok))
    hi = max(ok)
    span = (hi - lo) or (abs(hi) or 1.0)
    if better == "lower":
        ceiling = hi + span
        return [0.0 if f or math.isnan(v) else ceiling - v for v, f in zip(values, failed, strict=True)]
    return [0.0 if f or math.isnan(v) else v - lo for v, f in zip(values, failed, strict=True)]


def long_term(trend: SeriesTrend, groups: Sequence[Group], tolerance: float = DEFAULT_TOLERANCE
              ) -> tuple[float, float, bool]:
    """(best, change %, regression): the newest group's level against the series' long-term best.

    As FD.io CSIT does: the long-term best is the best of the averages of the earlier groups
    that started before the newest week (the maximum for higher-is-better, the minimum for
    lower-is-better; all-failed groups have no average). A newest level worse than it by more
    than ``tolerance`` is a regression that stays until the level recovers, even when jumpavg
    calls the newest group a "progression" (e.g. back from a failed run to a level 15 % lower).
    The gate is the larger of ``tolerance`` and the series' noise band: a level within the lab's
    noise of the best is not a regression.
    """
    if len(groups) < 2 or trend.better not in ("higher", "lower"):
        return math.nan, math.nan, False
    newest = groups[-1]
    cutoff = trend.points[-1].started - LONG_TERM_EXCLUDE_S
    earlier = [g.avg for g in groups[:-1] if not math.isnan(g.avg) and trend.points[g.start].started < cutoff]
    if not earlier or math.isnan(newest.avg):
        return math.nan, math.nan, False
    best = max(earlier) if trend.better == "higher" else min(earlier)
    if best == 0:
        return best, math.nan, False
    change = (newest.avg - best) / abs(best)
    worse = -change if trend.better == "higher" else change  # > 0: worse than the best
    pct = -worse * 100.0  # negative: worse
    gate = max(tolerance, trend.bands.band(trend.metric, best) / abs(best))
    return best, pct, worse > gate


def classify_series(trend: SeriesTrend, window: int = DEFAULT_WINDOW,
                    tolerance: float = DEFAULT_TOLERANCE) -> SeriesTrend:
    """Fill ``groups``/``anomalies``/``window_start`` with jumpavg's verdict and the long-term comparison."""
    pts = trend.points
    n = len(pts)
    start = max(0, n - window) if window and window > 0 else 0
    part = pts[start:]
    if not part:
        return replace(trend, groups=[], anomalies=[], window_start=start)
    values = [p.value for p in part]
    failed = [p.failed for p in part]
    g = goodness(values, failed, trend.better)
    if max(g) <= 0.0:  # all failed (or all zero): one group, nothing to compare
        worked_before = any(not p.failed for p in pts[:start])
        comment = "regression" if all(failed) and worked_before else "normal"
        return replace(trend, groups=[Group(start, n, math.nan if all(failed) else 0.0, comment, sum(failed))],
                       anomalies=[], window_start=start)
    groups, folded = _fold_noise(trend, part, g, start, [len(group.run_list) for group in jumpavg.classify(g)])
    anomalies: list[Anomaly] = []
    for k, group in enumerate(groups):
        if group.comment in KINDS:
            before = groups[k - 1].avg if k else math.nan
            anomalies.append(Anomaly(group.start, pts[group.start].run_id, pts[group.start].started, group.comment,
                                     before, group.avg))
    best, pct, lt_regression = long_term(trend, groups, tolerance)
    return replace(trend, groups=groups, anomalies=anomalies, window_start=start, long_term_best=best,
                   long_term_pct=pct, long_term_regression=lt_regression, within_noise=folded)


def _level(seg: Sequence[Point]) -> float:
    measured = [p.value for p in seg if not p.failed]
    return float(np.mean(measured)) if measured else math.nan


def _comment(before: float, after: float, better: str | None, all_failed: bool) -> str:
    """How a group moved from the one before it, on jumpavg's goodness scale (failed runs are 0), in its words."""
    if after == before:
        return "normal"
    if better not in ("higher", "lower"):
        return "regression" if all_failed else "change"
    return "progression" if after > before else "regression"


def _fold_noise(trend: SeriesTrend, part: Sequence[Point], good: Sequence[float], start: int, sizes: Sequence[int]
                ) -> tuple[list[Group], int]:
    """jumpavg's groups (``sizes``, over ``part`` which starts at index ``start``; ``good``: its goodness),
    each folded into the level before it when its average is within the lab's noise band of that level
    and neither holds a failed run; how many were folded."""
    spans: list[tuple[int, int]] = []  # [start, end) in the whole series
    folded = 0
    i = start
    for size in sizes:
        seg = part[i - start:i - start + size]
        if spans:
            lo, _ = spans[-1]
            joined = part[lo - start:i - start]
            before, after = _level(joined), _level(seg)
            clean = not any(p.failed for p in seg) and not any(p.failed for p in joined)
            if clean and abs(after - before) <= trend.bands.band(trend.metric, before):
                spans[-1] = (lo, i + size)
                folded += 1
                i += size
                continue
        spans.append((i, i + size))
        i += size
    groups: list[Group] = []
    previous = math.nan
    for lo, hi in spans:
        seg = part[lo - start:hi - start]
        level = float(np.mean(good[lo - start:hi - start]))
        failed = sum(p.failed for p in seg)
        comment = _comment(previous, level, trend.better, failed == len(seg)) if groups else "normal"
        groups.append(Group(lo, hi, _level(seg), comment, failed))
        previous = level
    return groups, folded


# --------------------------------------------------------------------------- the whole analysis


def chart_name(trend: SeriesTrend) -> str:
    digest = hashlib.sha1("\0".join(trend.key).encode()).hexdigest()[:8]
    test = trend.test_id.rsplit("::", 1)[-1]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{trend.lab}__{test}__{trend.metric}")[:100]
    return f"{slug}__{digest}.png"


Classified = tuple[list[Group], list[Anomaly], int, str | None, float, float, bool, int]
#: draws one series as PNG bytes (``vdpalab.reports.charts.trend_chart``): trend computes, reports draw
Draw = Callable[..., bytes]


def _work(chunk: list[SeriesTrend], window: int, out_dir: str | None, charts: str,
          dpi: int, tolerance: float = DEFAULT_TOLERANCE, draw: Draw | None = None) -> list[Classified]:
    """Worker: classify a chunk of series and draw their charts with ``draw`` (in a child process).

    Returns only what classification adds (not the points), to keep the pickling cheap.
    """
    done = []
    for trend in chunk:
        t = classify_series(trend, window, tolerance)
        if draw is not None and out_dir is not None and (
            charts == "all" or (charts == "anomalies" and (t.anomalies or t.regressed))
        ):
            path = Path(out_dir) / chart_name(t)
            path.write_bytes(draw(t, dpi=dpi))
            t.chart = path.name
        done.append((t.groups, t.anomalies, t.window_start, t.chart, t.long_term_best, t.long_term_pct,
                     t.long_term_regression, t.within_noise))
    return done


def analyze(
    series: Iterable[SeriesTrend],
    *,
    window: int = DEFAULT_WINDOW,
    out_dir: str | os.PathLike[str] | None = None,
    charts: Literal["all", "anomalies", "none"] = "all",
    workers: int | None = None,
    dpi: int = 72,
    tolerance: float = DEFAULT_TOLERANCE,
    draw: Draw | None = None,
    bands: Mapping[str, NoiseBands] | None = None,
) -> list[SeriesTrend]:
    """Classify every series (and, given ``draw``, draw its chart into ``out_dir``), in parallel processes.

    ``tolerance``: how much worse than its long-term best a series' newest level may be (0.05 = 5 %).
    ``bands``: each lab's noise bands (by lab name; a lab not named keeps the series' own, 5 % by default).
    """
    import multiprocessing

    items = [replace(t, bands=bands[t.lab]) if bands and t.lab in bands else t for t in series]
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    target = None if out_dir is None or charts == "none" else str(out_dir)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(items) < 8 or "fork" not in multiprocessing.get_all_start_methods():
        parts = [(items, _work(items, window, target, charts, dpi, tolerance, draw))]
    else:
        # Interleaved chunks: each worker gets a similar mix of long and short series.
        chunks = [c for c in (items[k::workers * 3] for k in range(workers * 3)) if c]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            futures = [(c, pool.submit(_work, c, window, target, charts, dpi, tolerance, draw)) for c in chunks]
            parts = [(c, f.result()) for c, f in futures]
    done: dict[tuple[str, str, str, str], SeriesTrend] = {}
    for chunk, outcome in parts:
        for trend, (groups, anomalies, start, chart, best, pct, lt, folded) in zip(chunk, outcome, strict=True):
            done[trend.key] = replace(trend, groups=groups, anomalies=anomalies, window_start=start, chart=chart,
                                      long_term_best=best, long_term_pct=pct, long_term_regression=lt,
                                      within_noise=folded)
    return [done[t.key] for t in items]


#: The periods of FD.io CSIT's trending tables: regressions and progressions in the last 1, 7 and 130 days.
PERIODS_DAYS: tuple[int, ...] = (1, 7, 130)


def anomalies_in_period(trends: Sequence[SeriesTrend], days: float,
                        now: float | None = None) -> list[tuple[SeriesTrend, Anomaly]]:
    """Every regression/progression whose group starts in the last ``days`` days, newest first.

    ``now`` defaults to the newest run in the series, so an old history reads the same later.
    """
    if now is None:
        now = max((p.started for t in trends for p in t.points), default=0.0)
    since = now - days * 86400.0
    found = [(t, a) for t in trends for a in t.anomalies if a.started >= since and a.kind != "change"]
    found.sort(key=lambda ta: (ta[1].kind != "regression", -ta[1].started, ta[0].label))
    return found


def trend_frame(trends: Sequence[SeriesTrend]) -> pd.DataFrame:
    rows = []
    for t in trends:
        last = t.groups[-1] if t.groups else None
        rows.append({
            "lab": t.lab, "test_id": t.test_id, "metric": t.metric, "params": t.params_key, "unit": t.unit,
            "better": t.better or "", "points": len(t.points), "failed_points": sum(p.failed for p in t.points),
            "classified_from": t.window_start, "groups": len(t.groups), "last_status": t.last_status,
            "last_group_avg": last.avg if last else math.nan,
            "last_group_runs": (last.end - last.start) if last else 0,
            "regressions": sum(a.kind == "regression" for a in t.anomalies),
            "progressions": sum(a.kind == "progression" for a in t.anomalies),
            "long_term_best": t.long_term_best, "long_term_pct": t.long_term_pct,
            "long_term_regression": t.long_term_regression, "regressed": t.regressed,
            "within_noise": t.within_noise, "noise_band_pct": t.bands.pct_of(t.metric),
            "chart": t.chart or "",
        })
    return pd.DataFrame(rows)


def anomalies_frame(trends: Sequence[SeriesTrend]) -> pd.DataFrame:
    from vdpalab.results import iso

    rows = [{
        "lab": t.lab, "test_id": t.test_id, "metric": t.metric, "params": t.params_key, "index": a.index,
        "run_id": a.run_id, "started": iso(a.started), "kind": a.kind, "before": a.before, "after": a.after,
        "delta_pct": a.delta_pct, "kernel": t.points[a.index].kernel, "firmware": t.points[a.index].firmware,
        "is_last_group": a.index == (t.groups[-1].start if t.groups else -1),
    } for t in trends for a in t.anomalies]
    return pd.DataFrame(rows, columns=["lab", "test_id", "metric", "params", "index", "run_id", "started", "kind",
                                       "before", "after", "delta_pct", "kernel", "firmware", "is_last_group"])

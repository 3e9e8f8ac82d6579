"""Charts as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot state).

``matplotlib.use`` is never called: the Agg canvas is attached to each figure explicitly,
so importing this module changes nothing for other code in the process.

Using ``Figure`` + ``FigureCanvasAgg`` directly (not ``pyplot``) keeps figures out of a
global registry: nothing leaks between charts, and it is safe in worker processes.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vdpalab.results import Result

if TYPE_CHECKING:
    from matplotlib.artist import Artist

    from vdpalab.history.trend import SeriesTrend

# One palette for every chart and the HTML report.
COLORS = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "skip": "#9a6700",
    "neutral": "#57606a",
    "accent": "#0969da",
    "grid": "#d0d7de",
    "regression": "#cf222e",
    "progression": "#1a7f37",
}
CATEGORY = ["#0969da", "#8250df", "#bf3989", "#1b7c83", "#bc4c00", "#4d2d00", "#116329", "#953800",
            "#6e7781", "#0550ae"]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Any) -> None:
    ax.grid(True, color=COLORS["grid"], linewidth=0.6, alpha=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#8c959f")
    ax.tick_params(colors="#24292f", labelsize=8)


def to_png(fig: Figure, dpi: int = 96, *, compress_level: int = 6) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", pil_kwargs={"compress_level": compress_level})
    return buf.getvalue()


def image_stats(png: bytes | str | os.PathLike[str]) -> dict[str, float]:
    """Read a PNG back and describe it: width, height, pixel stdev, share of non-white pixels.

    What "the chart is not blank" means in the self-tests and the benchmark.
    """
    import matplotlib.image as mpimg

    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    img = mpimg.imread(io.BytesIO(data), format="png")
    rgb = img[..., :3]
    return {
        "width": float(img.shape[1]),
        "height": float(img.shape[0]),
        "std": float(rgb.std()),
        "drawn": float((rgb < 0.95).any(axis=-1).mean()),
    }


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def compact_labels(results: Sequence[Result]) -> list[str]:
    """Short, distinct labels: the test's parametrization id when tests differ, the parameters that
    vary across the results, the trial; never the parts every result shares."""
    tests = {r.test_id for r in results}
    varying = sorted({k for r in results for k in r.params
                      if len({repr(x.params.get(k)) for x in results}) > 1})
    labels = []
    for r in results:
        parts = []
        if len(tests) > 1:
            name = r.test_id.rsplit("::", 1)[-1]
            ident = name[name.index("[") + 1:-1] if "[" in name and name.endswith("]") else name
            parts.append(ident.removeprefix(f"{r.lab}-") if r.lab else ident)
        parts.extend(f"{k}={r.params.get(k)}" for k in varying)
        if r.trial:
            parts.append(f"trial {r.trial}")
        labels.append(_short(" · ".join(parts) or r.test_id.rsplit("::", 1)[-1], 40))
    return labels


def metric_chart(results: Sequence[Result], *, title: str | None = None) -> bytes:
    """One metric across its tests/parameter sets: horizontal bars with the value written on them."""
    items = list(results)
    name = items[0].name if items else "metric"
    unit = items[0].unit if items else ""
    labels = compact_labels(items)
    values = [0.0 if math.isnan(r.value) else r.value for r in items]
    fig = _figure(6.4, min(1.2 + 0.3 * len(items), 9.0))
    ax = fig.add_subplot()
    _style(ax)
    ypos = list(range(len(items)))[::-1]
    ax.barh(ypos, values, color=COLORS["accent"], alpha=0.85, height=0.62)
    ax.set_yticks(ypos, labels, fontsize=7.5)
    for y, v in zip(ypos, values, strict=True):
        ax.annotate(f"{v:.4g}", (v, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7,
                    color="#24292f")
    direction = items[0].direction if items else None
    arrow = {"higher": "  (higher is better)", "lower": "  (lower is better)"}.get(direction or "", "")
    ax.set_xlabel(f"{unit}{arrow}", fontsize=8)
    ax.set_title(title or name, fontsize=9.5, loc="left", fontweight="bold")
    ax.margins(x=0.14)
    return to_png(fig)


def samples_chart(results: Sequence[Result], *, title: str | None = None) -> bytes:
    """The raw samples behind a metric, every result overlaid: lines over the sample index when
    there are few samples (iperf3 intervals), step histograms when there are many (ping rtts).
    Histograms span the 0.5-99.5 percentiles; outliers are counted in the legend."""
    import numpy as np

    items = [r for r in results if r.samples]
    labels = compact_labels(items)
    fig = _figure(6.4, 2.9)
    ax = fig.add_subplot()
    _style(ax)
    unit = items[0].unit if items else ""
    many = any(len(r.samples) > 240 for r in items)
    if many:
        allv = np.concatenate([np.asarray(r.samples, float) for r in items])
        lo, hi = np.percentile(allv, [0.5, 99.5])
        if hi <= lo:
            hi = lo + 1e-9
        bins = np.linspace(lo, hi, 61).tolist()
        for k, (r, label) in enumerate(zip(items, labels, strict=True)):
            v = np.asarray(r.samples, float)
            outside = int(((v < lo) | (v > hi)).sum())
            extra = f" ({outside} outside)" if outside else ""
            ax.hist(v, bins=bins, histtype="step", linewidth=1.3, color=CATEGORY[k % len(CATEGORY)],
                    label=f"{label}: p50 {np.median(v):.4g}{extra}")
        ax.set_xlabel(unit, fontsize=8)
        ax.set_ylabel("samples", fontsize=8)
    else:
        for k, (r, label) in enumerate(zip(items, labels, strict=True)):
            xs = range(1, len(r.samples) + 1)
            ax.plot(xs, r.samples, marker="o", markersize=2.5, linewidth=1.1, color=CATEGORY[k % len(CATEGORY)],
                    label=label)
        ax.set_xlabel("interval", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
    if len(items) > 1 or many:
        ax.legend(fontsize=6.5, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "samples", fontsize=9.5, loc="left", fontweight="bold")
    return to_png(fig)


def wrap_label(text: str, width: int = 56) -> str:
    """Wrap a long label on ``·`` boundaries (then on spaces) instead of cutting it: nothing is lost."""
    import textwrap

    lines: list[str] = []
    for k, part in enumerate(text.split(" · ")):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.extend(textwrap.wrap(("· " if k else "") + part, width, break_on_hyphens=False) or [""])
    return "\n".join(lines)


def compare_chart(rows: Sequence[dict[str, Any]], run_a: str, run_b: str) -> bytes:
    """Δ% per shared metric between two runs; green where B is better, red where worse, grey within noise.

    Labels lead with the metric and are wrapped, never cut, so two bars of one test stay apart.
    """
    items = [r for r in rows if r.get("delta_pct") is not None and not math.isnan(r["delta_pct"])]
    labels = [wrap_label(r["label"]) for r in items]
    lines = [label.count("\n") + 1 for label in labels]
    height = 1.3 + 0.15 * sum(lines) + 0.1 * len(items)
    fig = _figure(9.0, min(max(height, 2.2), 40.0))
    ax = fig.add_subplot()
    _style(ax)
    if not items:
        ax.text(0.5, 0.5, "no shared metrics with a non-zero baseline", ha="center", va="center",
                transform=ax.transAxes, color=COLORS["neutral"])
    else:
        # one slot per label line, so a wrapped label never overlaps its neighbour
        ypos, y = [], 0.0
        for n in reversed(lines):
            ypos.append(y + (n - 1) * 0.5 * 0.4)
            y += n * 0.4 + 0.3
        ypos.reverse()
        colors = [COLORS["pass"] if r["change"] == "better" else COLORS["fail"] if r["change"] == "worse"
                  else COLORS["neutral"] for r in items]
        ax.barh(ypos, [r["delta_pct"] for r in items], color=colors, height=0.34)
        ax.set_yticks(ypos, labels, fontsize=7.5)
        for yv, r in zip(ypos, items, strict=True):
            ax.annotate(f"{r['delta_pct']:+.1f}% {r['change']}", (r["delta_pct"], yv),
                        xytext=(4 if r["delta_pct"] >= 0 else -4, 0), textcoords="offset points", va="center",
                        ha="left" if r["delta_pct"] >= 0 else "right", fontsize=6.5, color="#24292f")
        ax.set_ylim(-0.6, y)
        ax.axvline(0, color="#24292f", linewidth=0.8)
        ax.set_xlabel("Δ% (B vs A); grey: within noise", fontsize=8)
        ax.margins(x=0.3)
    ax.set_title(f"A = {run_a}\nB = {run_b}", fontsize=8, loc="left")
    return to_png(fig)


class TrendPlotter:
    """Draws trend charts fast by reusing one figure and updating its artists in place.

    Creating a figure and its axes costs more than drawing a few hundred points, and
    ``vdpalab trend`` draws one chart per series (hundreds). One plotter per process;
    not thread-safe.
    """

    MAX_ENVS = len(CATEGORY)

    def __init__(self, dpi: int = 72) -> None:
        import matplotlib.dates as mdates
        from matplotlib.collections import LineCollection

        self.dpi = dpi
        self.fig = Figure(figsize=(9.6, 3.2), dpi=100)
        FigureCanvasAgg(self.fig)
        self.fig.subplots_adjust(left=0.075, right=0.75, top=0.85, bottom=0.12)
        ax = self.ax = self.fig.add_subplot()
        _style(ax)
        from matplotlib.ticker import MaxNLocator

        locator = mdates.AutoDateLocator(minticks=3, maxticks=6)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.yaxis.set_major_locator(MaxNLocator(5))  # fewer tick labels: text is most of the drawing time
        from matplotlib.patches import Rectangle

        # x in data units, y in axes units (0..1): a full-height band, whatever the y range.
        self.span = Rectangle((0, 0), 1, 1, transform=ax.get_xaxis_transform(), color="#eaeef2", alpha=0.7, lw=0,
                              label="not classified", visible=False)
        ax.add_patch(self.span)
        self.env_lines = [ax.plot([], [], "o", ms=3.2, color=CATEGORY[i], zorder=3)[0] for i in range(self.MAX_ENVS)]
        # Failed runs have no value: drawn along the bottom edge (y in axes units), whatever the direction.
        bottom = ax.get_xaxis_transform()
        self.failed_line = ax.plot([], [], "x", ms=6, mew=1.4, color=COLORS["fail"], zorder=4, label="failed run",
                                   transform=bottom)[0]
        self.groups = LineCollection([], linewidths=1.8, zorder=5)
        ax.add_collection(self.groups)
        self.marks = {
            "regression": ax.plot([], [], "v", ms=8, color=COLORS["regression"], mec="white", mew=0.6, zorder=6,
                                  label="regression")[0],
            "progression": ax.plot([], [], "^", ms=8, color=COLORS["progression"], mec="white", mew=0.6, zorder=6,
                                   label="progression")[0],
            "change": ax.plot([], [], "D", ms=6, color=COLORS["neutral"], mec="white", mew=0.6, zorder=6,
                              label="change")[0],
        }
        self.failed_marks = {kind: ax.plot([], [], marker=line.get_marker(), linestyle="none", ms=8, color=line.get_color(), mec="white",
                                           mew=0.6, zorder=6, transform=bottom)[0]
                             for kind, line in self.marks.items()}
        self.title = ax.set_title("", fontsize=8.5, loc="left")
        self.legend: Any = None

    def render(self, trend: SeriesTrend) -> bytes:
        import numpy as np

        ax = self.ax
        pts = trend.points
        xs = np.asarray([p.started for p in pts], dtype=float) / 86400.0  # matplotlib dates: days since 1970
        envs: dict[str, int] = {}
        for p in pts:
            if not p.failed:
                envs.setdefault(p.env, len(envs))
        ok = [i for i, p in enumerate(pts) if not p.failed]
        handles: list[Artist] = []
        for k, line in enumerate(self.env_lines):
            line.set_data([], [])
            line.set_label(f"_env{k}")
        for env, k in envs.items():
            slot = min(k, self.MAX_ENVS - 1)
            sel = [i for i in ok if envs[pts[i].env] == k]
            line = self.env_lines[slot]
            if k >= self.MAX_ENVS - 1:  # fold the rarest environments into the last colour
                old_x, old_y = line.get_data()
                sel_x = np.concatenate([np.asarray(old_x, float), xs[sel]])
                sel_y = np.concatenate([np.asarray(old_y, float), [pts[i].value for i in sel]])
                line.set_data(sel_x, sel_y)
                line.set_label("other environments")
            else:
                line.set_data(xs[sel], [pts[i].value for i in sel])
                line.set_label(_short(env, 44))
            if line not in handles:
                handles.append(line)
        failed = [i for i, p in enumerate(pts) if p.failed]
        self.failed_line.set_data(xs[failed], [0.04] * len(failed))
        if failed:
            handles.append(self.failed_line)
        if trend.window_start > 0 and len(xs):
            self.span.set_visible(True)
            x0, x1 = xs[0], xs[trend.window_start]
            self.span.set_x(x0)
            self.span.set_width(x1 - x0)
            handles.append(self.span)
        else:
            self.span.set_visible(False)
        segments, colors = [], []
        for g in trend.groups:
            if math.isnan(g.avg):
                continue
            x0, x1 = xs[g.start], xs[g.end - 1]
            segments.append([(x0, g.avg), (x1 if x1 > x0 else x0 + 0.3, g.avg)])
            colors.append({"regression": COLORS["regression"], "progression": COLORS["progression"]}.get(
                g.comment, "#24292f"))
        self.groups.set_segments(segments)
        self.groups.set_color(colors or ["#24292f"])
        for kind, line in self.marks.items():
            sel = [a.index for a in trend.anomalies if a.kind == kind and not pts[a.index].failed]
            line.set_data(xs[sel], [pts[i].value for i in sel])
            on_failed = [a.index for a in trend.anomalies if a.kind == kind and pts[a.index].failed]
            self.failed_marks[kind].set_data(xs[on_failed], [0.1] * len(on_failed))
            if sel or on_failed:
                handles.append(line)
        unit = f" [{trend.unit}]" if trend.unit else ""
        better = {"higher": "  ↑ better", "lower": "  ↓ better"}.get(trend.better or "", "")
        ax.set_ylabel(f"{trend.metric}{unit}", fontsize=8)
        status = trend.last_status
        params = f" · {trend.params_text}" if trend.params_text else ""
        self.title.set_text(f"{trend.lab} · {_short(trend.test_id.rsplit('::', 1)[-1], 48)} · {trend.metric}"
                            f"{better}\n{_short(params.removeprefix(' · '), 70) or 'no parameters'}"
                            f" · newest group: {status}")
        self.title.set_color(COLORS["regression"] if status == "regression" else "#24292f")
        ax.relim()
        ax.autoscale_view()
        if self.legend is not None:
            self.legend.remove()
        self.legend = ax.legend(handles=handles, fontsize=6.5, frameon=False, loc="upper left",
                                bbox_to_anchor=(1.0, 1.02))
        return to_png(self.fig, dpi=self.dpi, compress_level=1)  # hundreds of charts: favour speed over size


_PLOTTERS: dict[int, TrendPlotter] = {}


def trend_chart(trend: SeriesTrend, *, dpi: int = 72) -> bytes:
    """One series over the history: points coloured by (kernel, firmware), failed runs as red
    crosses, jumpavg group averages as steps, regressions (▼) and progressions (▲) marked."""
    plotter = _PLOTTERS.get(dpi)
    if plotter is None:
        plotter = _PLOTTERS[dpi] = TrendPlotter(dpi)
    return plotter.render(trend)


def overview_chart(trends: Sequence[SeriesTrend], *, max_rows: int = 400) -> bytes:
    """Every series in one heat map: rows are series, columns are runs (oldest left).

    Colour is the deviation from the series' median, signed so that green is better and red
    worse whatever the metric's direction; failed runs are black. A regression shows as a row
    turning red, a kernel or firmware change as many rows changing colour in the same column.
    """
    import numpy as np
    from matplotlib.colors import ListedColormap

    rows = list(trends)[:max_rows]
    runs = sorted({(p.started, p.run_id) for t in rows for p in t.points})
    col = {rid: i for i, (_, rid) in enumerate(runs)}
    grid = np.full((max(len(rows), 1), max(len(runs), 1)), np.nan)
    failed = np.zeros_like(grid, dtype=bool)
    for r, t in enumerate(rows):
        vals = np.asarray([p.value for p in t.points if not p.failed], dtype=float)
        med = float(np.median(vals)) if len(vals) else math.nan
        sign = -1.0 if t.better == "lower" else 1.0
        for p in t.points:
            c = col[p.run_id]
            if p.failed:
                failed[r, c] = True
            elif med and not math.isnan(med):
                grid[r, c] = sign * (p.value - med) / abs(med) * 100.0
    height = min(2.0 + 0.11 * len(rows), 48.0)
    fig = Figure(figsize=(11.0, height), dpi=100)
    FigureCanvasAgg(fig)
    left = 0.25
    fig.subplots_adjust(left=left, right=0.93, top=1 - 0.9 / height, bottom=0.6 / height)
    ax = fig.add_subplot()
    cmap = matplotlib_cmap("RdYlGn").with_extremes(bad="#f6f8fa")
    image = ax.imshow(np.clip(grid, -15, 15), aspect="auto", cmap=cmap, vmin=-15, vmax=15, interpolation="nearest")
    if failed.any():
        black = np.ma.masked_where(~failed, failed.astype(float))
        ax.imshow(black, aspect="auto", cmap=ListedColormap(["#1f2328"]), interpolation="nearest")
    def ident(t: SeriesTrend) -> str:
        name = t.test_id.rsplit("::", 1)[-1]
        return name[name.index("[") + 1:-1] if "[" in name and name.endswith("]") else name

    # Short labels (lab, metric, the test's parametrization id): glyphs are most of the drawing time.
    labels = [_short(f"{t.lab} · {t.metric} · {ident(t)}", 44) for t in rows]
    fontsize = 6 if len(rows) <= 120 else 4.5
    ax.set_yticks(range(len(rows)), labels, fontsize=fontsize)
    for tick, t in zip(ax.get_yticklabels(), rows, strict=True):
        if t.regressed:
            tick.set_color(COLORS["regression"])
            tick.set_fontweight("bold")
    step = max(1, len(runs) // 8)
    from vdpalab.results import iso

    ax.set_xticks(range(0, len(runs), step), [iso(runs[i][0])[:10] for i in range(0, len(runs), step)],
                  fontsize=7)
    ax.set_title(f"{len(rows)} series × {len(runs)} runs — deviation from each series' median "
                 "(green better, red worse, black failed; red labels: last group is a regression)",
                 fontsize=8, loc="left")
    cbar = fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    cbar.set_label("% vs median (signed: + is better)", fontsize=7)
    cbar.ax.tick_params(labelsize=6)
    return to_png(fig, dpi=80)


def matplotlib_cmap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name]

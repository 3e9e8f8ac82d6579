"""The end-of-run summary on the terminal, in the style of pytest-benchmark's table.

Per lab: the verdict, the baseline it was compared with, the headline figures, then one row
per check, parameter set and key figure: measured value with its unit, the threshold verdict,
the baseline value, Δ% and whether that is better, worse or within noise. Failed and errored
checks come first, with the first line of their message. Pure text: ``summary_lines`` returns
segments with colour hints, ``format_summary`` the plain text (logs, tests).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

from vdpalab.reports.view import (
    CheckView,
    FigureView,
    LabView,
    RunView,
    first_line,
    fmt_value,
    terminal_figure,
    verdict_text,
)
from vdpalab.results import iso

Segment = tuple[str, dict[str, bool]]
Line = list[Segment]

HEADER = ("check [parameters]", "metric", "measured", "verdict (limit)", "baseline", "Δ", "change")
MAX_MESSAGE = 160

_CHANGE_MARKUP = {"better": {"green": True}, "worse": {"red": True, "bold": True}}


def _pct(figure: FigureView) -> str:
    pct = figure.change.delta_pct
    if figure.change.kind in ("new", "n/a", "missing"):
        return ""
    if math.isnan(pct):
        delta = figure.change.delta
        return "" if math.isnan(delta) else f"{delta:+.4g}"
    return f"{pct:+.2f}%"


def _change(figure: FigureView) -> str:
    kind = figure.change.kind
    if kind == "new":
        return "no baseline"
    if kind == "within noise":
        return f"within noise ({figure.change.noise_source})"
    return kind


def _check_label(check: CheckView) -> str:
    head = {"failed": "FAILED ", "error": "ERROR "}.get(check.outcome, "")
    if not head and check.bad:
        head = "OUT OF LIMITS "
    return head + check.title


def _rows(lab: LabView) -> tuple[list[tuple[list[str], dict[str, bool], str]], list[str]]:
    """(cells, row markup, message line) per key figure, and the passed checks that have no key figure."""
    rows = []
    quiet = []
    for check in lab.checks:
        if check.outcome == "skipped":
            continue
        figures = [f for f in check.figures if terminal_figure(f)]
        markup = {"red": True} if check.bad else {}
        message = ""
        if check.bad:
            message = first_line(check.message, MAX_MESSAGE)
        if not figures:
            if check.bad:
                rows.append(([_check_label(check), "—", "", "", "", "", ""], markup, message))
            else:
                quiet.append(check.title)
            continue
        for k, f in enumerate(figures):
            verdicts = ", ".join(verdict_text(v) for v in f.verdicts) or "—"
            base = fmt_value(f.change.base, f.unit) if f.change.base is not None else "—"
            rows.append(([_check_label(check) if k == 0 else "", f.label, fmt_value(f.value, f.unit), verdicts, base,
                          _pct(f), _change(f)], {"red": True} if f.failed else markup,
                         message if k == len(figures) - 1 else ""))
    return rows, quiet


def _cells(values: Sequence[str], widths: Sequence[int]) -> str:
    """Fixed-width columns; numbers (measured, baseline, Δ) right-aligned."""
    return "  ".join(v.rjust(w) if i in (2, 4, 5) else v.ljust(w)
                     for i, (v, w) in enumerate(zip(values, widths, strict=False))).rstrip()


def _headline(lab: LabView) -> str:
    parts = []
    for h in lab.headlines:
        change = h.change.describe() if h.change.kind not in ("new", "n/a") else "no baseline"
        if h.tester_limited:
            change = h.limited_text
        elif h.limited:
            change = f"{change}; {h.limited_text}"
        parts.append(f"{h.spec.title}{f' ({h.scope})' if h.scope else ''} {h.shown} ({change})")
    for s in lab.statuses:
        parts.append(f"{s.title}: {s.text}" + (f" ({s.detail})" if s.outcome == "passed" and s.detail else ""))
    return " · ".join(parts)


def summary_lines(view: RunView, *, width: int = 160) -> list[Line]:
    """The summary as lines of (text, markup) segments."""
    out: list[Line] = []
    for lab in view.labs:
        counts = ", ".join(f"{n} {k}" for k, n in lab.counts.items() if n) or "no test ran"
        title = f" vdpalab summary: lab {lab.lab or '?'} "
        out.append([(title.center(min(width, 120), "="), {"bold": True})])
        verdict_markup = {"green": True, "bold": True} if lab.verdict == "passed" else {"red": True, "bold": True}
        base = (f"baseline {lab.baseline.run_id} ({lab.baseline.how})" if lab.baseline
                else "no baseline run in the history (first run of this lab, or none passed)")
        out.append([("verdict ", {}), (lab.verdict.upper(), verdict_markup), (f" · {counts} · {base}", {})])
        if lab.teardown_failed:
            out.append([(f"teardown of {', '.join(lab.teardown_failed)} failed: the lab was not fully restored",
                         {"red": True, "bold": True})])
        if view.incomplete_reason:
            out.append([(view.incomplete_reason, {"yellow": True, "bold": True})])
        headline = _headline(lab)
        if headline:
            for k, part in enumerate(textwrap.wrap(headline, width=max(60, min(width, 140)) - 10)):
                out.append([(("headline: " if k == 0 else " " * 10) + part, {})])
        rows, quiet = _rows(lab)
        if rows:
            widths = [max(len(h), *(len(r[0][i]) for r in rows)) for i, h in enumerate(HEADER)]
            out.append([(_cells(HEADER, widths), {"bold": True})])
            out.append([("  ".join("-" * w for w in widths), {})])
            for values, markup, message in rows:
                change = values[-1].split(" ")[0]
                line: Line = [(_cells(values[:-1], widths) + "  ", markup),
                              (values[-1], _CHANGE_MARKUP.get(change, markup))]
                out.append(line)
                if message:
                    out.append([(f"    └ {message}", {"red": True})])
        if quiet:
            out.append([(f"passed, no key figures: {', '.join(quiet)}", {"green": True})])
        skipped = [c for c in lab.checks if c.outcome == "skipped"]
        for c in skipped:
            reason = first_line(c.message, MAX_MESSAGE)
            out.append([(f"skipped {c.title}: {reason}", {"yellow": True})])
    if view.run.run_id:
        out.append([(f"run {view.run.run_id} started {iso(view.run.started)}; "
                     "change = beyond the noise band (trial spread, else the lab's tolerance, 5% by default)", {})])
    return out


def format_summary(view: RunView, *, width: int = 160) -> str:
    return "\n".join("".join(text for text, _ in line) for line in summary_lines(view, width=width))

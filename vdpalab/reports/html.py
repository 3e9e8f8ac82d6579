"""``report.html``: one self-contained file (inline CSS, charts as base64 PNG, no JavaScript).

It opens offline, can be mailed or attached to a CI job, and reads top-down: status and
counts, the per-test table, metrics with charts and verdicts, failures with their
diagnostics (collapsed), the fingerprint of every lab, and the command log.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from vdpalab import __version__
from vdpalab.reports import charts
from vdpalab.results import Result, RunRecord, TestOutcome, Verdict, iso

MAX_METRIC_CHARTS = 40
MAX_SAMPLE_CHARTS = 24
MAX_COMMAND_ROWS = 5000

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--pass:#1a7f37;--fail:#cf222e;--skip:#9a6700;
--err:#8250df;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI","Noto Sans",Helvetica,Arial,sans-serif;
color:var(--fg);background:#fff}
header{background:#24292f;color:#fff;padding:18px 32px 16px}
header .kicker{font-size:12px;letter-spacing:.08em;text-transform:uppercase;color:#9198a1}
header h1{margin:4px 0 6px;font-size:22px;font-weight:600;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
header .meta{color:#d1d9e0;font-size:13px}
header .meta span{margin-right:18px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);padding:8px 32px;z-index:2}
nav a{color:var(--accent);text-decoration:none;margin-right:18px;font-size:13px}
main{padding:8px 32px 40px;max-width:1400px}
h2{font-size:17px;margin:28px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:18px 0 6px}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:600;
vertical-align:middle;margin-left:10px;color:#fff}
.s-complete,.o-passed,.v-pass{background:var(--pass)}
.s-incomplete,.o-skipped{background:var(--skip)}
.s-failed,.o-failed,.v-fail{background:var(--fail)}
.o-error{background:var(--err)}
.v-no-baseline{background:#6e7781}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0 6px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:120px;background:#fff}
.card .n{font-size:26px;font-weight:600;line-height:1.1}
.card .l{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.card.passed .n{color:var(--pass)}.card.failed .n{color:var(--fail)}.card.error .n{color:var(--err)}
.card.skipped .n{color:var(--skip)}
.bar{display:flex;height:10px;border-radius:5px;overflow:hidden;background:var(--bg);margin:10px 0 4px;
}
.bar div{height:100%}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600;font-size:12px;color:var(--muted);text-transform:uppercase;
letter-spacing:.03em}
tbody tr:nth-child(even){background:#fbfcfd}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:10px;overflow:auto;
max-height:420px;white-space:pre-wrap;word-break:break-all}
.pill{display:inline-block;min-width:64px;text-align:center;padding:1px 8px;border-radius:999px;color:#fff;
font-size:11px;font-weight:600;text-transform:uppercase}
.muted{color:var(--muted)}
.vp{text-transform:none;white-space:nowrap;margin:1px 0;font-weight:500;display:inline-block}
td.nw{white-space:nowrap}
.rcbad{color:var(--fail);font-weight:600}
details{border:1px solid var(--line);border-radius:6px;margin:8px 0;padding:6px 10px;background:#fff}
details>summary{cursor:pointer;font-weight:600}
details details{margin-left:10px}
.metric{border:1px solid var(--line);border-radius:8px;padding:10px 14px;margin:12px 0}
.metric img,.chart{max-width:100%;height:auto;display:block;margin:6px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:10px}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;margin:10px 0}
footer{color:var(--muted);font-size:12px;padding:16px 32px;border-top:1px solid var(--line)}
"""

_OUTCOME_COLORS = {"passed": "#1a7f37", "failed": "#cf222e", "error": "#8250df", "skipped": "#9a6700"}


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img class="chart" alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _fmt(value: float | None, digits: int = 6) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {sec:02d}s" if hours else f"{minutes}m {sec:02d}s"


def _params(result: Result) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(result.params.items())) or "—"


def _verdict_badge(v: Verdict) -> str:
    status = str(v.status)
    cls = {"pass": "v-pass", "fail": "v-fail"}.get(status, "v-no-baseline")
    if status == "no baseline":
        label = "? no baseline"
    else:
        expected = v.expected.split(" (")[0].replace("<=", "≤").replace(">=", "≥")
        kind = "limit" if v.kind == "threshold" else "baseline"
        label = f"{'✓' if status == 'pass' else '✗'} {kind} {expected}"
    return f'<span class="pill vp {cls}" title="{_e(v.message)}">{_e(label)}</span>'


def _summary(run: RunRecord) -> str:
    counts = run.counts()
    total = sum(counts.values())
    n_fail_verdicts = sum(v.failed for v in run.verdicts)
    n_nobase = sum(str(v.status) == "no baseline" for v in run.verdicts)
    cards = [("tests", total, "")] + [(k, counts[k], k) for k in ("passed", "failed", "error", "skipped")]
    cards += [("metrics", len(run.results), ""), ("labs", len(run.labs), "")]
    if run.verdicts:
        cards.append(("verdicts failed", n_fail_verdicts, "failed" if n_fail_verdicts else "passed"))
    if n_nobase:
        cards.append(("no baseline", n_nobase, "skipped"))
    out = ['<div class="cards">']
    for label, n, cls in cards:
        out.append(f'<div class="card {cls}"><div class="n">{n}</div><div class="l">{_e(label)}</div></div>')
    out.append("</div>")
    if total:
        out.append('<div class="bar" title="passed / failed / error / skipped">')
        for k in ("passed", "failed", "error", "skipped"):
            if counts[k]:
                out.append(f'<div style="width:{counts[k] / total * 100:.2f}%;background:{_OUTCOME_COLORS[k]}"></div>')
        out.append("</div>")
    return "\n".join(out)


def _tests_table(run: RunRecord) -> str:
    order = {"failed": 0, "error": 1, "skipped": 3, "passed": 2}
    rows = []
    for o in sorted(run.outcomes, key=lambda o: (order[o.outcome], o.lab, o.test_id)):
        first = o.message.strip().splitlines()[0] if o.message.strip() else ""
        link = f' <a href="#fail-{_e(_anchor(o))}">details</a>' if o.outcome in ("failed", "error") else ""
        rows.append(
            f'<tr><td><span class="pill o-{o.outcome}">{o.outcome}</span></td><td class="mono">{_e(o.test_id)}</td>'
            f"<td class=nw>{_e(o.lab)}</td><td class=num>{o.duration:.2f} s</td><td>{_e(first[:300])}{link}</td></tr>"
        )
    if not rows:
        return '<p class="muted">No test outcomes were recorded.</p>'
    return ("<table><thead><tr><th>status</th><th>test</th><th>lab</th><th>duration</th><th>message</th></tr>"
            "</thead><tbody>" + "".join(rows) + "</tbody></table>")


def _anchor(o: TestOutcome) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in f"{o.lab}-{o.test_id}")[:120]


def _metrics(run: RunRecord) -> str:
    if not run.results:
        return '<p class="muted">No metrics were recorded.</p>'
    verdicts: dict[tuple[str, str, str, str], list[Verdict]] = defaultdict(list)
    for v in run.verdicts:
        verdicts[(v.lab, v.test_id, v.metric, v.params_key)].append(v)
    by_metric: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for r in run.results:
        by_metric[(r.lab, r.name)].append(r)
    out = []
    n_charts = 0
    n_sample_charts = 0
    seen: set[tuple[str, str, tuple[float, ...]]] = set()
    for (lab, name), items in sorted(by_metric.items()):
        items.sort(key=lambda r: (r.test_id, r.params_key, r.trial))
        direction = items[0].direction
        arrow = {"higher": "higher is better", "lower": "lower is better"}.get(direction or "", "no direction")
        out.append(f'<div class="metric"><h3>{_e(name)} <span class="muted">· {_e(lab)} · {_e(items[0].unit)}'
                   f" · {arrow}</span></h3>")
        rows = []
        for r in items:
            stats = r.stats()
            badges = " ".join(_verdict_badge(v) for v in verdicts.get((r.lab, r.test_id, r.name, r.params_key), []))
            rows.append(
                f'<tr><td class="mono">{_e(r.test_id)}</td><td>{_e(_params(r))}</td><td class=num>{r.trial}</td>'
                f"<td class=num><b>{_fmt(r.value)}</b></td><td>{_e(r.unit)}</td><td class=num>{r.n_samples}</td>"
                f"<td class=num>{_fmt(stats.get('stdev'), 4)}</td><td class=num>{_fmt(stats.get('min'), 4)}</td>"
                f"<td class=num>{_fmt(stats.get('max'), 4)}</td><td>{badges}</td></tr>"
            )
        out.append("<table><thead><tr><th>test</th><th>params</th><th>trial</th><th>value</th><th>unit</th><th>n</th>"
                   "<th>stdev</th><th>min</th><th>max</th><th>verdicts</th></tr></thead><tbody>"
                   + "".join(rows) + "</tbody></table>")
        charts_html = []
        values = {round(r.value, 12) for r in items if not math.isnan(r.value)}
        if n_charts < MAX_METRIC_CHARTS and len(items) > 1 and len(values) > 1:
            charts_html.append(_img(charts.metric_chart(items, title=f"{name} per test/parameters"),
                                    f"{name} per test"))
            n_charts += 1
        # The raw samples, once per measurement (avg, max and p99 of one ping share their samples).
        fresh = [r for r in items if len(r.samples) >= 3 and (r.test_id, r.params_key, r.samples) not in seen]
        seen.update((r.test_id, r.params_key, r.samples) for r in fresh)
        if fresh and n_sample_charts < MAX_SAMPLE_CHARTS:
            title = f"raw samples behind {name} ({fresh[0].unit})"
            charts_html.append(_img(charts.samples_chart(fresh, title=title), f"{name} samples"))
            n_sample_charts += 1
        if charts_html:
            out.append('<div class="grid">' + "".join(f"<div>{c}</div>" for c in charts_html) + "</div>")
        out.append("</div>")
    if n_charts >= MAX_METRIC_CHARTS or n_sample_charts >= MAX_SAMPLE_CHARTS:
        out.append('<p class="muted">Chart limit reached: further metrics are shown as tables only '
                   "(all values are in results.csv).</p>")
    return "\n".join(out)


def _failures(run: RunRecord) -> str:
    bad = [o for o in run.outcomes if o.outcome in ("failed", "error")]
    if not bad:
        return '<p class="muted">No failures.</p>'
    out = []
    for o in sorted(bad, key=lambda o: (o.lab, o.test_id)):
        out.append(f'<details id="fail-{_e(_anchor(o))}" open><summary><span class="pill o-{o.outcome}">{o.outcome}'
                   f'</span> <span class="mono">{_e(o.test_id)}</span> <span class="muted">({_e(o.lab)})</span>'
                   f"</summary><pre>{_e(o.message or '(no message)')}</pre>")
        for name, text in o.diagnostics.items():
            out.append(f"<details><summary>{_e(name)}</summary><pre>{_e(text)}</pre></details>")
        out.append("</details>")
    return "\n".join(out)


def _fingerprints(run: RunRecord) -> str:
    if not run.fingerprints:
        return '<p class="muted">No fingerprint was recorded.</p>'
    labs = sorted(run.fingerprints)
    components: list[str] = []
    for lab in labs:
        for name, _ in run.fingerprints[lab].ordered():
            if name not in components:
                components.append(name)
    head = "".join(f"<th>{_e(lab)}</th>" for lab in labs)
    rows = [f"<tr><td>host</td>{''.join(f'<td>{_e(run.fingerprints[lab].host or chr(8212))}</td>' for lab in labs)}"
            "</tr>"]
    for comp in components:
        cells = []
        for lab in labs:
            version = run.fingerprints[lab].get(comp)
            cells.append(f'<td class="mono">{_e(version)}</td>' if version else '<td class="muted">unknown</td>')
        rows.append(f"<tr><td>{_e(comp)}</td>{''.join(cells)}</tr>")
    table = (f"<table style='width:auto;min-width:480px'><thead><tr><th>component</th>{head}</tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>")
    extra = (f"<p class=muted>suite revision <code>{_e(run.suite_revision or 'unknown')}</code> · pytest "
             f"<code>{_e(' '.join(run.pytest_args) or '(no arguments)')}</code></p>")
    return table + extra


def _commands(run: RunRecord) -> str:
    if not run.commands:
        return '<p class="muted">No commands were logged.</p>'
    n_bad = sum(1 for c in run.commands if c.rc not in (0, None))
    rows = []
    for c in run.commands[:MAX_COMMAND_ROWS]:
        rc_cls = "rcbad" if c.rc not in (0, None) else ""
        rows.append(
            f"<tr><td class=num>+{c.started - run.started:.2f} s</td><td class=nw>{_e(c.lab)}</td><td>{_e(c.host)}</td>"
            f'<td class="num {rc_cls}">{_e("—" if c.rc is None else c.rc)}</td><td class=num>{c.duration:.3f} s</td>'
            f'<td class="mono">{_e(c.command)}</td></tr>'
        )
    more = (f'<p class="muted">{len(run.commands) - MAX_COMMAND_ROWS} more lines in metadata.json.</p>'
            if len(run.commands) > MAX_COMMAND_ROWS else "")
    return (f"<details{' open' if len(run.commands) <= 60 else ''}><summary>{len(run.commands)} commands, "
            f"{n_bad} with a non-zero exit status</summary><table><thead><tr><th>at</th><th>lab</th><th>host</th>"
            "<th>rc</th><th>took</th><th>command</th></tr></thead><tbody>" + "".join(rows)
            + f"</tbody></table>{more}</details>")


def render_html(run: RunRecord, *, store_errors: Sequence[str] = (), history_url: str | None = None) -> str:
    labs = ", ".join(run.labs) or "no lab"
    warn = ""
    if run.status == "incomplete":
        warn += ('<div class="warn"><b>Incomplete run.</b> The session did not finish (it crashed, was killed, '
                 "or is still running); what was measured before that is shown.</div>")
    if store_errors:
        warn += ('<div class="warn"><b>The history store could not be written.</b> This report is complete; '
                 "the history is not.<pre>" + _e("\n".join(store_errors)) + "</pre></div>")
    body = f"""
<header>
  <div class="kicker">vdpa-lab · run report</div>
  <h1>{_e(run.run_id)}<span class="badge s-{_e(run.status)}">{_e(run.status)}</span></h1>
  <div class="meta"><span>labs: <b>{_e(labs)}</b></span><span>started {_e(iso(run.started))}</span>
  <span>duration {_e(_duration(run.duration))}</span><span>revision {_e(run.suite_revision or 'unknown')}</span></div>
</header>
<nav><a href="#summary">Summary</a><a href="#tests">Tests</a><a href="#metrics">Metrics</a>
<a href="#failures">Failures</a><a href="#fingerprint">Fingerprint</a><a href="#commands">Command log</a></nav>
<main>
{warn}
<section id="summary">{_summary(run)}</section>
<section id="tests"><h2>Tests</h2>{_tests_table(run)}</section>
<section id="metrics"><h2>Metrics</h2>{_metrics(run)}</section>
<section id="failures"><h2>Failures and diagnostics</h2>{_failures(run)}</section>
<section id="fingerprint"><h2>Fingerprint</h2>{_fingerprints(run)}</section>
<section id="commands"><h2>Command log</h2>{_commands(run)}</section>
</main>
<footer>Generated by vdpalab {_e(__version__)} at {_e(iso(__import__('time').time()))}
{' · history ' + _e(history_url) if history_url else ''} · files: results.csv, junit.xml, metadata.json</footer>
"""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>vdpa-lab {_e(run.run_id)} ({_e(run.status)})</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>\n")


def write_html(run: RunRecord, path: str | os.PathLike[str], **kwargs: object) -> Path:
    path = Path(path)
    path.write_text(render_html(run, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return path

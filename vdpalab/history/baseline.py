"""Which run a new run is judged against (``--baseline``): one function, ``pick_baseline``.

The order, first match wins:

1. an explicit run (``--baseline-run RUN_ID``);
2. the run pinned for the lab (``vdpalab baseline pin RUN_ID``, stored in the history);
3. the newest earlier *complete* run of the lab whose relevant tests all passed: every test
   that recorded one of the judged metrics passed, and none of its verdicts on them failed.
   When that run was itself judged against a baseline (and passed), its baseline is used:
   a run that passed its gate hands its reference on, so a drift of 4% a night against a
   5% gate is measured against one reference (-7.8% on the second night: red) instead of
   against yesterday's already-drifted level (-4% every night: green for ever). A new level
   is accepted on purpose by pinning it.

The reports helper's terminal summary and the HTML report call the same function, so what
they show as "the baseline" is what the gate used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from vdpalab.history import schema as S
from vdpalab.history.store import HistoryStore

BAD_OUTCOMES = ("failed", "error")


@dataclass(frozen=True)
class BaselineChoice:
    """The baseline run of one lab (``run_id`` None: there is none) and why it was chosen."""

    lab: str
    run_id: str | None
    how: str  # "explicit", "pinned", "last-good", "last-good's baseline", "none"
    reason: str

    def describe(self) -> str:
        return f"{self.run_id or 'no baseline'} ({self.reason})"


def _relevant_ok(store: HistoryStore, run_id: str, lab: str, metrics: frozenset[str]) -> tuple[bool, str]:
    """Did every test of ``run_id`` that recorded one of ``metrics`` pass, with no failed verdict on them?"""
    r, o, v = S.results, S.outcomes, S.verdicts
    with store._read() as conn:
        q = select(r.c.test_id, r.c.metric).where(r.c.run_id == run_id, r.c.lab == lab)
        rows = [(t, m) for t, m in conn.execute(q) if not metrics or m in metrics]
        if not rows:
            return False, "it has no value for the judged metrics"
        tests = sorted({t for t, _ in rows})
        bad = list(conn.execute(select(o.c.test_id, o.c.outcome).where(
            o.c.run_id == run_id, o.c.lab == lab, o.c.test_id.in_(tests), o.c.outcome.in_(BAD_OUTCOMES))))
        if bad:
            return False, f"{bad[0][0]} {bad[0][1]}"
        failed = list(conn.execute(select(v.c.test_id, v.c.metric, v.c.kind).where(
            v.c.run_id == run_id, v.c.lab == lab, v.c.status == "fail", v.c.test_id.in_(tests))))
        failed = [f for f in failed if not metrics or f[1] in metrics]
        if failed:
            return False, f"its {failed[0][2]} verdict on {failed[0][1]} failed"
    return True, ""


def pick_baseline(
    store: HistoryStore,
    lab: str,
    *,
    before: str | None = None,
    metrics: Iterable[str] = (),
    explicit: str | None = None,
) -> BaselineChoice:
    """The run ``lab``'s results are judged against (see the module docstring for the order).

    ``before``: the run being judged (only runs that started before it count); ``metrics``: the
    metrics of the ``--baseline`` spec (empty: every metric); ``explicit``: ``--baseline-run``.
    """
    if explicit:
        return BaselineChoice(lab, store.resolve(explicit), "explicit", "--baseline-run")
    pinned = store.pins().get(lab)
    if pinned is not None and pinned != before:
        return BaselineChoice(lab, pinned, "pinned", "pinned with `vdpalab baseline pin`")
    wanted = frozenset(metrics)
    skipped: list[str] = []
    candidate = store.previous_run(lab, before=before)
    seen: set[str] = set()
    while candidate is not None and candidate not in seen:
        seen.add(candidate)
        ok, why = _relevant_ok(store, candidate, lab, wanted)
        if ok:
            inherited = store.run_baseline(candidate, lab)
            if inherited and inherited != candidate:
                return BaselineChoice(lab, inherited, "last-good's baseline",
                                      f"newest good run {candidate} passed against it")
            return BaselineChoice(lab, candidate, "last-good", "newest run whose relevant tests all passed")
        skipped.append(f"{candidate}: {why}")
        candidate = store.previous_run(lab, before=candidate)
    reason = "no earlier complete run of the lab" + (f" passed ({len(skipped)} did not)" if skipped else "")
    return BaselineChoice(lab, None, "none", reason)


__all__ = ["BaselineChoice", "pick_baseline"]

"""``vdpalab baseline pin RUN_ID`` / ``unpin`` / ``show``: the run ``--baseline`` compares with, per lab.

A pin is stored in the history, so every host sharing the store gates against the same run.
Without a pin, ``pytest --baseline`` uses the newest run whose relevant tests all passed (see
``vdpalab.history.baseline.pick_baseline``); ``show`` prints what it would pick now.
"""

from __future__ import annotations

import argparse

from vdpalab.history.baseline import pick_baseline
from vdpalab.history.store import HistoryStore


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("baseline", help="pin, unpin or show the baseline run of each lab (--baseline)",
                              description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--db", default=None, metavar="URL",
                   help="history store (default $VDPALAB_RESULTS_DB or reports/history.sqlite)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pin = sub.add_parser("pin", help="pin a run as the baseline of its labs")
    pin.add_argument("run", metavar="RUN_ID", help="run id, unique prefix, latest or latest~N")
    pin.add_argument("--lab", action="append", default=None, metavar="LAB", help="only this lab (repeatable)")
    unpin = sub.add_parser("unpin", help="remove pins (of a run, of a lab, or all)")
    unpin.add_argument("run", nargs="?", default=None, metavar="RUN_ID", help="only the pins of this run")
    unpin.add_argument("--lab", default=None, metavar="LAB", help="only this lab's pin")
    show = sub.add_parser("show", help="the run each lab's --baseline would use now, and why")
    show.add_argument("--lab", default=None, metavar="LAB", help="only this lab")
    show.add_argument("--metrics", default="", metavar="M1,M2", help="the metrics of your --baseline spec")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with HistoryStore(args.db, create=False) as store:
        if args.action == "pin":
            run_id = store.resolve(args.run)
            labs = store.pin_baseline(run_id, args.lab)
            print(f"pinned {run_id} as the baseline of {', '.join(labs)}")
            return 0
        if args.action == "unpin":
            pinned = store.resolve(args.run) if args.run else None
            labs = store.unpin_baseline(run_id=pinned, lab=args.lab)
            print(f"unpinned {', '.join(labs)}" if labs else "nothing was pinned")
            return 0
        labs = sorted(set(store.runs_frame()["lab"].dropna())) if args.lab is None else [args.lab]
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        for lab in labs:
            choice = pick_baseline(store, lab, metrics=metrics)
            print(f"{lab}: {choice.describe()}")
    return 0

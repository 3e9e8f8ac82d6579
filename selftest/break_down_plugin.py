"""A pytest plugin for ``test_broken_layers.py``'s subprocess sessions: break the ovs layer's down on purpose.

With ``VDPALAB_BREAK_DOWN=BRIDGE`` in the environment it deletes that bridge just before teardown, so
the ovs layer's ``down`` (``ovs-vsctl del-br BRIDGE``, from its journal) fails; without it, it does nothing.
"""

from __future__ import annotations

import os

import pytest

BREAK_DOWN_ENV = "VDPALAB_BREAK_DOWN"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    bridge = os.environ.get(BREAK_DOWN_ENV)
    if not bridge or hasattr(session.config, "workerinput"):
        return
    from fixtures.lab_session import sessions_of

    for lab_session in sessions_of(session.config).values():
        if lab_session.record is not None:
            lab_session.hosts["host"].run(["ovs-vsctl", "del-br", bridge], timeout=20)

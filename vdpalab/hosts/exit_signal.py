"""The one place that touches paramiko's private internals: sshd's ``exit-signal`` as an exit status.

A command killed by a signal makes sshd send ``exit-signal`` instead of ``exit-status``; paramiko
has no public hook for channel requests and ignores it, so ``Channel.recv_exit_status`` says -1.
The shell reports 128+N for such a death, and so should ``SSHHost``. The adapter adds one entry to
the private ``Transport._channel_handler_table`` and hands every other request to the private
``Channel._handle_request``. When a paramiko release changes either, ``SUPPORTED`` is False, the
transport is a plain ``paramiko.Transport`` (signal deaths report rc -1, everything else works)
and ``selftest/test_hosts_exit_signal.py`` fails, naming what changed.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST

_TABLE: Any = getattr(paramiko.Transport, "_channel_handler_table", None)
_DEFAULT: Callable[[paramiko.Channel, paramiko.Message], None] | None = getattr(
    paramiko.Channel, "_handle_request", None
)

#: Whether this paramiko has the internals the adapter needs.
SUPPORTED = isinstance(_TABLE, dict) and _TABLE.get(MSG_CHANNEL_REQUEST) is _DEFAULT and callable(_DEFAULT)


def status_of(signal_name: str) -> int:
    """The shell's exit status for a death by ``signal_name`` (``KILL`` -> 137; unknown -> 255)."""
    member = signal.Signals.__members__.get(f"SIG{signal_name}")
    return 128 + member.value if member is not None else 255


def handle_channel_request(chan: paramiko.Channel, m: paramiko.Message) -> None:
    """``exit-signal`` sets the channel's exit status; anything else goes to paramiko's own handler."""
    start = m.packet.tell()
    try:
        if m.get_text() == "exit-signal":
            m.get_boolean()  # want_reply: always false for exit-signal
            chan.exit_status = status_of(m.get_text())
            chan.status_event.set()
            return
    except Exception:  # a message we do not understand: paramiko's own handler decides
        pass
    m.packet.seek(start)
    assert _DEFAULT is not None
    _DEFAULT(chan, m)


class _SignalTransport(paramiko.Transport):
    """A Transport whose channels also understand ``exit-signal``."""

    if SUPPORTED:
        _channel_handler_table = {**_TABLE, MSG_CHANNEL_REQUEST: handle_channel_request}


#: What ``SSHClient.connect(transport_factory=...)`` gets: the adapter, or the plain fallback.
TRANSPORT: type[paramiko.Transport] = _SignalTransport if SUPPORTED else paramiko.Transport

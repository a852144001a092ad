"""Whom a request's work is done for, so that queues take turns between callers (fairness).

The transport names the caller (the gRPC server: the client's connection, `context.peer()`); the
service falls back to one caller per request where a transport names none, and bounds how many
items one caller may have queued. Worker pools, sandbox slots and batchers read the key from here
(asyncio copies it into the tasks they create, as it does the QueueClock) and serve their queues
round-robin across callers, so one caller's flood of slow items delays another caller's item by at
most a turn per busy caller, never by the whole flood.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_current: ContextVar[str | None] = ContextVar("rewardsvc_caller", default=None)

#: Longest caller key kept: keys come from the network (peer strings) and end up in queue maps.
MAX_KEY_CHARS = 256


def current() -> str | None:
    """The caller of the request being served in this context, or None outside one."""
    return _current.get()


@contextlib.contextmanager
def acting_for(caller: str) -> Iterator[None]:
    """Serve what runs inside for `caller`."""
    token = _current.set(caller[:MAX_KEY_CHARS])
    try:
        yield
    finally:
        _current.reset(token)

"""How long a request's items waited for a batch, a worker or a sandbox slot before their compute began.

The service opens a QueueClock around each scorer call; batchers and pools that make items wait note
each wait on the clock current in the caller's context (asyncio copies it into the tasks they create).
Score responses report the longest wait of the request's items as `queue_time_ns`: the share of the
latency spent queued behind other work rather than computing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar


class QueueClock:
    __slots__ = ("waited_ns",)

    def __init__(self) -> None:
        self.waited_ns = 0

    def note(self, waited_ns: int) -> None:
        self.waited_ns = max(self.waited_ns, waited_ns)

    def note_since(self, enqueued_ns: int) -> None:
        self.note(time.perf_counter_ns() - enqueued_ns)


_current: ContextVar[QueueClock | None] = ContextVar("rewardsvc_queue_clock", default=None)


def current() -> QueueClock | None:
    """The clock of the request being served in this context, or None outside one."""
    return _current.get()


@contextlib.contextmanager
def measuring() -> Iterator[QueueClock]:
    clock = QueueClock()
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)

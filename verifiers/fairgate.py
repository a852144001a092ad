"""Fair admission to a few slots (workers, sandboxes, threads): callers take turns.

A plain FIFO queue lets one caller's thousand slow items hold back another caller's single item
for the whole thousand. A FairGate keeps one FIFO per caller and hands each freed slot to the next
caller in turn (round-robin), so a waiting item starts after at most one item of every other
caller with work queued, however much each has queued. The caller is any hashable key the service
chooses (rewardsvc.caller: one per connection); `None` is one caller like any other.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable


class FairGate:
    """At most `slots` holders at once; waiters are let in round-robin across callers."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a FairGate needs at least one slot, got {slots}")
        self.slots = slots
        self.free = slots
        # One FIFO per caller with waiters; the dict's order is the turn order (the first key is next).
        self._queues: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._counts: dict[Hashable, int] = {}  # live (not cancelled) waiters per caller
        self.waiting = 0

    def waiting_for(self, caller: Hashable) -> int:
        """How many of `caller`'s acquires are waiting."""
        return self._counts.get(caller, 0)

    async def acquire(self, caller: Hashable = None) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(caller, deque()).append(fut)
        self._counts[caller] = self._counts.get(caller, 0) + 1
        self.waiting += 1
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot reached us as we were cancelled: pass it on
            else:
                fut.cancel()  # release() skips it; counted out here
                self._forget(caller)
            raise

    def release(self) -> None:
        """Give the slot to the next caller in turn, or free it."""
        while self._queues:
            caller = next(iter(self._queues))
            queue = self._queues.pop(caller)
            while queue and queue[0].done():  # cancelled waiters, already counted out
                queue.popleft()
            if not queue:
                continue
            fut = queue.popleft()
            if queue:
                self._queues[caller] = queue  # back of the line
            self._forget(caller)
            fut.set_result(None)
            return
        self.free += 1

    def _forget(self, caller: Hashable) -> None:
        self.waiting -= 1
        left = self._counts[caller] - 1
        if left:
            self._counts[caller] = left
        else:
            del self._counts[caller]

"""Per-item text work (answer extraction, test parsing, rendering, tokenising) off the event loop.

Nothing whose cost grows with an item's text may run on the server's event loop: while it runs,
every other call waits, health checks included (5,000 unclosed `\\boxed{` once held the loop for
seconds). Scorers hand such work to `off_loop(fn, *args)`: it runs on the service's few
off-loop threads (rewardsvc.threads; not the default executor that batch computes run on),
admitted through a FairGate so one caller's big items can't hold back another caller's small ones.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from rewardsvc import caller, threads
from rewardsvc.verifiers.fairgate import FairGate

T = TypeVar("T")

_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FairGate] = weakref.WeakKeyDictionary()
_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on an off-loop thread, once the caller's turn comes."""
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = FairGate(threads.THREADS)
    await gate.acquire(caller.current())
    try:
        fut = threads.submit(fn, *args)
    except BaseException:
        gate.release()
        raise

    def done(f: asyncio.Future[T]) -> None:
        gate.release()  # when the thread is free again, not when a cancelled caller stops waiting
        if not f.cancelled():
            f.exception()  # retrieved here too: a cancelled caller never reads it

    fut.add_done_callback(done)
    return await asyncio.shield(fut)


def lock_for(obj: Any) -> threading.Lock:
    """One lock per object (a tokenizer: HF fast tokenizers are not safe to call from two threads
    at once, "Already borrowed"), shared by every scorer that uses it."""
    with _locks_guard:
        lock = _locks.get(obj)
        if lock is None:
            lock = _locks[obj] = threading.Lock()
        return lock

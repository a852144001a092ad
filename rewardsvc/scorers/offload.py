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
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from rewardsvc import caller, threads
from rewardsvc.types import Item
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


#: A request whose per-item text work (checks, dedupe keys, answer extraction) may run on the event
#: loop: at most this many characters of response and reference text (the worst text measured, unclosed
#: `\\boxed{`, extracts at ~0.13 ms per 1k characters: ~8 ms of loop time here, less than a hand-off to a
#: thread costs for a typical request on 2 busy cores) ...
SMALL_REQUEST_CHARS = 64 << 10
#: ... and at most this many items: per-item Python work adds up (8,000 items held the loop ~0.2 s).
SMALL_REQUEST_ITEMS = 256


def small_request(items: Sequence[Item]) -> bool:
    """Whether the request's per-item text work is cheap enough to run on the event loop."""
    if len(items) > SMALL_REQUEST_ITEMS:
        return False
    return sum(len(it.response_text) + len(it.reference or "") for it in items) <= SMALL_REQUEST_CHARS


async def text_work(items: Sequence[Item], fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, the text work of `items`: on the event loop for a small request, else `off_loop`."""
    return fn(*args) if small_request(items) else await off_loop(fn, *args)


def lock_for(obj: Any) -> threading.Lock:
    """One lock per object (a tokenizer: HF fast tokenizers are not safe to call from two threads
    at once, "Already borrowed"), shared by every scorer that uses it."""
    with _locks_guard:
        lock = _locks.get(obj)
        if lock is None:
            lock = _locks[obj] = threading.Lock()
        return lock

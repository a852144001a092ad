"""The thread that takes per-item and per-request work off the event loop.

Nothing whose cost grows with a request (converting thousands of items, checking them, scanning
a megabyte of text) may run on the server's event loop: every other call waits while it does,
health checks included. It runs here instead. There is one thread on purpose: Python code in a
thread holds the GIL between switches, so each busy thread delays the event loop's next turn.
Measured on 2 cores beside never-reading streams of 8,000-item requests: six threads (the
default executor) let a health check wait 1.3 s, two 0.28-0.48 s, one 0.14 s. Text scans hold
the GIL however many threads there are, so one thread costs them little. Batch computes (model
forward passes, which release the GIL) keep the default executor.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

THREADS = 1

_executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="rewardsvc-offloop")


def submit(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Start `fn(*args)` on one of the threads. The future completes when the call has run:
    cancelling it does not stop the thread."""
    return asyncio.get_running_loop().run_in_executor(_executor, functools.partial(fn, *args))


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on one of the threads; a cancelled caller stops waiting, the call runs out."""
    fut = submit(fn, *args)
    fut.add_done_callback(_retrieve)
    return await asyncio.shield(fut)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # read here too: a cancelled caller never does

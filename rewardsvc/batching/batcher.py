"""Dynamic batching across concurrent requests.

Callers `submit(payload, cost)` and await a future. One loop collects queued entries, waits at most
`max_wait_ms` for company, then forms batches under `max_batch_tokens` (sum of padded cost: batch
size x longest cost) and `max_batch_size`, taking entries in length order so a batch pads little,
and (`min_fill_ratio`) no more than a set share of padding. Each batch is built around one entry
that must go: the oldest entry of the caller (an opaque key, rewardsvc.caller) whose turn it is,
callers taking turns, so one caller's flood delays another caller's item by a batch per busy
caller, not by the flood.
Cancelled entries are dropped before they reach the compute function. The compute function runs in
a worker thread so a slow backend never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from rewardsvc import queue_clock
from rewardsvc.caller import current as current_caller
from rewardsvc.queue_clock import QueueClock

P = TypeVar("P")
R = TypeVar("R")

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_TOKENS = 16384  # the budget when neither the config nor the scorer sets one


class QueueFullError(RuntimeError):
    """The batcher's queue is at `max_queue_items`: the caller should report RESOURCE_EXHAUSTED."""


@dataclass
class BatcherConfig:
    max_batch_tokens: int | None = field(
        default=None,
        metadata={"help": "padded tokens per forward pass. Empty: the scorer picks 2048 where the model runs "
                          "on CPU (bigger batches fall out of cache and run slower) and 16384 on a GPU"},
    )
    max_batch_size: int = field(default=64, metadata={"help": "items per forward pass"})
    max_wait_ms: float = field(default=5.0, metadata={"help": "how long a lone item waits for company"})
    min_fill_ratio: float | None = field(
        default=None,
        metadata={"help": "share of a batch's padded tokens that must be real (0-1): an item that would pad "
                          "the batch below it waits for the next batch. Empty: the scorer picks 0.9 where "
                          "the model runs on CPU (a compute-bound forward pays for every pad token) and 0 "
                          "on a GPU"},
    )
    max_queue_items: int = field(default=100_000, metadata={"help": "queued items beyond this are refused"})

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_batch_size", "max_queue_items"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"batching.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"batching.max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.min_fill_ratio is not None and not 0.0 <= self.min_fill_ratio <= 1.0:
            raise ValueError(f"batching.min_fill_ratio must be between 0 and 1, got {self.min_fill_ratio}")


@dataclass
class _Entry(Generic[P, R]):
    payload: P
    cost: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    clock: QueueClock | None = field(default_factory=queue_clock.current)  # the caller's request
    caller: Hashable = field(default_factory=current_caller)  # whose turn this entry waits for


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    padded_tokens: int = 0
    real_tokens: int = 0

    @property
    def fill_ratio(self) -> float:
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0


class DynamicBatcher(Generic[P, R]):
    """Groups payloads from concurrent callers into batches for `compute(payloads) -> results`.

    `compute` is synchronous (a model forward) and runs in a thread; it must return one result per
    payload, in order. If it raises, every entry of that batch gets the exception.
    """

    def __init__(self, compute: Callable[[list[P]], Sequence[R]], config: BatcherConfig | None = None,
                 name: str = "batcher") -> None:
        self.compute = compute
        self.config = config or BatcherConfig()
        self.name = name
        self.stats = BatchStats()
        self._queue: list[_Entry[P, R]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        # When each caller with queued entries last had a batch built around its entry.
        self._served: dict[Hashable, int] = {}
        self._batches_built = 0

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def submit(self, payload: P, cost: int) -> asyncio.Future[R]:
        """Queue one payload of `cost` tokens; the returned future resolves to its result."""
        if len(self._queue) >= self.config.max_queue_items:
            raise QueueFullError(
                f"{self.name}: {len(self._queue)} items queued, the limit (max_queue_items) is "
                f"{self.config.max_queue_items}; retry later"
            )
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name=f"{self.name}-loop")
        fut: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Entry(payload, max(1, int(cost)), fut))
        self._wakeup.set()
        return fut

    async def score_all(self, payloads: Sequence[P], costs: Sequence[int]) -> list[R]:
        """Submit many and await them all; cancelling this cancels (drops) the queued ones."""
        futures = [self.submit(p, c) for p, c in zip(payloads, costs)]
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for e in self._queue:
            e.future.cancel()
        self._queue.clear()

    def _take_batch(self) -> list[_Entry[P, R]]:
        """Pop the next batch: shortest-first under the token and size budgets."""
        self._queue = [e for e in self._queue if not e.future.done()]
        if not self._queue:
            return []
        # The next batch is built around the oldest entry of the caller served longest ago (the
        # queue is in arrival order), so callers take turns and long items can't starve.
        firsts: dict[Hashable, _Entry[P, R]] = {}
        for e in self._queue:
            firsts.setdefault(e.caller, e)
        turn = min(firsts, key=lambda c: (self._served.get(c, -1), firsts[c].enqueued))
        self._batches_built += 1
        self._served = {c: self._served[c] for c in firsts if c in self._served}  # only callers still queued
        self._served[turn] = self._batches_built
        oldest = firsts[turn]
        ordered = sorted(self._queue, key=lambda e: e.cost)
        start = ordered.index(oldest)
        batch: list[_Entry[P, R]] = [oldest]
        longest = real = oldest.cost
        # Grow around the oldest entry in length order, neighbours first, to keep padding low.
        lo, hi = start - 1, start + 1
        cfg = self.config
        min_fill = cfg.min_fill_ratio or 0.0
        budget = cfg.max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS
        while len(batch) < cfg.max_batch_size and (lo >= 0 or hi < len(ordered)):
            cand_hi = ordered[hi] if hi < len(ordered) else None
            cand_lo = ordered[lo] if lo >= 0 else None
            pick_hi = cand_hi is not None and (cand_lo is None or cand_hi.cost - longest <= longest - cand_lo.cost)
            cand = cand_hi if pick_hi else cand_lo
            assert cand is not None
            new_longest = max(longest, cand.cost)
            padded = new_longest * (len(batch) + 1)
            if padded > budget or (real + cand.cost) < min_fill * padded:
                # Further out on the same side only pads more: close that side.
                if pick_hi:
                    hi = len(ordered)
                else:
                    lo = -1
                continue
            batch.append(cand)
            real += cand.cost
            longest = new_longest
            if pick_hi:
                hi += 1
            else:
                lo -= 1
        taken = set(map(id, batch))
        self._queue = [e for e in self._queue if id(e) not in taken]
        batch.sort(key=lambda e: e.cost)
        return batch

    async def _gather_company(self) -> None:
        """Give concurrent callers up to max_wait_ms to join the oldest entry, and no longer than it
        takes them to fill a batch (a full batch used to sit out the rest of the wait)."""
        budget = self.config.max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS
        while self._queue:
            oldest = min(e.enqueued for e in self._queue)
            wait = self.config.max_wait_ms / 1000 - (time.perf_counter() - oldest)
            full = len(self._queue) >= self.config.max_batch_size or sum(e.cost for e in self._queue) >= budget
            if wait <= 0 or full:
                return
            self._wakeup.clear()  # submit() sets it: look again at each arrival
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except asyncio.TimeoutError:
                return

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._gather_company()
            batch = self._take_batch()
            if not batch:
                continue
            payloads = [e.payload for e in batch]
            started = time.perf_counter()
            for e in batch:
                if e.clock is not None:
                    e.clock.note(int((started - e.enqueued) * 1e9))
            try:
                results = await asyncio.to_thread(self.compute, payloads)
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: compute returned {len(results)} results for {len(batch)}")
            except Exception as exc:  # every caller in the batch gets the error, the loop lives on
                log.exception("%s: batch of %d failed", self.name, len(batch))
                for e in batch:
                    if not e.future.done():
                        e.future.set_exception(exc)
                continue
            longest = max(e.cost for e in batch)
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.padded_tokens += longest * len(batch)
            self.stats.real_tokens += sum(e.cost for e in batch)
            for e, r in zip(batch, results):
                if not e.future.done():
                    e.future.set_result(r)

"""Per-sample callers, batched: samples scored at the same moment go to the server as one request.

veRL's reward loop and similar per-sample hooks await one reward per sample, all samples of a
batch at once. One request each would cost a round trip and a scorer call per sample; collected
for `window_s` (or until `max_items`), they make one request per scorer and options.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rewardsvc.client import AsyncRewardClient
from rewardsvc.types import Item, Result


class Coalescer:
    """`await coalescer.score(scorer, item, options)`: one Result, sent with its contemporaries.
    Lives on one event loop (its client's)."""

    def __init__(self, client: AsyncRewardClient, window_s: float = 0.005, max_items: int = 256) -> None:
        self.client = client
        self.window_s = window_s
        self.max_items = max_items
        self._pending: dict[tuple[str, str], list[tuple[Item, asyncio.Future[Result]]]] = {}
        self._sending: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    async def score(self, scorer: str, item: Item, options: dict[str, Any] | None = None) -> Result:
        key = (scorer, json.dumps(options or {}, sort_keys=True))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        batch = self._pending.setdefault(key, [])
        batch.append((item, future))
        if len(batch) == 1:
            loop.call_later(self.window_s, self._flush, key, batch)
        if len(batch) >= self.max_items:
            self._flush(key, batch)
        return await future

    def _flush(self, key: tuple[str, str], batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        if self._pending.get(key) is not batch:
            return  # already sent (full before the window ended)
        del self._pending[key]
        task = asyncio.ensure_future(self._send(key, batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, key: tuple[str, str], batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        scorer, options = key
        items = []
        for i, (item, _) in enumerate(batch):
            items.append(Item(id=str(i), prompt=item.prompt, response=item.response, reference=item.reference,
                              steps=item.steps, group_id=item.group_id, metadata=item.metadata))
        try:
            results = await self.client.score(scorer, items, **json.loads(options))
        except BaseException as exc:  # every waiter learns why, not just the first
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (item, future), result in zip(batch, results):
            if not future.done():
                result.id = item.id
                future.set_result(result)

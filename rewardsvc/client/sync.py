"""RewardClient: the blocking client, a thin wrapper running AsyncRewardClient on its own loop.

Its own loop in a daemon thread makes it usable from plain scripts, from threads, and from code
that already runs an event loop (Jupyter, async trainers) alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from rewardsvc.client.aio import AsyncRewardClient, ItemLike
from rewardsvc.types import Result

T = TypeVar("T")


class RewardClient:
    """Blocking client: `RewardClient("127.0.0.1:50051").score("math", items)`.

    Keyword arguments are those of AsyncRewardClient (timeout_s, chunk_size, max_in_flight, ...).
    """

    def __init__(self, address: str | Sequence[str] = "127.0.0.1:50051", **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rewardsvc-client", daemon=True)
        self._thread.start()
        self._aio: AsyncRewardClient = self._run(self._make(address, kwargs))
        self.address = address

    @staticmethod
    async def _make(address: str | Sequence[str], kwargs: dict[str, Any]) -> AsyncRewardClient:
        return AsyncRewardClient(address, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def score(self, scorer: str, items: Sequence[ItemLike], *, timeout_s: float | None = None,
              options: Mapping[str, Any] | None = None, **kwargs: Any) -> list[Result]:
        """One Result per item, in input order (see AsyncRewardClient.score)."""
        return self._run(self._aio.score(scorer, items, timeout_s=timeout_s, options=options, **kwargs))

    def list_scorers(self) -> list[dict[str, Any]]:
        return self._run(self._aio.list_scorers())

    def check_health(self, scorer: str | None = None, timeout_s: float = 5.0) -> str:
        """The gRPC health status of the server or one scorer (see AsyncRewardClient.check_health)."""
        return self._run(self._aio.check_health(scorer, timeout_s))

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        self._run(self._aio.wait_ready(timeout_s))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._aio.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

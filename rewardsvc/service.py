"""The scoring service: hosts the configured scorers and enforces the per-item contract.

Used by the gRPC server and, unchanged, in-process by the CLI and `rewardsvc eval`. It knows
nothing of gRPC or torch: it checks items, dispatches them to a scorer, and guarantees exactly one
Result per item, in order, turning any scorer failure into per-item errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rewardsvc import caller, queue_clock, threads
from rewardsvc.config import Config, load_config
from rewardsvc.dataclass_dict import from_dict
from rewardsvc.errors import InvalidOptionsError, LimitExceededError, RewardServiceError, UnknownScorerError, quote
from rewardsvc.registry import dependency_order, scorer_class, scorer_infos
from rewardsvc.scorers.base import Scorer
from rewardsvc.scorers.dedupe import ResultCache, WorkStats, score_unique
from rewardsvc.scorers.offload import small_request
from rewardsvc.types import ErrorCode, Item, Result

log = logging.getLogger(__name__)


@dataclass
class ScoreTiming:
    """Where a request's time went: the longest wait of its items behind other work (batch queue,
    worker or sandbox slot), and the rest of the scorer call."""

    queue_time_ns: int = 0
    compute_time_ns: int = 0
    # Items that cost no compute: copies of an identical item's result in this request, cache hits.
    deduplicated_items: int = 0
    cache_hits: int = 0


class ServingCore(Protocol):
    """What a transport (the gRPC servicer, the HTTP app) needs from the scoring side. ScoringService is
    one; the Ray ingress's view of the scorer deployments is another."""

    def has_scorer(self, name: str) -> bool: ...

    def scorer_infos(self) -> list[dict[str, Any]]: ...

    async def score_timed(self, scorer_name: str, items: Sequence[Item],
                          options: dict[str, Any] | None = None) -> tuple[list[Result], ScoreTiming]: ...


class ScoringService:
    """All hosted scorers behind one `score(scorer, items, options)` call."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.scorers: dict[str, Scorer] = {}
        # Items accepted and not yet answered, per scorer: the bound that keeps memory flat
        # under overload, and the queue-depth gauge.
        self.in_flight: dict[str, int] = {}
        # The same per caller (rewardsvc.caller), so one caller can't fill a scorer's whole queue.
        self.in_flight_by_caller: dict[str, int] = {}
        self._request_ids = itertools.count()
        # Identical work scored once (scorers/dedupe.py); totals per scorer for /metrics.
        cache_items = self.config.server.result_cache_items
        self.result_cache = ResultCache(cache_items) if cache_items > 0 else None
        self.work: dict[str, WorkStats] = {}
        self._started = False

    async def start(self) -> None:
        """Instantiate and start every configured scorer (models load, worker pools spawn)."""
        if self._started:
            return
        for spec in self.config.scorers:
            self.scorers[spec.name] = scorer_class(spec.type)(spec.name, spec.config)
        # Peers first (on Ray, a composite's replica holds its peers as handles: already in `scorers`).
        order = dependency_order({name: s.uses() for name, s in self.scorers.items()})
        try:
            for scorer in self.scorers.values():
                scorer.check_peers(self.scorers)
            for name in order:
                scorer = self.scorers[name]
                t0 = time.perf_counter()
                await scorer.start(self.scorers)
                log.info("scorer %s (%s) ready in %.1fs", name, scorer.kind, time.perf_counter() - t0)
        except BaseException:
            await self.close()
            raise
        self._started = True

    async def close(self) -> None:
        for scorer in self.scorers.values():
            try:
                await scorer.close()
            except Exception:  # closing the others matters more than one close failing
                log.exception("closing scorer %s failed", scorer.name)
        self._started = False

    async def __aenter__(self) -> ScoringService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def has_scorer(self, name: str) -> bool:
        return name in self.scorers

    def scorer_infos(self) -> list[dict[str, Any]]:
        return scorer_infos(self.config.scorers)

    def get(self, name: str) -> Scorer:
        try:
            return self.scorers[name]
        except KeyError:
            raise UnknownScorerError(
                f"no scorer named {quote(name)} on this server; hosted: {sorted(self.scorers)}"
            ) from None

    def parse_options(self, scorer: Scorer, options: dict[str, Any] | None) -> Any:
        try:
            return from_dict(scorer.Options, options or {}, f"options for scorer {scorer.name!r}")
        except ValueError as exc:
            raise InvalidOptionsError(str(exc)) from None

    async def score(
        self, scorer_name: str, items: Sequence[Item], options: dict[str, Any] | None = None
    ) -> list[Result]:
        results, _ = await self.score_timed(scorer_name, items, options)
        return results

    async def score_timed(
        self, scorer_name: str, items: Sequence[Item], options: dict[str, Any] | None = None
    ) -> tuple[list[Result], ScoreTiming]:
        """Score `items`; request-level problems raise RewardServiceError, item problems don't."""
        scorer = self.get(scorer_name)
        opts = self.parse_options(scorer, options)
        limit = self.config.server.max_items_per_request
        if len(items) > limit:
            raise LimitExceededError(
                f"{len(items)} items in one request; the limit (max_items_per_request) is {limit}: "
                "split the batch (the client does this for you)"
            )
        bound = self.config.server.max_queued_items_per_scorer
        busy = self.in_flight.get(scorer_name, 0)
        if busy + len(items) > bound:
            raise LimitExceededError(
                f"scorer {scorer_name!r} has {busy} items in flight; accepting {len(items)} more would pass "
                f"max_queued_items_per_scorer={bound}: retry with backoff"
            )
        # Whom this work is for: the transport's caller (a connection), else this request alone.
        current = caller.current()
        named = current is not None
        key = current if current is not None else f"request-{next(self._request_ids)}"
        per_caller = self.config.server.max_queued_items_per_caller
        mine = self.in_flight_by_caller.get(key, 0)
        if mine + len(items) > per_caller:
            raise LimitExceededError(
                f"this caller (connection) has {mine} items in flight; accepting {len(items)} more would pass "
                f"max_queued_items_per_caller={per_caller}: wait for results before sending more"
            )
        self.in_flight[scorer_name] = busy + len(items)
        self.in_flight_by_caller[key] = mine + len(items)
        try:
            with contextlib.nullcontext() if named else caller.acting_for(key):
                return await self._score_accepted(scorer, items, opts)
        finally:
            self.in_flight[scorer_name] -= len(items)
            left = self.in_flight_by_caller[key] - len(items)
            if left:
                self.in_flight_by_caller[key] = left
            else:
                del self.in_flight_by_caller[key]

    async def _score_accepted(
        self, scorer: Scorer, items: Sequence[Item], opts: Any
    ) -> tuple[list[Result], ScoreTiming]:
        scorer_name = scorer.name
        t0 = time.perf_counter_ns()
        max_chars = self.config.server.max_text_chars

        def check_all() -> list[Result | None]:  # None: the item goes to the scorer
            return [None if (why := self._check(scorer, it, max_chars)) is None
                    else Result.failed(it.id, ErrorCode.INVALID_ITEM, why) for it in items]

        # Checks read the text (the code scorer parses its tests): a large request is checked off
        # the event loop, so it can't stall the other calls (health checks included).
        results = check_all() if small_request(items) else await threads.off_loop(check_all)
        todo = [i for i, r in enumerate(results) if r is None]
        waited_ns = 0
        work = WorkStats()
        if todo:
            batch = [items[i] for i in todo]
            timeout = self.config.server.scorer_timeout_s
            try:
                with queue_clock.measuring() as clock:
                    try:
                        scored, work = await asyncio.wait_for(
                            score_unique(scorer, batch, opts, self.config.server.dedupe, self.result_cache), timeout)
                    finally:
                        waited_ns = clock.waited_ns
                if len(scored) != len(batch):
                    raise RuntimeError(f"scorer returned {len(scored)} results for {len(batch)} items")
            except (asyncio.CancelledError, RewardServiceError):
                raise  # request-level: the whole call fails with its status code
            except asyncio.TimeoutError:
                log.error("scorer %s ran past scorer_timeout_s=%.0fs on %d items", scorer_name, timeout, len(batch))
                msg = f"scorer {scorer_name!r} ran past scorer_timeout_s={timeout:g}s; its work was cancelled"
                scored = [Result.failed(it.id, ErrorCode.TIMEOUT, msg) for it in batch]
            except Exception as exc:
                log.exception("scorer %s failed on a batch of %d", scorer_name, len(batch))
                msg = f"scorer {scorer_name!r} failed: {type(exc).__name__}: {exc}"
                scored = [Result.failed(it.id, ErrorCode.INTERNAL, msg) for it in batch]
            for i, res in zip(todo, scored):
                res.id = items[i].id
                results[i] = res
        elapsed = time.perf_counter_ns() - t0
        self.work.setdefault(scorer_name, WorkStats()).add(work)
        timing = ScoreTiming(queue_time_ns=waited_ns, compute_time_ns=max(0, elapsed - waited_ns),
                             deduplicated_items=work.deduplicated, cache_hits=work.cache_hits)
        return [r for r in results if r is not None], timing

    @staticmethod
    def _check(scorer: Scorer, item: Item, max_chars: int) -> str | None:
        size = len(item.prompt_text) + len(item.response_text) + len(item.reference or "")
        size += sum(len(s) for s in item.steps)
        if size > max_chars:
            return (
                f"item is {size} characters long; the server's limit (max_text_chars) is {max_chars}"
            )
        try:
            return scorer.check_item(item)
        except Exception as exc:  # a buggy check must not fail the batch
            return f"item check failed: {type(exc).__name__}: {exc}"

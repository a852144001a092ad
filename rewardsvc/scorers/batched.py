"""Model scorers' shared plumbing: items through a DynamicBatcher, failures as per-item results."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

from rewardsvc.batching import BatcherConfig, DynamicBatcher, QueueFullError
from rewardsvc.types import ErrorCode, Result


def batcher_field() -> Any:
    """The `batching:` stanza of a model scorer's config."""
    return dataclasses.field(
        default_factory=BatcherConfig,
        metadata={
            "help": "cross-request batching: max_batch_tokens, max_batch_size, max_wait_ms, max_queue_items"
        },
    )


async def run_batched(batcher: DynamicBatcher, payloads: Sequence[Any], costs: Sequence[int]) -> list[Any]:
    """Each payload's result, or the exception that stopped it (QueueFullError, a backend error).

    If the caller is cancelled (deadline, client gone), its queued payloads are cancelled too and
    the batcher drops them before they reach the model.
    """
    slots: list[Any] = []
    for payload, cost in zip(payloads, costs):
        try:
            slots.append(batcher.submit(payload, cost))
        except QueueFullError as exc:
            slots.append(exc)
    futures = [s for s in slots if isinstance(s, asyncio.Future)]
    try:
        done = await asyncio.gather(*futures, return_exceptions=True)
    except asyncio.CancelledError:
        for f in futures:
            f.cancel()
        raise
    results = iter(done)
    return [next(results) if isinstance(s, asyncio.Future) else s for s in slots]


def failure(item_id: str, exc: BaseException, what: str) -> Result:
    """A per-item Result for an exception from `run_batched`."""
    if isinstance(exc, QueueFullError):
        return Result.failed(item_id, ErrorCode.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, asyncio.CancelledError):
        return Result.failed(item_id, ErrorCode.CANCELLED, f"{what}: cancelled before it was scored")
    return Result.failed(item_id, ErrorCode.INTERNAL, f"{what} failed: {type(exc).__name__}: {exc}")

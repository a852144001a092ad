"""DynamicBatcher on its own: budgets, padding bound, order, starvation, cancellation, failures.

The compute function is a plain Python function that records the batches it is handed, so these
tests see exactly what a model backend would see.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from rewardsvc.batching import BatcherConfig, DynamicBatcher


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


class Recorder:
    """compute(): returns each payload doubled and remembers every batch's payloads."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, payloads: list[int]) -> list[int]:
        self.batches.append(list(payloads))
        return [2 * p for p in payloads]


def test_results_follow_input_order_and_budgets_hold() -> None:
    rng = random.Random(0)
    costs = [rng.randint(5, 300) for _ in range(300)]
    rec = Recorder()

    async def go() -> list[int]:
        b = DynamicBatcher(rec, BatcherConfig(max_batch_tokens=1024, max_batch_size=16, max_wait_ms=2))
        out = await b.score_all(list(range(len(costs))), costs)
        await b.close()
        return out

    assert run(go()) == [2 * i for i in range(len(costs))]
    assert sorted(p for batch in rec.batches for p in batch) == list(range(len(costs)))
    for batch in rec.batches:
        assert len(batch) <= 16
        assert len(batch) == 1 or max(costs[p] for p in batch) * len(batch) <= 1024
    assert max(len(b) for b in rec.batches) > 1  # it did batch


def test_min_fill_ratio_bounds_padding() -> None:
    rng = random.Random(1)
    costs = [rng.choice([rng.randint(10, 40), rng.randint(200, 400)]) for _ in range(200)]

    def fill(batches: list[list[int]]) -> list[float]:
        return [sum(costs[p] for p in b) / (max(costs[p] for p in b) * len(b)) for b in batches]

    def batches_with(min_fill: float) -> list[list[int]]:
        rec = Recorder()

        async def go() -> None:
            cfg = BatcherConfig(max_batch_tokens=8192, max_batch_size=64, max_wait_ms=2, min_fill_ratio=min_fill)
            b = DynamicBatcher(rec, cfg)
            await b.score_all(list(range(len(costs))), costs)
            await b.close()

        run(go())
        return rec.batches

    bounded = batches_with(0.85)
    assert min(fill(bounded)) >= 0.85
    unbounded = batches_with(0.0)
    assert min(fill(unbounded)) < 0.85  # the bound is what made the difference
    assert sorted(p for b in bounded for p in b) == list(range(len(costs)))


def test_an_item_longer_than_the_budget_still_runs_alone() -> None:
    rec = Recorder()

    async def go() -> list[int]:
        b = DynamicBatcher(rec, BatcherConfig(max_batch_tokens=100, max_wait_ms=1, min_fill_ratio=0.9))
        out = await b.score_all([1, 2, 3], [500, 10, 20])
        await b.close()
        return out

    assert run(go()) == [2, 4, 6]
    assert [1] in rec.batches


def test_the_oldest_item_is_in_the_next_batch() -> None:
    """A long item queued first is not starved by a stream of short ones."""
    rec = Recorder()

    async def go() -> None:
        b = DynamicBatcher(rec, BatcherConfig(max_batch_tokens=64, max_batch_size=4, max_wait_ms=1))
        long_item = b.submit(-1, 60)
        shorts = [b.submit(i, 5) for i in range(40)]
        await asyncio.gather(long_item, *shorts)
        await b.close()

    run(go())
    assert rec.batches[0] == [-1]


def test_cancelled_entries_never_reach_compute() -> None:
    rec = Recorder()

    async def go() -> None:
        b = DynamicBatcher(rec, BatcherConfig(max_wait_ms=50))
        doomed = b.submit(7, 10)
        kept = b.submit(8, 10)
        doomed.cancel()
        assert await kept == 16
        await b.close()

    run(go())
    assert all(7 not in batch for batch in rec.batches)


def test_a_failing_batch_fails_only_its_own_items() -> None:
    def compute(payloads: list[int]) -> list[int]:
        if 13 in payloads:
            raise RuntimeError("backend fell over")
        return payloads

    async def go() -> tuple[list[object], int]:
        b = DynamicBatcher(compute, BatcherConfig(max_batch_size=1, max_wait_ms=0))
        out = await asyncio.gather(b.submit(12, 1), b.submit(13, 1), b.submit(14, 1), return_exceptions=True)
        after = await b.submit(15, 1)  # the loop lives on
        await b.close()
        return out, after

    out, after = run(go())
    assert out[0] == 12 and out[2] == 14 and isinstance(out[1], RuntimeError)
    assert after == 15


@pytest.mark.parametrize("field, value", [
    ("max_batch_tokens", 0), ("max_batch_size", 0), ("max_wait_ms", -1), ("min_fill_ratio", 1.5),
])
def test_bad_batching_config_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"batching.{field}"):
        BatcherConfig(**{field: value})


def test_scorers_default_the_padding_bound_by_device() -> None:
    from rewardsvc.scorers.batched import (
        CPU_MAX_BATCH_TOKENS,
        CPU_MIN_FILL_RATIO,
        GPU_MAX_BATCH_TOKENS,
        make_batcher,
    )

    def ident(payloads: list[int]) -> list[int]:
        return payloads

    cpu = make_batcher(ident, BatcherConfig(), "cpu", "t").config
    assert (cpu.max_batch_tokens, cpu.min_fill_ratio) == (CPU_MAX_BATCH_TOKENS, CPU_MIN_FILL_RATIO)
    gpu = make_batcher(ident, BatcherConfig(), "cuda:0", "t").config
    assert (gpu.max_batch_tokens, gpu.min_fill_ratio) == (GPU_MAX_BATCH_TOKENS, 0.0)
    mine = make_batcher(ident, BatcherConfig(max_batch_tokens=512, min_fill_ratio=0.5), "cpu", "t").config
    assert (mine.max_batch_tokens, mine.min_fill_ratio) == (512, 0.5)


def test_queue_wait_is_noted_on_the_callers_request_clock() -> None:
    """Score metadata's queue_time_ns: the second caller's item waits for the first one's batch."""
    import threading

    from rewardsvc import queue_clock

    release = threading.Event()

    def slow(payloads: list[int]) -> list[int]:
        release.wait(5)
        return payloads

    async def go() -> tuple[int, int]:
        b = DynamicBatcher(slow, BatcherConfig(max_batch_size=1, max_wait_ms=0))

        async def one(x: int) -> int:
            with queue_clock.measuring() as clock:
                await b.score_all([x], [1])
            return clock.waited_ns

        first = asyncio.create_task(one(1))
        await asyncio.sleep(0.05)  # the first batch is computing
        second = asyncio.create_task(one(2))
        await asyncio.sleep(0.05)
        release.set()
        waits = await asyncio.gather(first, second)
        await b.close()
        return waits[0], waits[1]

    first, second = run(go())
    assert second > first  # it queued behind a whole batch
    assert second >= 40_000_000  # at least the 50 ms the first batch was held (a lower bound, not a timing)


@pytest.mark.parametrize("fill", ["max_batch_size", "max_batch_tokens"])
def test_a_batch_that_fills_goes_without_sitting_out_the_wait(fill: str) -> None:
    # A 10-minute window: the callers arrive one by one, and the batch goes when the fourth makes it
    # full (by count or by tokens). Before, the loop slept the whole window from the first arrival.
    rec = Recorder()
    limits = {"max_batch_size": 4} if fill == "max_batch_size" else {"max_batch_tokens": 40}

    async def go() -> list[int]:
        b = DynamicBatcher(rec, BatcherConfig(max_wait_ms=600_000, **limits))
        futures = []
        for i in range(4):
            futures.append(b.submit(i, 10))
            await asyncio.sleep(0)  # the loop looks at the queue between arrivals
        out = await asyncio.wait_for(asyncio.gather(*futures), 60)
        await b.close()
        return out

    assert run(go()) == [0, 2, 4, 6]
    assert rec.batches == [[0, 1, 2, 3]]

"""Fairness between callers: FairGate, the math worker pool and the batcher serve callers in turn, so
one caller's queue of slow items holds another caller's item back by a turn, not by the queue.

Assertions are on order (which finished first), never on time.
"""

from __future__ import annotations

import asyncio

import pytest

from rewardsvc import caller
from rewardsvc.batching import BatcherConfig, DynamicBatcher
from rewardsvc.verifiers.fairgate import FairGate
from rewardsvc.verifiers.workerpool import WorkerPool


def test_gate_lets_callers_in_by_turns_and_each_in_order() -> None:
    async def main() -> list[str]:
        gate = FairGate(1)
        order: list[str] = []
        await gate.acquire("x")  # the slot is busy: everyone below waits

        async def one(who: str, k: int) -> None:
            await gate.acquire(who)
            order.append(f"{who}{k}")
            gate.release()

        tasks = [asyncio.create_task(one("a", k)) for k in range(5)]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(one("b", k)) for k in range(2)] + [asyncio.create_task(one("c", 0))]
        await asyncio.sleep(0)
        assert gate.waiting == 8 and gate.waiting_for("a") == 5
        gate.release()
        await asyncio.gather(*tasks)
        assert gate.free == 1 and gate.waiting == 0
        return order

    assert asyncio.run(main()) == ["a0", "b0", "c0", "a1", "b1", "a2", "a3", "a4"]


def test_gate_skips_cancelled_waiters_and_passes_a_slot_on() -> None:
    async def main() -> None:
        gate = FairGate(2)
        await gate.acquire("x")
        await gate.acquire("x")
        waiters = [asyncio.create_task(gate.acquire("h")) for _ in range(50)]
        honest = asyncio.create_task(gate.acquire("o"))
        await asyncio.sleep(0)
        for w in waiters[:-1]:
            w.cancel()
        await asyncio.gather(*waiters[:-1], return_exceptions=True)
        assert gate.waiting == 2 and gate.waiting_for("h") == 1
        gate.release()
        gate.release()
        await asyncio.gather(honest, waiters[-1])
        assert gate.waiting == 0 and gate.free == 0
        gate.release()
        gate.release()
        assert gate.free == 2
        # A waiter cancelled just as the slot reaches it hands the slot on.
        await gate.acquire("x")
        late = asyncio.create_task(gate.acquire("h"))
        after = asyncio.create_task(gate.acquire("o"))
        await asyncio.sleep(0)
        gate.release()  # late's future is now resolved, but late has not run yet
        late.cancel()
        await asyncio.gather(late, return_exceptions=True)
        await asyncio.wait_for(after, 5)
        gate.release()
        assert gate.free == 1

    asyncio.run(main())


@pytest.mark.parametrize("hostile_jobs", [6, 12])
def test_worker_pool_serves_a_lone_caller_before_most_of_a_flood(hostile_jobs: int) -> None:
    """One worker; caller h queues slow checks, then caller o one quick check: o's runs second or third."""

    async def main() -> list[str]:
        pool = WorkerPool("hang_worker", 1)
        await pool.start()
        done: list[str] = []

        async def job(who: str, k: int, action: dict) -> None:
            with caller.acting_for(who):
                await pool.run(action, 30, caller=caller.current())
            done.append(f"{who}{k}")

        try:
            flood = [asyncio.create_task(job("h", k, {"action": "sleep", "seconds": 0.2}))
                     for k in range(hostile_jobs)]
            await asyncio.sleep(0.05)  # the flood is queued first
            await job("o", 0, {"action": "echo", "value": 1})
            await asyncio.gather(*flood)
        finally:
            await pool.close()
        return done

    done = asyncio.run(main())
    assert done.index("o0") <= 2, done


def test_batcher_takes_turns_between_callers() -> None:
    """Batches of one; caller h queues 30 payloads, then caller o one: o's is in the 2nd or 3rd batch."""
    batches: list[list[str]] = []

    def compute(payloads: list[str]) -> list[str]:
        batches.append(list(payloads))
        return payloads

    async def main() -> None:
        batcher = DynamicBatcher(compute, BatcherConfig(max_batch_size=1, max_wait_ms=0))
        with caller.acting_for("h"):
            flood = [batcher.submit(f"h{k}", 1) for k in range(30)]
        with caller.acting_for("o"):
            mine = batcher.submit("o0", 1)
        await asyncio.gather(mine, *flood)
        await batcher.close()

    asyncio.run(main())
    flat = [p for b in batches for p in b]
    assert sorted(flat) == sorted([f"h{k}" for k in range(30)] + ["o0"])
    assert flat.index("o0") <= 2, flat

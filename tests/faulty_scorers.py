"""Plug-in scorers that misbehave on purpose, for fault-injection tests (config type "faulty_scorers:X").

They are real scorers going through the real service, batcher and worker pool; only their compute
step is hostile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Sequence

from rewardsvc.batching import BatcherConfig, DynamicBatcher
from rewardsvc.scorers.base import Scorer, option
from rewardsvc.scorers.math import MathScorer
from rewardsvc.types import ErrorCode, Item, Result
from rewardsvc.verifiers.workerpool import PoolTimeoutError, WorkerCrashedError, WorkerPool


@dataclasses.dataclass
class BatchedConfig:
    batching: BatcherConfig = dataclasses.field(default_factory=BatcherConfig)


class _Batched(Scorer):
    """A batched 'model': compute() runs in the batcher's thread like a real forward pass."""

    Config = BatchedConfig

    async def start(self, peers) -> None:
        self.batcher = DynamicBatcher(self.compute, self.config.batching, name=self.name)

    async def close(self) -> None:
        await self.batcher.close()

    def compute(self, texts: list[str]) -> list[float]:
        return [float(len(t)) for t in texts]

    async def score(self, items: Sequence[Item], options) -> list[Result]:
        futures = [self.batcher.submit(it.response_text, len(it.response_text)) for it in items]
        out = []
        for it, fut in zip(items, futures):
            try:
                out.append(Result(it.id, await fut))
            except RuntimeError as exc:  # the backend raised: this item's error, not the server's
                out.append(Result.failed(it.id, ErrorCode.INTERNAL, f"backend failed: {exc}"))
        return out


class RaisingBackend(_Batched):
    """The backend raises on any batch containing 'boom'."""

    kind = "raising_backend"

    def compute(self, texts: list[str]) -> list[float]:
        if any("boom" in t for t in texts):
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        return super().compute(texts)


_forever = threading.Event()


class HangingBackend(_Batched):
    """The backend never returns for 'hang' (a stuck kernel): the thread is lost, the loop is not."""

    kind = "hanging_backend"

    def compute(self, texts: list[str]) -> list[float]:
        if any("hang" in t for t in texts):
            _forever.wait()
        return super().compute(texts)


class BrokenScorer(Scorer):
    """score() itself raises (a scorer bug)."""

    kind = "broken"

    async def score(self, items, options):
        raise ValueError("scorer bug (injected)")


@dataclasses.dataclass
class SlowOptions:
    seconds: float = option(1.0, "how long each call sleeps")


class SlowScorer(Scorer):
    """Sleeps without using CPU: many of these in flight test overload handling."""

    kind = "slow"
    Options = SlowOptions

    async def score(self, items, options):
        await asyncio.sleep(options.seconds)
        return [Result(it.id, 1.0) for it in items]


class WorkerFaults(Scorer):
    """Runs the response as an action in a killable worker (tests/hang_worker.py)."""

    kind = "worker_faults"

    async def start(self, peers) -> None:
        self.pool = WorkerPool("hang_worker", 1)
        await self.pool.start()

    async def close(self) -> None:
        await self.pool.close()

    async def score(self, items, options):
        out = []
        for it in items:
            try:
                reply = await self.pool.run({"action": it.response_text, "value": it.id}, 1.0)
                out.append(Result(it.id, 1.0, details=reply))
            except PoolTimeoutError as exc:
                out.append(Result.failed(it.id, ErrorCode.TIMEOUT, str(exc)))
            except WorkerCrashedError as exc:
                out.append(Result.failed(it.id, ErrorCode.INTERNAL, str(exc)))
        return out


class MathNeverStarted(MathScorer):
    """The math scorer's config and options, and a start that fails the test: for config errors that must
    be found before any scorer starts (a model load, a worker pool)."""

    async def start(self, peers) -> None:
        raise AssertionError(f"scorer {self.name!r} started before the config error was found")

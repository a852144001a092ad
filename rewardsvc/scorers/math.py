"""The `math` scorer: extract the final answer, compare with the reference in killable workers."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Hashable, Mapping, Sequence

from rewardsvc import caller, queue_clock
from rewardsvc.errors import InvalidOptionsError, quote
from rewardsvc.scorers.base import Scorer, option
from rewardsvc.scorers.offload import text_work
from rewardsvc.types import ErrorCode, Item, Result
from rewardsvc.verifiers.math.extract import EXTRACTORS, extract_answer, reference_answer
from rewardsvc.verifiers.workerpool import PoolFullError, PoolTimeoutError, WorkerCrashedError, WorkerPool

log = logging.getLogger(__name__)


@dataclasses.dataclass
class MathConfig:
    workers: int = option(0, "check worker processes; 0 = one per CPU core")
    timeout_s: float = option(5.0, "hard wall-clock limit per check; the worker is killed past it")
    memory_mb: int = option(1536, "address-space limit of each worker process")
    max_answer_chars: int = option(1000, "longer extracted answers (or references) get verdict error")
    queue_limit: int = option(20_000, "checks waiting beyond this get RESOURCE_EXHAUSTED")
    extract: list[str] = option(list(EXTRACTORS), "extractors tried in order: boxed, hash, answer_is, last_number")


@dataclasses.dataclass
class MathOptions:
    extract: list[str] = option([], "override the extractor order for this request (empty = config's)")
    timeout_s: float = option(0.0, "lower the per-check limit for this request (0 = config's)")


class MathScorer(Scorer):
    kind = "math"
    description = "Final answer vs reference, checked with math-verify/sympy in killable worker processes"
    Config = MathConfig
    Options = MathOptions
    item_format = (
        '`response`: the solution; its final answer is found by `extract` (`\\boxed{}`, `#### 42`, "the '
        'answer is", the last number). `reference` (required): the ground-truth answer, e.g. `"42"`, '
        '`"\\\\frac{1}{2}"`, `"x^2+1"`; a GSM8K solution (`... #### 42`) or a boxed answer works too. '
        '`details`: `extracted_answer`, `verdict` (correct, incorrect, no_answer, timeout, error), `reason`.'
    )

    def __init__(self, name: str, config: MathConfig) -> None:
        super().__init__(name, config)
        bad = [e for e in config.extract if e not in EXTRACTORS]
        if bad:
            raise ValueError(f"math scorer {name!r}: unknown extractor(s) {bad}; choose from {list(EXTRACTORS)}")
        self.pool: WorkerPool | None = None

    async def start(self, peers: Mapping[str, Scorer]) -> None:
        size = self.config.workers or os.cpu_count() or 1
        self.pool = WorkerPool("rewardsvc.verifiers.math.worker", size, memory_mb=self.config.memory_mb,
                               queue_limit=self.config.queue_limit)
        await self.pool.start()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    def check_item(self, item: Item) -> str | None:
        if item.reference is None or not item.reference.strip():
            return "the math scorer needs `reference`: the ground-truth answer (e.g. \"42\" or \"\\frac{1}{2}\")"
        return None

    def dedupe_key(self, item: Item, options: MathOptions) -> Hashable | None:
        # Rollouts that differ only in their reasoning end in a few distinct answers: the check is
        # a function of (answer, how it was found, reference), and so are the result's details.
        if item.reference is None:
            return None
        answer, how = _extract(item.response_text, options.extract or self.config.extract)
        return (answer, how, item.reference)

    def cacheable(self, result: Result) -> bool:
        # A timeout or a crashed worker says how busy the machine was, not what the answer is.
        return result.error is None and result.details.get("verdict") not in ("timeout", "error")

    async def score(self, items: Sequence[Item], options: MathOptions) -> list[Result]:
        order = options.extract or self.config.extract
        bad = [e for e in order if e not in EXTRACTORS]
        if bad:
            raise InvalidOptionsError(f"unknown extractor(s) {quote(bad)}; choose from {list(EXTRACTORS)}")
        timeout = self.config.timeout_s
        if options.timeout_s > 0:
            timeout = min(timeout, options.timeout_s)
        # One trip for the whole request, and none for a small one: the hand-off to the text-work thread
        # costs more than extracting a few short answers (~1 ms per hand-off on this project's 2-vCPU VM).
        extracted = await text_work(items, _extract_all, items, order)
        return list(await asyncio.gather(*(self._one(it, ex, order, timeout) for it, ex in zip(items, extracted))))

    async def _one(self, item: Item, extracted: tuple[str | None, str | None, str], order: list[str],
                   timeout_s: float) -> Result:
        assert self.pool is not None
        answer, how, gold = extracted
        details = {"extracted_answer": answer, "extracted_by": how, "reference_answer": gold[:200]}
        limit = self.config.max_answer_chars
        if answer is None:
            return Result(item.id, 0.0, details={**details, "verdict": "no_answer",
                                                 "reason": f"no final answer found (tried {', '.join(order)})"})
        if len(answer) > limit or len(gold) > limit:
            details["extracted_answer"] = answer[:200]
            return Result(item.id, 0.0, details={**details, "verdict": "error",
                                                 "reason": f"answer or reference longer than max_answer_chars={limit}"})
        # math-verify's internal alarms fire a bit before the parent's hard kill.
        job = {"gold": gold, "pred": answer, "timeout_s": max(1, int(timeout_s * 0.6))}
        clock, queued = queue_clock.current(), time.perf_counter_ns()
        try:
            on_start = None if clock is None else (lambda: clock.note_since(queued))
            reply = await self.pool.run(job, timeout_s, on_start=on_start,
                                        caller=caller.current())
        except PoolTimeoutError as exc:
            reply = {"verdict": "timeout", "reason": str(exc)}
        except WorkerCrashedError as exc:
            reply = {"verdict": "error", "reason": f"{exc} (likely over memory_mb={self.config.memory_mb})"}
        except PoolFullError as exc:
            return Result.failed(item.id, ErrorCode.RESOURCE_EXHAUSTED, f"{exc}; retry later", **details)
        if "error" in reply and "verdict" not in reply:
            reply = {"verdict": "error", "reason": reply["error"]}
        verdict = reply.get("verdict", "error")
        return Result(item.id, 1.0 if verdict == "correct" else 0.0,
                      details={**details, "verdict": verdict, "reason": reply.get("reason", "")})


def _extract_all(items: Sequence[Item], order: list[str]) -> list[tuple[str | None, str | None, str]]:
    """(answer, extractor, gold answer) per item: linear in the text, but on a text-work thread all the same."""
    out = []
    for it in items:
        assert it.reference is not None  # validate() refused items without one
        answer, how = _extract(it.response_text, order)
        out.append((answer, how, reference_answer(it.reference)))
    return out


#: Responses up to this long have their extraction remembered, MEMO_ITEMS of them at most (the memo
#: holds their text: ~1 MB for GSM8K-sized responses, 16 MB at worst for 4-byte characters): with
#: dedupe on, the key of each item and then the check of each distinct one extract the same answer,
#: and a group's word-for-word repeats extract it once.
MEMO_CHARS = 4096
MEMO_ITEMS = 1024


@functools.lru_cache(maxsize=MEMO_ITEMS)
def _extract_memo(text: str, order: tuple[str, ...]) -> tuple[str | None, str | None]:
    return extract_answer(text, order)


def _extract(text: str, order: list[str]) -> tuple[str | None, str | None]:
    if len(text) > MEMO_CHARS:
        return extract_answer(text, order)
    return _extract_memo(text, tuple(order))

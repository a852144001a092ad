"""Test-only scorer plug-ins that count the items they are asked to score (config type
"counting_scorer:CountingScorer", tests/ on PYTHONPATH): what dedupe and the result cache save.

score = len(response) + the `bonus` option; an item whose response is "fail" gets an INTERNAL error.
SamplingScorer is the same with `stochastic = True` (a sampling judge, say): never cached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

from rewardsvc.scorers.base import Scorer, content_key, option
from rewardsvc.types import ErrorCode, Item, Result


@dataclasses.dataclass
class CountingConfig:
    offset: float = option(0.0, "added to every score (a config change)")


@dataclasses.dataclass
class CountingOptions:
    bonus: float = option(0.0, "added to every score (a per-request option)")


class CountingScorer(Scorer):
    kind = "counting"
    description = "Test scorer: score = len(response) + offset + bonus; counts the items it scores"
    Config = CountingConfig
    Options = CountingOptions

    def __init__(self, name: str, config: CountingConfig) -> None:
        super().__init__(name, config)
        self.scored = 0

    def dedupe_key(self, item: Item, options: CountingOptions) -> Hashable | None:
        return content_key(item)

    async def score(self, items: Sequence[Item], options: CountingOptions) -> list[Result]:
        self.scored += len(items)
        out = []
        for it in items:
            if it.response_text == "fail":
                out.append(Result.failed(it.id, ErrorCode.INTERNAL, "asked to fail"))
            else:
                value = len(it.response_text) + self.config.offset + options.bonus
                out.append(Result(id=it.id, score=value, details={"chars": len(it.response_text)}))
        return out


class SamplingScorer(CountingScorer):
    kind = "sampling"
    stochastic = True

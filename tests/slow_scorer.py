"""Test-only scorer plug-in: answers after a delay and says which process answered.

Load-balancing and scale-out tests host it as `type: slow_scorer:SlowScorer` (tests/ on PYTHONPATH)
to keep calls in flight long enough to kill a server under them, and to see who served each item.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Sequence

from rewardsvc.scorers.base import NoOptions, Scorer, option
from rewardsvc.types import Item, Result


@dataclasses.dataclass
class SlowConfig:
    delay_s: float = option(0.0, "sleep this long per call (an item's metadata delay_s overrides it)")


class SlowScorer(Scorer):
    kind = "slow"
    description = "Test scorer: score = len(response) after a delay; details.pid = the answering process"
    Config = SlowConfig
    Options = NoOptions

    async def score(self, items: Sequence[Item], options: NoOptions) -> list[Result]:
        delay = max(float(it.metadata.get("delay_s", self.config.delay_s)) for it in items)
        await asyncio.sleep(delay)
        return [Result(id=it.id, score=float(len(it.response_text)), details={"pid": os.getpid()}) for it in items]

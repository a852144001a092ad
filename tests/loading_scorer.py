"""Test-only scorer plug-in whose start() waits until a gate file exists: a server "still loading its
models" for as long as a test needs, so checks made while it loads are not a race against the clock.
Hosted as `type: loading_scorer:LoadingScorer` (tests/ on PYTHONPATH)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from rewardsvc.scorers.base import NoOptions, Scorer, option
from rewardsvc.types import Item, Result


@dataclasses.dataclass
class LoadingConfig:
    gate_file: str = option("", "start() returns once this file exists")


class LoadingScorer(Scorer):
    kind = "loading"
    description = "Test scorer: loads until gate_file exists, then score = len(response)"
    Config = LoadingConfig
    Options = NoOptions

    async def start(self, peers: Mapping[str, Scorer]) -> None:
        while not Path(self.config.gate_file).exists():
            await asyncio.sleep(0.05)

    async def score(self, items: Sequence[Item], options: NoOptions) -> list[Result]:
        return [Result(id=it.id, score=float(len(it.response_text))) for it in items]

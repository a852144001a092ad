"""Base for scorers over one PoolingBackend (classifier, prm): loads it, owns its batcher.

The causal-LM scorers have the same thing in scorers/causal.py (CausalLMScorer).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rewardsvc.batching import DynamicBatcher
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import Scorer
from rewardsvc.scorers.batched import make_batcher


class PoolingScorer(Scorer):
    """Subclasses call `load_backend(task)`, check the head, then `start_batcher()`; they define
    `_forward(batch) -> results` for the batcher. Their config needs model, device, dtype,
    padding_side, max_length and batching."""

    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, config)
        self.backend: Any = None
        self.batcher: DynamicBatcher | None = None
        # HF fast tokenizers are not safe to call from several threads at once ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        self.max_length: int = config.max_length

    async def load_backend(self, task: str, trust_remote_code: bool = False,
                           check: Callable[[Any], None] | None = None) -> None:
        """Load the model off the event loop; `check(backend)` may raise ValueError (e.g. a token
        that is not one vocabulary entry). Load failures become ConfigErrors naming the scorer."""
        from rewardsvc.backends.pooling import PoolingBackend

        cfg = self.config
        if not cfg.model:
            raise ConfigError(f"scorer {self.name!r}: `model` is required (an HF directory or cache:NAME)")
        try:
            self.backend = await asyncio.to_thread(
                PoolingBackend, cfg.model, task, cfg.device, cfg.dtype, cfg.padding_side, trust_remote_code
            )
            if check is not None:
                check(self.backend)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise ConfigError(f"scorer {self.name!r}: {exc}") from exc
        if self.backend.max_positions:
            self.max_length = min(cfg.max_length, self.backend.max_positions)

    def start_batcher(self) -> None:
        self.batcher = make_batcher(self._forward, self.config.batching, self.backend.device, f"{self.name}-batcher")

    def _forward(self, batch: list[Any]) -> list[Any]:
        raise NotImplementedError

    def batchers(self) -> Sequence[DynamicBatcher[Any, Any]]:
        return () if self.batcher is None else (self.batcher,)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        self.backend = None

"""Base for scorers over one PoolingBackend (classifier, prm): loads it, owns its batcher.

The causal-LM scorers have the same thing in scorers/causal.py (CausalLMScorer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal

from rewardsvc.batching import DynamicBatcher
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import Scorer, content_key, option
from rewardsvc.scorers.batched import make_batcher
from rewardsvc.types import Item


@dataclasses.dataclass
class PoolingFields:
    """Config fields every pooling scorer (classifier, prm) has; their Config dataclasses extend it."""

    model: str = option("", "local HF directory, Hub id (org/name or org/name@revision), or cache:NAME")
    backend: Literal["transformers", "vllm"] = option(
        "transformers", "transformers (CPU/GPU) or vllm (GPU; extra rewardsvc[vllm]): same options, same scores")
    vllm: dict[str, Any] = option({}, "vllm backend: extra vllm.LLM arguments (gpu_memory_utilization, "
                                      "max_model_len, ...)")
    trust_remote_code: bool = option(
        False, "run the checkpoint's own model code (ArmoRM, Qwen2.5-Math-PRM); only for code you trust")
    device: str = option("auto", "auto (cuda if visible, else cpu), cpu, cuda, cuda:N")
    dtype: str = option("auto", "auto (float32 on cpu, bfloat16 on gpu), float32, bfloat16, float16")
    padding_side: str = option("auto", "auto (left for decoders, right for encoders), left, right")


class PoolingScorer(Scorer):
    """Subclasses call `load_backend(task)`, check the head, then `start_batcher()`; they define
    `_forward(batch) -> results` for the batcher. Their config needs the fields of PoolingFields."""

    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, config)
        self.backend: Any = None
        self.batcher: DynamicBatcher | None = None
        # HF fast tokenizers are not safe to call from several threads at once ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        self.max_length: int = config.max_length

    def dedupe_key(self, item: Item, options: Any) -> Hashable | None:
        # One forward of the rendered input decides the result.
        return content_key(item)

    async def load_backend(self, task: str, check: Callable[[Any], None] | None = None) -> None:
        """Load the model off the event loop; `check(backend)` may raise ValueError (e.g. a token
        that is not one vocabulary entry). Load failures become ConfigErrors naming the scorer."""
        cfg = self.config
        if not cfg.model:
            raise ConfigError(f"scorer {self.name!r}: `model` is required (an HF directory, Hub id or cache:NAME)")
        if cfg.backend == "vllm":
            from rewardsvc.backends.vllm_pooling import VLLMPooling

            load: Callable[[], Any] = functools.partial(VLLMPooling, cfg.model, task, cfg.device, cfg.dtype,
                                                        cfg.trust_remote_code, **cfg.vllm)
        elif cfg.backend == "transformers":
            from rewardsvc.backends.pooling import PoolingBackend

            load = functools.partial(PoolingBackend, cfg.model, task, cfg.device, cfg.dtype, cfg.padding_side,
                                     cfg.trust_remote_code)
        else:
            raise ConfigError(f"scorer {self.name!r}: backend {cfg.backend!r}: use transformers or vllm")
        try:
            self.backend = await asyncio.to_thread(load)
            if check is not None:
                check(self.backend)
        except (ValueError, OSError, RuntimeError) as exc:  # RuntimeError: vLLM missing or failing to start
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
        close = getattr(self.backend, "close", None)
        if close is not None:  # vLLM engines hold GPU memory until closed
            close()
        self.backend = None

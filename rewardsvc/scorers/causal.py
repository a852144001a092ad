"""Causal-LM scorers' shared plumbing: config fields, backend lifetime, batching, tokenising.

Every causal-LM scorer turns items into `LogprobRequest`s (and, for the pointwise judge,
`GenerateRequest`s) and sends them through its DynamicBatchers, so concurrent requests share
forward passes. Items of one GRPO group (same `group_id`) mark their common prompt as a shared
prefix; the backend then runs it once per batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

from rewardsvc.backends.causal_lm import (
    CausalLMBackend,
    GenerateRequest,
    LogprobRequest,
    LogprobResult,
    acquire,
    release,
)
from rewardsvc.batching import BatcherConfig, DynamicBatcher
from rewardsvc.scorers.base import Scorer, content_key, option
from rewardsvc.scorers.batched import batcher_field, make_batcher, run_batched
from rewardsvc.scorers.render import chat_parts, render_prompt
from rewardsvc.types import Item, Text


@dataclasses.dataclass
class CausalLMConfig:
    """Fields every causal-LM scorer's stanza has."""

    model: str = option("bundled:smollm2-135m-instruct",
                        "local HF directory, .gguf file (converted once), Hub id (org/name[@revision]), "
                        "bundled:NAME or cache:NAME")
    backend: Literal["transformers", "vllm"] = option(
        "transformers", "transformers (CPU/GPU) or vllm (GPU; extra rewardsvc[vllm])")
    device: str = option("auto", "auto (cuda if visible, else cpu), cpu, cuda, cuda:N")
    dtype: str = option("auto", "auto (float32 on cpu, bfloat16 on gpu), float32, bfloat16, float16")
    max_length: int = option(4096, "tokens per model input; longer items get INVALID_ITEM")
    padding_side: Literal["left", "right"] = option(
        "right", "where batched inputs are padded (scores do not depend on it)")
    prefix_sharing: bool = option(True, "items with the same group_id and prompt run the prompt once per batch")
    vllm: dict[str, Any] = option(
        {}, "vllm backend: extra vllm.LLM arguments (gpu_memory_utilization, enforce_eager, ...)")
    trust_remote_code: bool = option(False, "run the checkpoint's own model code (only for code you trust)")
    batching: BatcherConfig = batcher_field()


class TooLongError(ValueError):
    """An item's model input exceeds max_length."""


class CausalLMScorer(Scorer):
    """Base for scorers over one causal LM: loads it (shared across scorers), owns the batchers."""

    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, config)
        self.lm: CausalLMBackend | None = None
        self.logprob_batcher: DynamicBatcher | None = None
        self.generate_batcher: DynamicBatcher | None = None

    async def start(self, peers: Mapping[str, Scorer]) -> None:
        import asyncio

        cfg = self.config
        self.lm = await asyncio.to_thread(acquire, cfg.model, cfg.device, cfg.dtype, cfg.backend,
                                          cfg.trust_remote_code, **cfg.vllm)
        device = getattr(self.lm, "device", "cuda")  # vLLM runs on a GPU and has no padding
        self.logprob_batcher = make_batcher(self._compute_logprobs, cfg.batching, device, f"{self.name}-logprobs")
        self.generate_batcher = make_batcher(self.lm.generate, cfg.batching, device, f"{self.name}-generate")

    def dedupe_key(self, item: Item, options: Any) -> Hashable | None:
        # Greedy decoding and log-probs: the same rendered input gives the same result.
        return content_key(item)

    def batchers(self) -> Sequence[DynamicBatcher[Any, Any]]:
        return tuple(b for b in (self.logprob_batcher, self.generate_batcher) if b is not None)

    async def close(self) -> None:
        for batcher in self.batchers():
            await batcher.close()
        if self.lm is not None:
            release(self.lm)
            self.lm = None

    def _compute_logprobs(self, requests: list[LogprobRequest]) -> list[Any]:
        assert self.lm is not None
        return self.lm.logprobs(requests, self.config.padding_side, self.config.prefix_sharing)

    # ------------------------------------------------------------ tokenising

    @property
    def tokenizer(self) -> Any:
        assert self.lm is not None, f"scorer {self.name!r} used before start()"
        return self.lm.tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def first_token_ids(self, words: Sequence[str]) -> list[int]:
        return first_token_ids(self.encode, words)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def prompt_ids(self, prompt: Text) -> list[int]:
        return prompt_token_ids(self.tokenizer, prompt)

    def chat_parts(self, user: str, assistant_prefill: str = "") -> list[list[int]]:
        return chat_parts(self.tokenizer, user, assistant_prefill)

    def check_length(self, n_tokens: int) -> None:
        if n_tokens > self.config.max_length:
            raise TooLongError(
                f"the model input is {n_tokens} tokens; this scorer's max_length is {self.config.max_length}: "
                "shorten the item or raise max_length in the config"
            )

    # ------------------------------------------------------------ batching

    async def run_logprobs(self, requests: Sequence[LogprobRequest]) -> list[LogprobResult | BaseException]:
        """Results (or the exception) per request, through the batcher shared with concurrent calls."""
        assert self.logprob_batcher is not None
        return await run_batched(self.logprob_batcher, requests, logprob_costs(requests))

    async def run_generate(self, requests: Sequence[GenerateRequest]) -> list[list[int] | BaseException]:
        assert self.generate_batcher is not None
        costs = [len(r.context) + r.max_new_tokens for r in requests]
        return await run_batched(self.generate_batcher, requests, costs)


def prompt_token_ids(tokenizer: Any, prompt: Text) -> list[int]:
    """The prompt as the policy saw it: text as given, chat messages through the template (the
    implicit-PRM trainer conditions on the same ids)."""
    ids = list(tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"])
    if not ids:  # nothing to condition on: start from BOS (or EOS) so the first token has a log-prob
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [int(start)]
    return ids


def logprob_costs(requests: Sequence[LogprobRequest]) -> list[int]:
    """Token cost per request for the batcher: a shared prefix counts once per group, spread over its members."""
    counts = Counter((r.group, tuple(r.context[: r.shared_prefix])) for r in requests if r.group is not None
                     and r.shared_prefix)
    costs = []
    for r in requests:
        n = counts.get((r.group, tuple(r.context[: r.shared_prefix])), 1) if r.group is not None else 1
        if n > 1:
            costs.append(r.length - r.shared_prefix + math.ceil(r.shared_prefix / n))
        else:
            costs.append(r.length)
    return costs


def group_key(group_id: str | None) -> str | None:
    """The backend's sharing group for an item: its GRPO group, if it has one."""
    return group_id if group_id else None


def first_token_ids(encode: Callable[[str], list[int]], words: Sequence[str]) -> list[int]:
    """Distinct first token ids of `words`: the verdict tokens whose next-token probability a judge
    (and the judge trainer) reads, e.g. "Yes"/"yes"."""
    ids: list[int] = []
    for w in words:
        enc = encode(w)
        if enc and enc[0] not in ids:
            ids.append(enc[0])
    return ids

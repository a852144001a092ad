"""The `prm` scorer: process reward models, one score per reasoning step plus an aggregate.

Checkpoint formats (see scorers/render.py for the exact inputs):
    token_classification  TRL PRMTrainer: 2 labels (index 1 = good step) read at each step's
                          separator; a 1-label head is read through a sigmoid
    step_tag              Math-Shepherd: a causal LM; p(good) = softmax over the positive/negative
                          token logits at each step tag
    step_token            Qwen2.5-Math-PRM: token classification read at special step tokens
    step_chat             RLHFlow PRMs: a causal LM; each step a user turn answered "+"; p(good) =
                          softmax over the positive/negative token logits where "+" is predicted
A token_classification input longer than max_length is scored in step-preserving windows
(scorers/step_windows.py): every step gets a score, each with the prompt and the steps before it.
A step score is p(good step) in [0, 1]. The item's score aggregates them: min, last, product,
mean, or pure (PURE's min-form credit: r_i = p(+) - p(-) = 2p - 1, weights softmax(-r/T),
score = sum w_i r_i, in [-1, 1]), or progress (Rewarding Progress, scorers/progress_rewards.py:
step_scores become A_t = p_t - p_(t-1), score their sum); `thoughts` merges runs of same-verdict
steps into one unit first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from rewardsvc.batching import BatcherConfig
from rewardsvc.errors import ConfigError, InvalidOptionsError
from rewardsvc.scorers.base import Scorer, option
from rewardsvc.scorers.batched import batcher_field, failure, run_batched
from rewardsvc.scorers.pooling import PoolingFields, PoolingScorer
from rewardsvc.scorers.progress_rewards import progress, thought_units, unit_values
from rewardsvc.scorers.render import (
    DEFAULT_STEP_TAGS,
    STEP_FORMATS,
    Encoded,
    encode_steps_chat,
    encode_steps_special,
    encode_steps_tagged,
    split_steps,
)
from rewardsvc.scorers.step_windows import Window, encode_steps_windows, merge_windows
from rewardsvc.scorers.value_head import bin_centers, expected_value
from rewardsvc.types import ErrorCode, Item, Result

AGGREGATIONS = ("min", "last", "product", "mean", "pure", "progress")


@dataclasses.dataclass
class PRMConfig(PoolingFields):
    model: str = option("", "local HF directory, Hub id (org/name[@revision]) or cache:NAME of the PRM")
    format: str = option(
        "token_classification", "token_classification (TRL), step_tag (Math-Shepherd), step_token (Qwen-PRM), "
        "step_chat (RLHFlow)"
    )
    step_separator: str = option(
        "\n", "splits `response` into steps when an item has no `steps`; ends/joins steps (TRL, step_tag)"
    )
    step_tag: str = option(
        "", "step_tag: the tag after each step (default 'ки'); step_token: the special step token "
        "(default '<extra_0>')"
    )
    positive_token: str = option("+", "step_tag, step_chat: the token meaning a good step (one token)")
    negative_token: str = option("-", "step_tag, step_chat: the token meaning a bad step (one token)")
    aggregation: str = option("min", "default aggregation: min, last, product, mean, pure, progress")
    max_length: int = option(
        512, "tokens per input; the prompt's start is cut first; token_classification scores longer "
        "solutions in step-preserving windows, the other formats need all steps to fit")
    system_prompt: str = option("", "step_token: a system turn added when the prompt has none")
    batching: BatcherConfig = batcher_field()


@dataclasses.dataclass
class PRMOptions:
    # The names of AGGREGATIONS: a Literal, so an unknown one fails option parsing (INVALID_ARGUMENT).
    aggregation: Literal["", "min", "last", "product", "mean", "pure", "progress"] = option(
        "", "min, last, product, mean, pure or progress; empty = the configured default")
    pure_temperature: float = option(0.1, "T of the pure aggregation's softmax(-r/T) weights (> 0)")
    progress_initial: float = option(
        0.5, "progress: the value before the first step (step_scores = p_t - p_(t-1), score = their sum)")
    thoughts: bool = option(
        False, "group contiguous steps with the same verdict into one thought: step_scores per thought "
        "(its last step's value), details.thoughts = [first, last] step of each")
    thought_threshold: float = option(0.5, "thoughts: a step with p(good) at or above this is a good step")

    def __post_init__(self) -> None:
        if not self.pure_temperature > 0:
            raise ValueError(f"pure_temperature must be > 0, got {self.pure_temperature}")


def aggregate(step_scores: Sequence[float], how: str, temperature: float = 0.1) -> float:
    """The item score from step scores p_i = p(good step i)."""
    if not step_scores:
        raise ValueError("no steps to aggregate")
    if how == "min":
        return min(step_scores)
    if how == "last":
        return step_scores[-1]
    if how == "product":
        return math.prod(step_scores)
    if how == "mean":
        return sum(step_scores) / len(step_scores)
    if how == "pure":
        if not temperature > 0:
            raise ValueError(f"pure_temperature must be > 0, got {temperature}")
        r = [2.0 * p - 1.0 for p in step_scores]
        top = max(-x / temperature for x in r)  # subtract the max so exp() can't overflow
        w = [math.exp(-x / temperature - top) for x in r]
        return sum(wi * ri for wi, ri in zip(w, r)) / sum(w)
    raise ValueError(f"aggregation {how!r}: use one of {list(AGGREGATIONS)}")


def _softmax2(good: float, bad: float) -> float:
    """p(good) from two logits, written as a sigmoid of the difference (no overflow)."""
    d = good - bad
    return 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))


class PRMScorer(PoolingScorer):
    kind = "prm"
    description = (
        "Process reward model: p(good) per step for `steps` (or the response split on a separator) "
        "and an aggregate score (min, last, product, mean, pure)."
    )
    Config = PRMConfig
    Options = PRMOptions
    item_format = (
        '`prompt`; `steps` (a list of strings) or a `response` split on `step_separator`. No `reference`. '
        '`step_scores`: p(good step) per step; `score`: their `aggregation`.'
    )

    def __init__(self, name: str, config: PRMConfig) -> None:
        super().__init__(name, config)
        self.tag = config.step_tag or DEFAULT_STEP_TAGS.get(config.format, "")
        self.vocab_ids: list[int] = []
        self.bin_centers: list[float] | None = None

    async def start(self, peers: Mapping[str, Scorer]) -> None:
        cfg: PRMConfig = self.config
        where = f"scorer {self.name!r}"
        if cfg.format not in STEP_FORMATS:
            raise ConfigError(f"{where}: format {cfg.format!r}: use one of {list(STEP_FORMATS)}")
        if cfg.aggregation not in AGGREGATIONS:
            raise ConfigError(f"{where}: aggregation {cfg.aggregation!r}: use one of {list(AGGREGATIONS)}")
        if not cfg.step_separator:
            raise ConfigError(f"{where}: step_separator must not be empty")

        lm_formats = ("step_tag", "step_chat")

        def read_step_tag_tokens(backend: Any) -> None:
            if cfg.format in lm_formats:
                self.vocab_ids = [backend.token_id(cfg.positive_token), backend.token_id(cfg.negative_token)]

        task = "lm_logits" if cfg.format in lm_formats else "token_classification"
        await self.load_backend(task, read_step_tag_tokens)
        # An HL-Gauss value head (`rewardsvc train prm --loss hl_gauss`): one logit per value bin,
        # the bins in the checkpoint's config; p(good) = the expected bin centre.
        spec = getattr(getattr(self.backend, "model", None) and self.backend.model.config, "hl_gauss", None)
        self.bin_centers = bin_centers(spec) if task == "token_classification" and spec else None
        if self.bin_centers is not None and len(self.bin_centers) != self.backend.num_labels:
            raise ConfigError(f"{where}: {cfg.model} has {self.backend.num_labels} labels but hl_gauss bins {spec}")
        if task == "token_classification" and self.bin_centers is None and self.backend.num_labels not in (1, 2):
            raise ConfigError(
                f"{where}: {cfg.model} has num_labels={self.backend.num_labels}; a PRM head has 2 labels "
                "(index 1 = good step) or 1 (sigmoid)"
            )
        self.start_batcher()

    def steps_of(self, item: Item) -> list[str]:
        """The item's steps: `steps` if given, else the response split on the separator."""
        if item.steps:
            return list(item.steps)
        return split_steps(item.response_text, self.config.step_separator)

    def check_item(self, item: Item) -> str | None:
        if not self.steps_of(item):
            return "no steps: send `steps`, or a response with text between step separators"
        return None

    def encode(self, item: Item) -> list[Encoded]:
        """Token ids and one read position per step for `item`: one input, or (token_classification
        past max_length) windows whose `steps` say which step each position belongs to."""
        cfg: PRMConfig = self.config
        tok = self.backend.tokenizer
        steps = self.steps_of(item)
        if cfg.format == "token_classification":
            return list(encode_steps_windows(tok, item.prompt, steps, cfg.step_separator, self.max_length))
        if cfg.format == "step_tag":
            return [encode_steps_tagged(tok, item.prompt, steps, self.tag, cfg.step_separator, self.max_length)]
        if cfg.format == "step_chat":
            return [encode_steps_chat(tok, item.prompt, steps, cfg.positive_token, self.vocab_ids[0],
                                      self.max_length)]
        return [encode_steps_special(tok, item.prompt, steps, self.tag, self.max_length, cfg.system_prompt)]

    def _encode_all(self, items: Sequence[Item]) -> list[list[Encoded] | Exception]:
        out: list[list[Encoded] | Exception] = []
        with self._tokenizer_lock:
            for item in items:
                try:
                    out.append(self.encode(item))
                except ValueError as exc:  # too long for max_length, an empty step, a template problem
                    out.append(exc)
        return out

    def _forward(self, batch: list[Encoded]) -> list[list[float]]:
        ids = [e.ids for e in batch]
        positions = [e.positions for e in batch]
        if self.config.format in ("step_tag", "step_chat"):
            rows = self.backend.lm_token_logits(ids, positions, self.vocab_ids)
            return [[_softmax2(good, bad) for good, bad in item] for item in rows]
        rows = self.backend.token_logits(ids, positions)
        if self.bin_centers is not None:
            return [[expected_value(logit, self.bin_centers) for logit in item] for item in rows]
        if self.backend.num_labels == 1:
            return [[_softmax2(logit[0], 0.0) for logit in item] for item in rows]
        return [[_softmax2(logit[1], logit[0]) for logit in item] for item in rows]

    async def score(self, items: Sequence[Item], options: PRMOptions) -> list[Result]:
        assert self.batcher is not None, "start() first"
        how = options.aggregation or self.config.aggregation
        if how not in AGGREGATIONS:  # options built in code, not parsed: a bad request, not bad items
            raise InvalidOptionsError(f"aggregation {how!r}: use one of {list(AGGREGATIONS)}")
        encoded = await asyncio.to_thread(self._encode_all, items)
        # Every input (window) of every item goes to the batcher on its own.
        owners: list[int] = []
        inputs: list[Encoded] = []
        for i, e in enumerate(encoded):
            if not isinstance(e, Exception):
                owners += [i] * len(e)
                inputs += e
        out = await run_batched(self.batcher, inputs, [len(e.ids) for e in inputs])
        per_item: dict[int, list[Any]] = {}
        for i, value in zip(owners, out):
            per_item.setdefault(i, []).append(value)
        results: list[Result] = []
        for i, item in enumerate(items):
            enc = encoded[i]
            if isinstance(enc, Exception):
                results.append(Result.failed(item.id, ErrorCode.INVALID_ITEM, str(enc)))
                continue
            failed = next((v for v in per_item[i] if isinstance(v, BaseException)), None)
            if failed is not None:
                results.append(failure(item.id, failed, f"scorer {self.name!r}"))
                continue
            if len(enc) == 1:
                steps: list[float] = per_item[i][0]
            else:
                steps = merge_windows([e for e in enc if isinstance(e, Window)], per_item[i], len(self.steps_of(item)))
            if not all(math.isfinite(p) for p in steps):
                results.append(Result.failed(item.id, ErrorCode.INTERNAL, f"the PRM returned {steps}"))
                continue
            details: dict[str, Any] = {"aggregation": how, "steps": len(steps), "tokens": sum(len(e.ids) for e in enc)}
            if len(enc) > 1:
                details["windows"] = len(enc)
            cut = max(e.truncated_tokens for e in enc)
            if cut:
                details["truncated_tokens"] = cut
            if options.thoughts:  # progress rewards: scorers/progress_rewards.py
                units = thought_units(steps, options.thought_threshold)
                details["thoughts"] = [list(u) for u in units]
                steps = unit_values(steps, units)
            if how == "progress":
                steps = progress(steps, options.progress_initial)
                score = sum(steps)
            else:
                score = aggregate(steps, how, options.pure_temperature)
            results.append(Result(id=item.id, score=score, step_scores=steps, details=details))
        return results

"""The `classifier` scorer: a sequence-classification reward model (num_labels=1) as a reward.

Multi-objective reward models (ArmoRM: a reward per objective and a gating layer that weighs them)
serve their weighted sum as `score` and the objectives in `details`.

Prompt and response are rendered server-side with the reward model's own chat template, or the
plain HH-RLHF format when it has none (scorers/render.py, shared with the trainers). Requests
from concurrent callers share forward passes through a DynamicBatcher.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from rewardsvc.backends.pooling import SequenceOutput
from rewardsvc.batching import BatcherConfig
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import Scorer, option
from rewardsvc.scorers.batched import batcher_field, failure, run_batched
from rewardsvc.scorers.pooling import PoolingFields, PoolingScorer
from rewardsvc.scorers.render import Encoded, encode_conversation
from rewardsvc.scorers.value_head import ValueHead, value_head_of
from rewardsvc.types import ErrorCode, Item, Result


@dataclasses.dataclass
class ClassifierConfig(PoolingFields):
    model: str = option(
        "", "local HF directory, Hub id (org/name[@revision]) or cache:NAME of a sequence-classification RM "
        "with num_labels=1 (or a multi-objective RM such as ArmoRM)"
    )
    max_length: int = option(512, "tokens per input; longer inputs lose the start of the prompt")
    normalize_mean: float | None = option(None, "served reward = (raw - normalize_mean) / normalize_std")
    normalize_std: float | None = option(None, "see normalize_mean; both or neither")
    objective_names: list[str] = option(
        [], "multi-objective RMs: a name per objective, so details.objectives maps names to rewards")
    batching: BatcherConfig = batcher_field()


@dataclasses.dataclass
class ClassifierOptions:
    normalize: bool = option(True, "apply the configured normalize_mean/normalize_std")


class ClassifierScorer(PoolingScorer):
    kind = "classifier"
    description = (
        "Reward model (sequence classification, one logit): prompt/response as text or chat "
        "messages, rendered with the model's chat template; optional mean/std normalisation."
    )
    Config = ClassifierConfig
    Options = ClassifierOptions
    item_format = (
        "`prompt` and `response`: text or chat messages; rendered with the model's chat template (HH-RLHF "
        "`Human:/Assistant:` text for models without one). No `reference`. `score`: the model's logit "
        '(normalised when normalize_mean/normalize_std are set); `details.raw_score`.'
    )

    head: ValueHead | None = None  # set in start() for regression heads

    async def start(self, peers: Mapping[str, Scorer]) -> None:
        cfg: ClassifierConfig = self.config
        if (cfg.normalize_mean is None) != (cfg.normalize_std is None):
            raise ConfigError(f"scorer {self.name!r}: set both normalize_mean and normalize_std, or neither")
        if cfg.normalize_std is not None and not cfg.normalize_std > 0:
            raise ConfigError(f"scorer {self.name!r}: normalize_std must be > 0, got {cfg.normalize_std}")
        await self.load_backend("sequence_classification")
        # A regression head from `rewardsvc train rm --loss mse|bce|hl_gauss` (scorers/value_head.py).
        self.head = value_head_of(getattr(getattr(self.backend, "model", None), "config", None))
        if self.backend.multi_objective:
            n = self.backend.model.config.num_objectives
            if cfg.objective_names and len(cfg.objective_names) != n:
                await self.close()
                raise ConfigError(f"scorer {self.name!r}: {cfg.model} has {n} objectives; objective_names "
                                  f"lists {len(cfg.objective_names)}")
        elif self.head is not None and self.head.outputs != self.backend.num_labels:
            raise ConfigError(f"scorer {self.name!r}: {cfg.model} has num_labels={self.backend.num_labels} but its "
                              f"value head (hl_gauss / target_range in its config) expects {self.head.outputs}")
        elif self.head is None and self.backend.num_labels != 1:
            raise ConfigError(
                f"scorer {self.name!r}: {cfg.model} has num_labels={self.backend.num_labels}; a reward "
                "model has one output (num_labels=1). Train one with `rewardsvc train rm`."
            )
        self.start_batcher()

    def _forward(self, batch: list[list[int]]) -> list[SequenceOutput]:
        return self.backend.sequence_outputs(batch)

    def encode(self, item: Item) -> Encoded:
        """The token ids this scorer feeds the model for `item`."""
        return encode_conversation(self.backend.tokenizer, item.prompt, item.response, self.max_length)

    def _encode_all(self, items: Sequence[Item]) -> list[Encoded | Exception]:
        out: list[Encoded | Exception] = []
        with self._tokenizer_lock:
            for item in items:
                try:
                    out.append(self.encode(item))
                except ValueError as exc:  # a template that rejects these messages (e.g. role order)
                    out.append(exc)
        return out

    async def score(self, items: Sequence[Item], options: ClassifierOptions) -> list[Result]:
        assert self.batcher is not None, "start() first"
        # Tokenising off the event loop keeps the server answering while a big request encodes.
        encoded = await asyncio.to_thread(self._encode_all, items)
        ok = [(i, e) for i, e in enumerate(encoded) if isinstance(e, Encoded)]
        raw = await run_batched(self.batcher, [e.ids for _, e in ok], [len(e.ids) for _, e in ok])
        results: list[Result | None] = [None] * len(items)
        for (i, enc), value in zip(ok, raw):
            if isinstance(value, BaseException):
                results[i] = failure(items[i].id, value, f"scorer {self.name!r}")
                continue
            results[i] = self._result(items[i].id, value, enc, options)
        for i, e in enumerate(encoded):
            if isinstance(e, Exception):
                msg = f"can't render the conversation: {e}"
                results[i] = Result.failed(items[i].id, ErrorCode.INVALID_ITEM, msg)
        return [r for r in results if r is not None]

    def _result(self, item_id: str, out: SequenceOutput, enc: Encoded, options: ClassifierOptions) -> Result:
        cfg: ClassifierConfig = self.config
        raw = self.head.value(out.logits) if self.head is not None else out.logits[0]
        if not math.isfinite(raw):
            return Result.failed(item_id, ErrorCode.INTERNAL, f"the reward model returned {raw}")
        details: dict[str, Any] = {"raw_score": raw, "tokens": len(enc.ids)}
        if out.objectives is not None:
            names = cfg.objective_names or None
            details["objectives"] = dict(zip(names, out.objectives)) if names else out.objectives
            if out.weights is not None:
                details["objective_weights"] = dict(zip(names, out.weights)) if names else out.weights
        if enc.truncated_tokens:
            details["truncated_tokens"] = enc.truncated_tokens
        score = raw
        if options.normalize and cfg.normalize_mean is not None and cfg.normalize_std is not None:
            score = (raw - cfg.normalize_mean) / cfg.normalize_std
            details["normalized"] = True
        return Result(id=item_id, score=score, details=details)

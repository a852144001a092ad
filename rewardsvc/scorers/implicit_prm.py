"""The `implicit_prm` scorer: PRIME-style implicit process reward from a policy and a reference LM.

Per response token t: r_t = beta * (log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)). A step's
reward is the sum of its tokens' rewards; `score` is the sum (or min) over steps (or tokens, with
granularity `token`). Both models must share one tokenizer: the ratio is per token.

Steps are the item's `steps` (joined with the separator, as TRL's PRMTrainer appends it), or the
response split on the separator; each step is tokenised on its own so token -> step is exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

from rewardsvc.backends.causal_lm import CausalLMBackend, LogprobRequest, LogprobResult, acquire, release
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import Scorer, option
from rewardsvc.scorers.batched import failure, run_batched
from rewardsvc.scorers.causal import CausalLMConfig, CausalLMScorer, TooLongError, group_key, logprob_costs
from rewardsvc.scorers.offload import lock_for, off_loop
from rewardsvc.types import ErrorCode, Item, Result


@dataclasses.dataclass
class ImplicitPRMConfig(CausalLMConfig):
    reference_model: str = option("", "the reference LM (same tokenizer as `model`, the policy); required")
    beta: float = option(0.05, "r_t = beta * (log pi - log pi_ref)")
    granularity: Literal["step", "token"] = option("step", "step_scores per step or per token")
    aggregate: Literal["sum", "min"] = option("sum", "score = sum or min of the step (token) rewards")
    step_separator: str = option("\n", "steps are split on / joined with this")


@dataclasses.dataclass
class ImplicitPRMOptions:
    granularity: Literal["", "step", "token"] = option("", "override the config's granularity")
    aggregate: Literal["", "sum", "min"] = option("", "override the config's aggregate")


def response_steps(item: Item, separator: str) -> list[str]:
    """The response cut into steps whose concatenation is exactly the scored text.

    With `item.steps`, every step but the last gets the separator appended. Otherwise the response
    is split after each separator; separator-only pieces stay with the step before them.
    """
    if item.steps:
        return [s + separator for s in item.steps[:-1]] + [item.steps[-1]]
    parts = item.response_text.split(separator)
    # Pieces are joined once at the end: `steps[-1] += chunk` copied the step for every
    # separator-only piece (quadratic on a flood of separators).
    steps: list[list[str]] = []
    carry: list[str] = []
    for i, part in enumerate(parts):
        chunk = [part, separator] if i < len(parts) - 1 else [part]
        if part.strip():
            steps.append(carry + chunk)
            carry = []
        elif steps:
            steps[-1] += chunk
        else:
            carry += chunk
    if any(carry):
        steps.append(carry)
    return ["".join(s) for s in steps]


class ImplicitPRMScorer(CausalLMScorer):
    kind = "implicit_prm"
    description = (
        "Implicit process reward (PRIME): beta * log(pi/pi_ref) per token from a policy and a reference "
        "causal LM; step_scores per step (or token), score = their sum or min."
    )
    Config = ImplicitPRMConfig
    Options = ImplicitPRMOptions
    item_format = (
        '`prompt`; `steps` or a `response` split on `step_separator` (one score per token with granularity '
        'token). No `reference`. `step_scores`: beta * log(pi/pi_ref) summed per step; `score`: their sum or '
        'min.'
    )

    def __init__(self, name: str, config: ImplicitPRMConfig) -> None:
        super().__init__(name, config)
        self.reference: CausalLMBackend | None = None

    async def start(self, peers: Mapping[str, Scorer]) -> None:
        cfg: ImplicitPRMConfig = self.config
        if not cfg.reference_model:
            raise ConfigError(f"scorer {self.name!r}: `reference_model` is required (the reference LM)")
        if not cfg.step_separator:
            raise ConfigError(f"scorer {self.name!r}: `step_separator` must not be empty")
        await super().start(peers)
        self.reference = await asyncio.to_thread(acquire, cfg.reference_model, cfg.device, cfg.dtype, cfg.backend,
                                                 cfg.trust_remote_code, **cfg.vllm)
        if self.reference.tokenizer.get_vocab() != self.tokenizer.get_vocab():
            await self.close()
            raise ConfigError(
                f"scorer {self.name!r}: policy {cfg.model!r} and reference {cfg.reference_model!r} have "
                "different tokenizers; an implicit PRM needs per-token log-probs of the same tokens "
                "(use a reference the policy was fine-tuned from)"
            )

    async def close(self) -> None:
        await super().close()
        if self.reference is not None:
            release(self.reference)
            self.reference = None

    def _compute_logprobs(self, requests: list[LogprobRequest]) -> list[tuple[LogprobResult, LogprobResult]]:
        assert self.lm is not None and self.reference is not None
        side, share = self.config.padding_side, self.config.prefix_sharing
        policy = self.lm.logprobs(requests, side, share)
        reference = self.reference.logprobs(requests, side, share)
        return list(zip(policy, reference))

    async def run_logprob_pairs(
        self, requests: Sequence[LogprobRequest]
    ) -> list[tuple[LogprobResult, LogprobResult] | BaseException]:
        """(policy, reference) log-probs per request, or the exception: what this scorer's batcher
        computes (`_compute_logprobs`), where the base class's `run_logprobs` expects one result."""
        assert self.logprob_batcher is not None
        return await run_batched(self.logprob_batcher, requests, logprob_costs(requests))

    def check_item(self, item: Item) -> str | None:
        if not item.steps and not item.response_text.strip():
            return "the response is empty: nothing to score"
        if any(not s for s in item.steps):
            return "a step is empty"
        return None

    async def score(self, items: Sequence[Item], options: ImplicitPRMOptions) -> list[Result]:
        cfg: ImplicitPRMConfig = self.config
        granularity = options.granularity or cfg.granularity
        aggregate = options.aggregate or cfg.aggregate
        results: list[Result | None] = [None] * len(items)
        requests: list[LogprobRequest] = []
        plans: list[tuple[int, int, list[int]]] = []  # item index, step count, step index of each token

        def build() -> None:  # splitting and tokenising: per-item text work, off the event loop
            with lock_for(self.tokenizer):
                for i, item in enumerate(items):
                    context = self.prompt_ids(item.prompt)
                    target: list[int] = []
                    step_of: list[int] = []
                    pieces = response_steps(item, cfg.step_separator)
                    try:
                        # Every step is at least a token: a flood of steps is refused before
                        # each of them is tokenised on its own.
                        self.check_length(len(context) + len(pieces))
                        for k, step in enumerate(pieces):
                            ids = self.encode(step)
                            target += ids
                            step_of += [k] * len(ids)
                        self.check_length(len(context) + len(target))
                    except TooLongError as exc:
                        results[i] = Result.failed(item.id, ErrorCode.INVALID_ITEM, str(exc))
                        continue
                    requests.append(LogprobRequest(context=context, target=target, group=group_key(item.group_id),
                                                   shared_prefix=len(context)))
                    plans.append((i, len(pieces), step_of))

        await off_loop(build)
        outputs = await self.run_logprob_pairs(requests)
        for (i, n_steps, step_of), out in zip(plans, outputs):
            item = items[i]
            if isinstance(out, BaseException):
                results[i] = failure(item.id, out, f"scorer {self.name!r}")
                continue
            policy, reference = out
            token_rewards = [cfg.beta * (p - r) for p, r in zip(policy.target, reference.target)]
            step_rewards = [0.0] * n_steps
            for k, rew in zip(step_of, token_rewards):
                step_rewards[k] += rew
            scores = token_rewards if granularity == "token" else step_rewards
            value = (min(scores) if scores else 0.0) if aggregate == "min" else sum(scores)
            results[i] = Result(
                id=item.id,
                score=float(value),
                step_scores=[float(s) for s in scores],
                details={
                    "granularity": granularity,
                    "aggregate": aggregate,
                    "beta": cfg.beta,
                    "steps": n_steps,
                    "tokens": len(token_rewards),
                    "log_ratio_sum": float(sum(p - r for p, r in zip(policy.target, reference.target))),
                },
            )
        return [r for r in results if r is not None]

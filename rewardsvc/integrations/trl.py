"""TRL `GRPOTrainer` reward functions, sync and async.

TRL 1.16.0 (`trl/trainer/grpo_trainer.py`, `_calculate_rewards`) calls each reward function as
`f(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=, log_extra=, log_metric=)`
with one entry per completion, and names it by `__name__`. Sync functions run one after another in
the training thread; `async def` ones run together on TRL's own event loop.

What a scorer sees (the rule of `rewardsvc.types.message_from_json`): standard data as text;
conversational data as chat messages, a `None` content as "", a list of content blocks as its text
blocks, an assistant's `tool_calls` as `<tool_call>{...}</tool_call>` lines after its content, tool
results as `tool` messages. `reasoning_content` / `thinking` is left out unless
`include_reasoning=True` (then `<think>...</think>` before the content).

Each run of consecutive completions of one prompt is one group on the server (`group_id`), so
group scorers (`zscore`, `shaping` with `center: group`) see the GRPO group. A completion that
can't be scored gets `None`: TRL then leaves this reward out for that completion instead of
training on a made-up number. With `log_metric`, each call logs `<name>/item_errors` and
`<name>/verdict/<verdict>` counts; with `log_extra`, a `<name>` column of verdicts or error codes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rewardsvc.client import AsyncRewardClient, RewardClient
from rewardsvc.integrations.common import (
    DEFAULT_ADDRESS,
    REFERENCE_COLUMNS,
    checked,
    group_ids,
    outcome,
    stable_key,
    to_reference,
)
from rewardsvc.types import Result, content_text

log = logging.getLogger(__name__)

# Keyword arguments TRL adds besides the dataset's columns.
TRAINER_KWARGS = frozenset({"completion_ids", "trainer_state", "log_extra", "log_metric", "environments"})


class _Spec:
    """How one reward function turns TRL's arguments into items and results into rewards."""

    def __init__(self, scorer: str, name: str | None, reference_column: str | None, num_generations: int | None,
                 include_reasoning: bool, error_value: float | None, options: dict[str, Any] | None) -> None:
        self.scorer = scorer
        self.name = name or f"rewardsvc_{scorer}"
        self.reference_column = reference_column
        self.num_generations = num_generations
        self.include_reasoning = include_reasoning
        self.error_value = error_value
        self.options = dict(options or {})

    def items(self, prompts: Sequence[Any], completions: Sequence[Any], columns: dict[str, Any]) -> list[dict]:
        if len(prompts) != len(completions):
            raise ValueError(f"{self.name}: {len(prompts)} prompts but {len(completions)} completions")
        refs = self._references(columns, len(prompts))
        groups = group_ids([stable_key(p) for p in prompts], self.num_generations)
        out = []
        for i, (p, c) in enumerate(zip(prompts, completions)):
            item: dict[str, Any] = {"id": str(i), "prompt": self._text(p), "response": self._text(c),
                                    "group_id": groups[i]}
            ref = to_reference(refs[i]) if refs is not None else None
            if ref is not None:
                item["reference"] = ref
            out.append(item)
        return out

    def _references(self, columns: dict[str, Any], n: int) -> Sequence[Any] | None:
        column: str | None = self.reference_column
        if column is not None:
            if column not in columns:
                data_columns = sorted(set(columns) - TRAINER_KWARGS)
                raise ValueError(f"{self.name}: reference_column {column!r} is not a dataset column; "
                                 f"the dataset has {data_columns}")
        else:
            column = next((c for c in REFERENCE_COLUMNS if c in columns), None)
            if column is None:
                return None
        values = columns[column]
        if len(values) != n:
            raise ValueError(f"{self.name}: column {column!r} has {len(values)} values for {n} completions")
        return values

    def _text(self, value: Any) -> Any:
        """Text as is; chat messages as dicts for the item rule, reasoning folded in when asked."""
        if isinstance(value, str) or not isinstance(value, list):
            return value
        if not self.include_reasoning:
            return value
        out = []
        for m in value:
            reasoning = m.get("reasoning_content") or m.get("thinking") if isinstance(m, dict) else None
            if isinstance(reasoning, str) and reasoning:
                m = {**m, "content": f"<think>{reasoning}</think>\n{content_text(m.get('content'))}"}
            out.append(m)
        return out

    def rewards(self, n: int, where: list[int], results: list[Result], bad: dict[int, str],
                log_metric: Any, log_extra: Any) -> list[float | None]:
        rewards: list[float | None] = [self.error_value] * n
        fates = [""] * n
        for i, why in bad.items():
            fates[i] = outcome(None, why)
        for i, r in zip(where, results):
            fates[i] = outcome(r)
            if r.ok:
                rewards[i] = r.score
        tally = Counter(fates)
        # Item errors only ("error: <code>"); a verdict named "error" (math: an answer it could not check) is a
        # scored 0, not a lost completion.
        errors = sum(v for k, v in tally.items() if k.startswith("error: "))
        if errors:
            first = next((r.error.message for r in results if r.error is not None), None) or next(iter(bad.values()))
            log.warning("%s: %d of %d completions could not be scored (reward %s); first: %s",
                        self.name, errors, n, self.error_value, first[:300])
        if callable(log_metric):
            log_metric(f"{self.name}/item_errors", float(errors))
            for fate, k in sorted(tally.items()):
                if not fate.startswith("error: "):
                    log_metric(f"{self.name}/verdict/{fate}", float(k))
        if callable(log_extra):
            log_extra(self.name, fates)
        return rewards


def _named(fn: Callable[..., Any], spec: _Spec) -> Callable[..., Any]:
    fn.__name__ = spec.name  # TRL logs rewards/<__name__>/mean
    fn.__qualname__ = spec.name
    return fn


def reward_func(scorer: str, client: RewardClient | str | Sequence[str] = DEFAULT_ADDRESS, *,
                name: str | None = None, reference_column: str | None = None, num_generations: int | None = None,
                include_reasoning: bool = False, error_value: float | None = None,
                options: dict[str, Any] | None = None, **client_kwargs: Any) -> Callable[..., list[float | None]]:
    """A `reward_funcs` entry for GRPOTrainer scoring with `scorer` on the server at `client` (an
    address, a list of them, or a RewardClient; `client_kwargs` go to RewardClient: token,
    timeout_s, connect_timeout_s, ...). `reference_column`: the dataset column holding the
    reference (default: the first of reference/answer/solution/ground_truth/label/tests present).
    `num_generations`: cut runs of one prompt into groups of this size (default: a run is a group).
    `options`: per-request options of the scorer."""
    spec = _Spec(scorer, name, reference_column, num_generations, include_reasoning, error_value, options)
    holder: list[RewardClient] = [client] if isinstance(client, RewardClient) else []

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        items, where, bad = checked(spec.items(prompts, completions, kwargs))
        if not holder:
            holder.append(RewardClient(client, **client_kwargs))  # type: ignore[arg-type]
        results = holder[0].score(spec.scorer, items, **spec.options) if items else []
        return spec.rewards(len(prompts), where, results, bad, kwargs.get("log_metric"), kwargs.get("log_extra"))

    return _named(reward, spec)


def async_reward_func(scorer: str, client: AsyncRewardClient | str | Sequence[str] = DEFAULT_ADDRESS, *,
                      name: str | None = None, reference_column: str | None = None, num_generations: int | None = None,
                      include_reasoning: bool = False, error_value: float | None = None,
                      options: dict[str, Any] | None = None, **client_kwargs: Any) -> Callable[..., Any]:
    """The `async def` form of reward_func: TRL runs it concurrently with its other async reward
    functions. Given an address, it opens one AsyncRewardClient per event loop it is awaited on
    (gRPC's asyncio channels belong to one loop); a given AsyncRewardClient must live on TRL's loop."""
    spec = _Spec(scorer, name, reference_column, num_generations, include_reasoning, error_value, options)
    per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRewardClient] = weakref.WeakKeyDictionary()

    async def reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        items, where, bad = checked(spec.items(prompts, completions, kwargs))
        if isinstance(client, AsyncRewardClient):
            aio = client
        else:
            loop = asyncio.get_running_loop()
            found = per_loop.get(loop)
            if found is None:
                found = per_loop[loop] = AsyncRewardClient(client, **client_kwargs)
            aio = found
        results = await aio.score(spec.scorer, items, **spec.options) if items else []
        return spec.rewards(len(prompts), where, results, bad, kwargs.get("log_metric"), kwargs.get("log_extra"))

    return _named(reward, spec)


def trl_reward_func(client: RewardClient, scorer: str, *, reference_column: str | None = None,
                    error_value: float | None = None, **options: Any) -> Callable[..., list[float | None]]:
    """Earlier spelling of reward_func (client first, options as keywords); kept for old configs."""
    return reward_func(scorer, client, reference_column=reference_column, error_value=error_value, options=options)

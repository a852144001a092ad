"""Drop-in reward functions for RL trainers: TRL GRPOTrainer and veRL's compute_score."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rewardsvc.types import Message

if TYPE_CHECKING:
    from rewardsvc.client import RewardClient

# Dataset columns tried, in order, as the item's reference when none is named.
REFERENCE_COLUMNS = ("reference", "answer", "solution", "ground_truth", "label", "tests")


def _text_or_messages(x: Any) -> Any:
    """TRL passes strings (standard format) or lists of {role, content} dicts (conversational)."""
    if isinstance(x, str):
        return x
    if isinstance(x, list):
        return [{"role": m.get("role", "user"), "content": m.get("content", "")} if isinstance(m, dict)
                else {"role": m.role, "content": m.content} if isinstance(m, Message) else {"role": "user", "content": str(m)}
                for m in x]
    return str(x)


def trl_reward_func(client: "RewardClient", scorer: str, *, reference_column: str | None = None,
                    error_value: float | None = None, **options: Any) -> Callable[..., list[float | None]]:
    """A TRL GRPOTrainer `reward_funcs` entry scoring with `scorer` on the server.

    TRL calls it as f(prompts=..., completions=..., completion_ids=..., **dataset_columns).
    Items whose scoring failed get `error_value` (None by default: TRL then excludes this reward
    for that sample instead of training on a made-up number).
    """

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        column = reference_column or next((c for c in REFERENCE_COLUMNS if c in kwargs), None)
        refs = kwargs.get(column) if column else None
        items = []
        for i, (p, c) in enumerate(zip(prompts, completions)):
            item: dict[str, Any] = {"id": str(i), "prompt": _text_or_messages(p), "response": _text_or_messages(c)}
            if refs is not None and refs[i] is not None:
                item["reference"] = refs[i] if isinstance(refs[i], str) else json.dumps(refs[i])
            items.append(item)
        results = client.score(scorer, items, **options)
        return [r.score if r.ok else error_value for r in results]

    # TRL logs each reward function under its __name__.
    reward.__name__ = f"rewardsvc_{scorer}"
    return reward


# veRL: data_source -> scorer, overridable with REWARDSVC_SCORER.
DATA_SOURCE_SCORERS = {"openai/gsm8k": "math", "gsm8k": "math", "lighteval/MATH": "math", "math": "math",
                       "codecontests": "code", "apps": "code", "taco": "code", "code": "code"}
_verl_clients: dict[str, "RewardClient"] = {}


def _verl_client() -> "RewardClient":
    from rewardsvc.client import RewardClient

    address = os.environ.get("REWARDSVC_ADDRESS", "127.0.0.1:50051")
    if address not in _verl_clients:
        _verl_clients[address] = RewardClient(address, token=os.environ.get("REWARDSVC_AUTH_TOKEN") or None)
    return _verl_clients[address]


def _verl_scorer(data_source: str) -> str:
    return os.environ.get("REWARDSVC_SCORER") or DATA_SOURCE_SCORERS.get(data_source, "math")


def compute_score(data_source: Any, solution_str: Any, ground_truth: Any, extra_info: Any = None,
                  **kwargs: Any) -> float | list[float]:
    """veRL custom_reward_function: `custom_reward_function.path=<this file>`, `name=compute_score`.

    Single call: (str, str, str, dict) -> float. Batch reward manager: lists in, list out. The
    server address comes from REWARDSVC_ADDRESS, the scorer from REWARDSVC_SCORER or data_source,
    a bearer token (if the server needs one) from REWARDSVC_AUTH_TOKEN.
    """
    batched = isinstance(solution_str, list)
    sources = data_source if batched else [data_source]
    solutions = solution_str if batched else [solution_str]
    truths = ground_truth if batched else [ground_truth]
    infos = extra_info if batched and isinstance(extra_info, list) else [extra_info] * len(solutions)
    by_scorer: dict[str, list[int]] = {}
    for i, src in enumerate(sources):
        by_scorer.setdefault(_verl_scorer(str(src)), []).append(i)
    scores = [0.0] * len(solutions)
    client = _verl_client()
    for scorer, idx in by_scorer.items():
        items = []
        for i in idx:
            gt = truths[i]
            prompt = (infos[i] or {}).get("question", "") if isinstance(infos[i], dict) else ""
            items.append({"id": str(i), "prompt": str(prompt), "response": str(solutions[i]),
                          "reference": gt if isinstance(gt, str) else json.dumps(gt)})
        for i, r in zip(idx, client.score(scorer, items)):
            # veRL expects a number for every sample; a failed item scores 0 and is logged by the server.
            scores[i] = r.score if r.ok else 0.0
    return scores if batched else scores[0]

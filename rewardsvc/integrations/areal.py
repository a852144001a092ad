"""AReaL reward functions: `reward_fn(prompt, completions, prompt_ids, completion_ids, **data) -> float`.

AReaL 1.0.4 (`areal/api/reward_api.py`, `areal/workflow/rlvr.py`) calls the function once per
completion, in a process of `AsyncRewardWrapper`'s pool (so it must pickle), with the prompt and
completion decoded with their special tokens and the dataset row as keyword arguments; the float
it returns becomes a tensor. `RewardFn` is that function for one rewardsvc scorer; configured
through the environment, `rewardsvc.integrations.areal.reward_fn` also works as an import string.

The prompt the scorer sees is the row's `messages` when there are any (the chat, not its
template-rendered text), else the decoded prompt; the completion loses its trailing end-of-turn
tokens. A completion that can't be scored gets `error_score` (AReaL needs a number), logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from rewardsvc.client import RewardClient
from rewardsvc.integrations.common import DEFAULT_ADDRESS, REFERENCE_COLUMNS, to_reference
from rewardsvc.types import strip_special_tail

log = logging.getLogger(__name__)

_clients: dict[tuple[int, str, str | None, float], RewardClient] = {}


class RewardFn:
    """`RLVRWorkflow(reward_fn=RewardFn("math", "10.0.0.5:50051"), ...)`: picklable, so it crosses
    into AReaL's reward processes; each process opens its own connection on first use."""

    def __init__(self, scorer: str, address: str = DEFAULT_ADDRESS, *, token: str | None = None,
                 reference_key: str | None = None, error_score: float = 0.0, connect_timeout_s: float = 10.0,
                 options: dict[str, Any] | None = None) -> None:
        self.scorer = scorer
        self.address = address
        self.token = token
        self.reference_key = reference_key
        self.error_score = error_score
        self.connect_timeout_s = connect_timeout_s
        self.options = dict(options or {})

    def _client(self) -> RewardClient:
        key = (os.getpid(), self.address, self.token, self.connect_timeout_s)  # never a parent's channel
        if key not in _clients:
            _clients[key] = RewardClient(self.address, token=self.token, connect_timeout_s=self.connect_timeout_s)
        return _clients[key]

    def __call__(self, prompt: str, completions: str, prompt_ids: Sequence[int] | None = None,
                 completion_ids: Sequence[int] | None = None, **data: Any) -> float:
        if self.reference_key is not None:
            if self.reference_key not in data:
                raise KeyError(f"reference_key {self.reference_key!r} is not a dataset field; fields: {sorted(data)}")
            reference = data[self.reference_key]
        else:
            reference = next((data[k] for k in REFERENCE_COLUMNS if k in data), None)
        messages = data.get("messages")
        item: dict[str, Any] = {"id": "0", "prompt": messages if isinstance(messages, list) and messages else prompt,
                                "response": strip_special_tail(completions)}
        if reference is not None:
            item["reference"] = to_reference(reference)
        try:
            (result,) = self._client().score(self.scorer, [item], **self.options)
        except ValueError as exc:  # the row's messages are not a chat the item rule accepts
            log.warning("rewardsvc %s: item not scorable (%s); reward %s", self.scorer, exc, self.error_score)
            return self.error_score
        if result.error is not None:
            log.warning("rewardsvc %s: %s: %s; reward %s", self.scorer, result.error.code.value,
                        result.error.message[:300], self.error_score)
            return self.error_score
        return float(result.score)


def reward_fn(prompt: str, completions: str, prompt_ids: Sequence[int] | None = None,
              completion_ids: Sequence[int] | None = None, **data: Any) -> float:
    """RewardFn configured from $REWARDSVC_SCORER (default math), $REWARDSVC_ADDRESS,
    $REWARDSVC_AUTH_TOKEN and $REWARDSVC_REFERENCE_KEY, for AReaL configs that name a function."""
    env = os.environ
    fn = RewardFn(env.get("REWARDSVC_SCORER") or "math", env.get("REWARDSVC_ADDRESS") or DEFAULT_ADDRESS,
                  token=env.get("REWARDSVC_AUTH_TOKEN") or None,
                  reference_key=env.get("REWARDSVC_REFERENCE_KEY") or None)
    return fn(prompt, completions, prompt_ids, completion_ids, **data)

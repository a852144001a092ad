"""Trainer adapters against the real server: TRL reward function and veRL compute_score."""

from __future__ import annotations

import inspect

from rewardsvc import integrations
from rewardsvc.client import RewardClient


def test_trl_reward_func_standard_and_conversational(math_server) -> None:
    with RewardClient(math_server.address) as client:
        f = integrations.trl_reward_func(client, "math")
        assert f.__name__ == "rewardsvc_math"
        # TRL's call: keyword arguments, dataset columns (here `answer`) as lists.
        rewards = f(prompts=["1+1?", "2+2?", "3+3?"],
                    completions=["\\boxed{2}", "The answer is 5.", "no idea"],
                    completion_ids=[[1], [2], [3]], answer=["2", "4", "6"], trainer_state=None)
        assert rewards == [1.0, 0.0, 0.0]
        conv = f(prompts=[[{"role": "user", "content": "1+1?"}]],
                 completions=[[{"role": "assistant", "content": "It is \\boxed{2}"}]], solution=["2"])
        assert conv == [1.0]
        # An item the scorer rejects (no reference) is None: TRL then ignores this reward for it.
        assert f(prompts=["x"], completions=["\\boxed{1}"]) == [None]


def test_verl_compute_score_single_and_batched(math_server, monkeypatch) -> None:
    monkeypatch.setenv("REWARDSVC_ADDRESS", math_server.address)
    params = list(inspect.signature(integrations.compute_score).parameters)
    assert params[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]
    assert integrations.compute_score("openai/gsm8k", "so #### 42", "42") == 1.0
    assert integrations.compute_score("openai/gsm8k", "so #### 41", "42", {"question": "q"}) == 0.0
    batch = integrations.compute_score(["gsm8k", "math"], ["\\boxed{1}", "\\boxed{3}"], ["1", "2"], [{}, {}])
    assert batch == [1.0, 0.0]

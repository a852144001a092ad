"""Trainer adapters against a real server: TRL reward functions (sync and async) with every message
form TRL passes, veRL's compute_score called as each reward manager calls it, AReaL's reward_fn
through AReaL's own AsyncRewardWrapper.

The trainers themselves run in test_trl_grpo.py and test_verl_managers.py; here the adapters get the
exact argument shapes those trainers produce (trainers.md, TRL 1.16.0 / veRL 0.9.1 / AReaL 1.0.4).
"""

from __future__ import annotations

import asyncio
import json
import math
import pickle
import subprocess
import sys

import grpc
import pytest
from support import ServerProcess
from trainer_sources import trainer_source

from rewardsvc.client import RewardClient, RewardServiceCallError
from rewardsvc.integrations import areal, compute_score, compute_score_async, trl

CONFIG = {"scorers": {
    "math": {"type": "math", "workers": 2, "timeout_s": 5.0},
    "z": {"type": "composite", "mode": "zscore", "components": [{"scorer": "math"}]},
}}


@pytest.fixture(scope="module")
def server() -> ServerProcess:
    with ServerProcess(CONFIG) as srv:
        yield srv


class Logs:
    """TRL's log_metric / log_extra, as GRPOTrainer passes them (name, value) / (column, values)."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)

    def log_extra(self, column: str, values: list) -> None:
        self.extra.setdefault(column, []).extend(values)


def test_trl_standard_format_with_reference_column_and_logs(server) -> None:
    f = trl.reward_func("math", server.address)
    assert f.__name__ == "rewardsvc_math"
    logs = Logs()
    # TRL's call: keyword arguments, dataset columns (here `answer`) as lists, its own extras.
    rewards = f(prompts=["1+1?", "2+2?", "3+3?"], completions=["\\boxed{2}", "The answer is 5.", "no idea"],
                completion_ids=[[1], [2], [3]], answer=["2", "4", "6"], trainer_state=None,
                log_metric=logs.log_metric, log_extra=logs.log_extra)
    assert rewards == [1.0, 0.0, 0.0]
    assert logs.metrics == {"rewardsvc_math/item_errors": [0.0], "rewardsvc_math/verdict/correct": [1.0],
                            "rewardsvc_math/verdict/incorrect": [1.0], "rewardsvc_math/verdict/no_answer": [1.0]}
    assert logs.extra == {"rewardsvc_math": ["correct", "incorrect", "no_answer"]}
    # A verdict named "error" (an answer past max_answer_chars) is a scored 0, not an item error.
    logs = Logs()
    assert f(prompts=["q"], completions=["\\boxed{" + "1" * 2000 + "}"], answer=["1"],
             log_metric=logs.log_metric, log_extra=logs.log_extra) == [0.0]
    assert logs.metrics == {"rewardsvc_math/item_errors": [0.0], "rewardsvc_math/verdict/error": [1.0]}
    named = trl.reward_func("math", server.address, name="acc", reference_column="gold")
    assert named.__name__ == "acc"
    assert named(prompts=["q"], completions=["\\boxed{7}"], answer=["1"], gold=["7"]) == [1.0]
    with pytest.raises(ValueError, match="reference_column 'gold' is not a dataset column; the dataset has"):
        named(prompts=["q"], completions=["\\boxed{7}"], answer=["7"], trainer_state=None)


TOOL_CALL = {"role": "assistant", "content": "",  # TRL's parse_response normalises None to ""
             "tool_calls": [{"type": "function", "function": {"name": "multiply", "arguments": {"a": 3, "b": 4}}}]}


def test_trl_conversational_forms_are_scored_or_item_errors_never_a_failed_batch(server) -> None:
    f = trl.reward_func("math", server.address, include_reasoning=False)
    user = [{"role": "user", "content": "What is 3 * 4?"}]
    blocks = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is 3 * 4?"}]}]
    completions = [
        [{"role": "assistant", "content": "It is \\boxed{12}"}],
        # The tool loop's completion: call, tool result, final answer.
        [TOOL_CALL, {"role": "tool", "name": "multiply", "content": "12"},
         {"role": "assistant", "content": "So \\boxed{12}", "reasoning_content": "3*4, use the tool"}],
        [{"role": "assistant", "content": None, "tool_calls": TOOL_CALL["tool_calls"]}],
        [{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{12}"}]}],
        [{"role": "assistant", "content": 12}],  # not a message any trainer sends: this item's error only
        [{"role": "assistant", "content": "\\boxed{11}", "thinking": "x"}],
    ]
    prompts = [user, user, user, blocks, user, user]
    logs = Logs()
    rewards = f(prompts=prompts, completions=completions, answer=["12"] * 6, log_metric=logs.log_metric)
    assert rewards == [1.0, 1.0, 0.0, 1.0, None, 0.0]
    assert logs.metrics["rewardsvc_math/item_errors"] == [1.0]


async def _async_rewards(address: str) -> tuple[list, list]:
    f = trl.async_reward_func("math", address)
    g = trl.async_reward_func("math", address, include_reasoning=True, name="with_reasoning")
    completion = [{"role": "assistant", "content": "no final answer", "reasoning_content": "so \\boxed{4}"}]
    a, b = await asyncio.gather(
        f(prompts=["2+2?", "2+2?"], completions=["\\boxed{4}", completion], answer=["4", "4"]),
        g(prompts=["2+2?"], completions=[completion], answer=["4"]))
    return a, b


def test_trl_async_reward_func_and_reasoning_rule(server) -> None:
    f = trl.async_reward_func("math", server.address)
    assert asyncio.iscoroutinefunction(f) and f.__name__ == "rewardsvc_math"
    a, b = asyncio.run(_async_rewards(server.address))
    assert a == [1.0, 0.0]  # reasoning is not part of the scored text by default
    assert b == [1.0]


def zscores(raw: list[float]) -> list[float]:
    mean = sum(raw) / len(raw)
    std = math.sqrt(sum((v - mean) ** 2 for v in raw) / (len(raw) - 1))
    return [(v - mean) / (std + 1e-4) for v in raw]


def test_trl_group_ids_follow_the_prompt_runs(server) -> None:
    f = trl.reward_func("z", server.address)
    # Two GRPO groups of 4 (the same prompt drawn twice in a row: num_generations tells them apart).
    prompts = ["p"] * 4 + ["q"] * 4 + ["q"] * 4
    completions = ["\\boxed{1}", "\\boxed{0}", "\\boxed{0}", "\\boxed{0}"] * 3
    got = f(prompts=prompts, completions=completions, answer=["1"] * 12)
    assert got == pytest.approx(zscores([1, 0, 0, 0]) + zscores([1, 0, 0, 0] * 2))
    g = trl.reward_func("z", server.address, num_generations=4)
    assert g(prompts=prompts, completions=completions, answer=["1"] * 12) == pytest.approx(zscores([1, 0, 0, 0]) * 3)


def test_verl_compute_score_as_each_manager_calls_it(server, monkeypatch) -> None:
    monkeypatch.delenv("REWARDSVC_ADDRESS", raising=False)
    kw = {"address": server.address}  # custom_reward_function.reward_kwargs, merged into every call
    # Legacy naive manager / reward loop: one sample, keywords (extra_info gains num_turns etc.).
    one = compute_score(data_source="openai/gsm8k", solution_str="so #### 42", ground_truth="42",
                        extra_info={"index": 0, "num_turns": None, "rollout_reward_scores": {}}, **kw)
    assert one == {"score": 1.0, "acc": 1.0, "error": "", "verdict": "correct"}
    # Batch manager: plural keywords, data_sources and extra_infos as numpy object arrays.
    np = pytest.importorskip("numpy")
    batch = compute_score(data_sources=np.array(["openai/gsm8k", "math", "aime2024"], dtype=object),
                          solution_strs=["\\boxed{1}", "\\boxed{3}", "\\boxed{7}"], ground_truths=["1", "2", "7"],
                          extra_infos=np.array([{"index": np.int64(i)} for i in range(3)], dtype=object),
                          **{**kw, "details": ["verdict", "extracted_answer"]})
    assert [b["score"] for b in batch] == [1.0, 0.0, 1.0]
    assert [sorted(b) for b in batch] == [["acc", "error", "extracted_answer", "score", "verdict"]] * 3
    # Environment variables are the fallback when reward_kwargs don't say.
    monkeypatch.setenv("REWARDSVC_ADDRESS", server.address)
    assert compute_score("openai/gsm8k", "#### 5", "5")["score"] == 1.0


def test_verl_unknown_data_source_and_bad_settings_are_clear_errors(server) -> None:
    with pytest.raises(ValueError, match=r"no scorer for data_source 'hiyouga/geometry3k'.*data_source_scorers"):
        compute_score(data_source="hiyouga/geometry3k", solution_str="x", ground_truth="1", address=server.address)
    mapped = compute_score(data_source="hiyouga/geometry3k", solution_str="\\boxed{1}", ground_truth="1",
                           address=server.address, data_source_scorers={"hiyouga/geometry3k": "math"})
    assert mapped["score"] == 1.0
    with pytest.raises(TypeError, match=r"unknown argument.*'adress'.*accepts"):
        compute_score(data_source="math", solution_str="x", ground_truth="1", adress=server.address)
    # An item the scorer can't take: the error value, and why, in reward_extra_info.
    failed = compute_score(data_source="math", solution_str="\\boxed{1}", ground_truth=None, address=server.address)
    assert failed["score"] == 0.0 and failed["error"].startswith("invalid_item: ")


async def _reward_loop(address: str) -> list[dict]:
    # The reward loop awaits every sample of a batch at once (reward_loop.py compute_score_batch).
    calls = [compute_score_async(data_source="openai/gsm8k", solution_str=f"#### {i}", ground_truth="3",
                                 extra_info={}, address=address) for i in range(6)]
    return list(await asyncio.gather(*calls))


def test_verl_async_samples_of_one_moment_share_requests(server) -> None:
    before = server.metrics()
    out = asyncio.run(_reward_loop(server.address))
    assert [o["score"] for o in out] == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    requests = _requests(server.metrics(), "math") - _requests(before, "math")
    assert requests < 6, f"{requests} requests for 6 concurrent samples"


def _requests(metrics: str, scorer: str) -> float:
    names = (f'rewardsvc_requests_total{{code="OK",scorer="{scorer}"}}',
             f'rewardsvc_requests_total{{scorer="{scorer}",code="OK"}}')
    line = next((ln for ln in metrics.splitlines() if ln.startswith(names)), None)
    return float(line.split()[-1]) if line else 0.0


AREAL_RUN = """
import asyncio, importlib.util, json, logging, sys, types
# AReaL 1.0.4's areal/api/reward_api.py, loaded by file: `import areal` needs ~15 packages the project
# doesn't have, and this module needs only areal.utils.logging (a logging.getLogger).
for name in ["areal", "areal.utils", "areal.api"]:
    module = types.ModuleType(name); module.__path__ = []; sys.modules[name] = module
stub = types.ModuleType("areal.utils.logging"); stub.getLogger = logging.getLogger
sys.modules["areal.utils.logging"] = stub
spec = importlib.util.spec_from_file_location("areal.api.reward_api", sys.argv[1])
reward_api = importlib.util.module_from_spec(spec); sys.modules[spec.name] = reward_api
spec.loader.exec_module(reward_api)
from rewardsvc.integrations.areal import RewardFn

async def main():
    wrapper = reward_api.AsyncRewardWrapper(RewardFn("math", sys.argv[2]), timeout_seconds=60, max_workers=1,
                                            max_retries=0)
    # areal/workflow/rlvr.py: reward_fn(prompt_str, completions_str, input_tokens, output_tokens, **task_data)
    messages = [{"role": "user", "content": "What is 6 * 7?"}]
    return [await wrapper("<|im_start|>user\\nWhat is 6 * 7?<|im_end|>\\n", f"The answer is {v}.<|im_end|>",
                          [1, 2], [3, 4], answer="42", messages=messages) for v in (42, 41)]

print(json.dumps(asyncio.run(main())))
"""


def test_areal_reward_fn_through_areals_own_wrapper(server) -> None:
    fn = areal.RewardFn("math", server.address)
    assert pickle.loads(pickle.dumps(fn)).address == server.address  # crosses into AReaL's process pool
    # In a fresh process, as in AReaL: its pool forks workers from a process that has no gRPC
    # channel open (a fork while gRPC threads run leaves the child's gRPC unusable).
    path = trainer_source() / "areal" / "api" / "reward_api.py"
    out = subprocess.run([sys.executable, "-c", AREAL_RUN, str(path), server.address], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1.0, 0.0]


def test_trl_call_against_a_dead_server_names_it(server) -> None:
    with RewardClient("127.0.0.1:1", connect_timeout_s=0.5) as client:
        f = trl.reward_func("math", client)
        with pytest.raises(RewardServiceCallError) as err:
            f(prompts=["q"], completions=["\\boxed{1}"], answer=["1"])
    assert err.value.code == grpc.StatusCode.UNAVAILABLE and "127.0.0.1:1" in err.value.details

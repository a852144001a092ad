"""veRL 0.9.1's own reward managers (the released source, unpacked by `make install`) score GSM8K and
APPS-style code items through rewardsvc, configured by the README's veRL block.

Legacy naive and batch managers and the reward loop's naive manager each run on a real DataProto
built with the SmolLM2 tokenizer; the custom function is loaded by veRL's get_custom_reward_fn from
the README's `custom_reward_function` config. The rewards must equal the server's own scores for the
same decoded responses, and on the code items veRL's own prime_code verdict.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import pytest
import yaml
from readme_snippets import trainer_snippet
from support import ServerProcess
from trainer_sources import trainer_source

import rewardsvc.integrations.verl as verl_adapter
from rewardsvc.client import RewardClient

pytestmark = pytest.mark.slow  # loads veRL, the SmolLM2 tokenizer and a code sandbox

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"scorers": {
    "math": {"type": "math", "workers": 2, "timeout_s": 5.0},
    "code": {"type": "code", "workers": 2},
    "z": {"type": "composite", "mode": "zscore", "components": [{"scorer": "math"}]},
}}

STDIN = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}
CALL = {"inputs": ["[1, 2]\n3", "[5]\n1"], "outputs": ["6", "6"], "fn_name": "f"}
LEETCODE = {"inputs": ["[2, 7, 11, 15]\n9", "[3, 2, 4]\n6"], "outputs": ["[0, 1]", "[1, 2]"], "fn_name": "twoSum"}
FLOATS = {"inputs": ["3\n"], "outputs": ["0.333333333\n"]}
CODE_ITEMS = [  # (response, ground truth): prime_code and rewardsvc agree on these by construction of both
    ("```python\na, b = map(int, input().split())\nprint(a + b)\n```", STDIN),
    ("```python\na, b = map(int, input().split())\nprint(3)\n```", STDIN),  # 1 of 2: 0.5
    ("```python\ndef f(xs, k):\n    return sum(xs) + k\n```", CALL),
    ("```python\nclass Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
     "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
     "                return [seen[target - x], i]\n            seen[x] = i\n```", LEETCODE),  # List: the prelude
    ("```python\nprint(1 / int(input()))\n```", FLOATS),  # 0.3333333333333333 within allclose
    ("```python\ndef (:\n```", STDIN),
]


@pytest.fixture(scope="module")
def server() -> ServerProcess:
    with ServerProcess(CONFIG) as srv:
        yield srv


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from rewardsvc.backends.gguf import model_dir

    return AutoTokenizer.from_pretrained(str(model_dir("bundled:smollm2-135m-instruct")))


def gsm8k_items(n_problems: int = 3) -> list[tuple[str, str, str]]:
    """(question, model solution, gold answer): GSM8K test problems, 4 model solutions each."""
    out = []
    with gzip.open(REPO / "bench/data/eval/gsm8k-test-model-solutions.jsonl.gz", "rt") as f:
        for line, _ in zip(f, range(n_problems)):
            row = json.loads(line)
            gold = row["ground_truth"].rsplit("A:", 1)[1].strip()
            for key in sorted(k for k in row if isinstance(row[k], dict) and "solution" in row[k]):
                out.append((row["question"], row[key]["solution"], gold))
    return out


def batch(tokenizer, rows: list[tuple[str, str, object, str]]):
    """A DataProto as veRL's rollout leaves it: left-padded prompts, right-padded responses, and the
    non-tensor fields the managers read. rows: (data_source, prompt, ground_truth, response)."""
    import numpy as np
    import torch
    from verl import DataProto

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    prompts = [tokenizer(p)["input_ids"] for _, p, _, _ in rows]
    responses = [tokenizer(r)["input_ids"] for _, _, _, r in rows]
    lp, lr = max(map(len, prompts)), max(map(len, responses))
    p = torch.tensor([[pad] * (lp - len(x)) + x for x in prompts])
    r = torch.tensor([x + [pad] * (lr - len(x)) for x in responses])
    mask = torch.tensor([[0] * (lp - len(a)) + [1] * len(a) + [1] * len(b) + [0] * (lr - len(b))
                         for a, b in zip(prompts, responses)])
    return DataProto.from_dict(
        tensors={"prompts": p, "responses": r, "attention_mask": mask, "input_ids": torch.cat([p, r], 1)},
        non_tensors={"data_source": np.array([d for d, _, _, _ in rows], dtype=object),
                     "reward_model": np.array([{"ground_truth": g, "style": "rule"} for _, _, g, _ in rows],
                                              dtype=object),
                     "extra_info": np.array([{"index": i // 4, "question": q} for i, (_, q, _, _) in enumerate(rows)],
                                            dtype=object)})


def readme_config(address: str, name: str = "compute_score", **reward_kwargs):
    """The README's veRL block with this test's server, file path and function name."""
    from omegaconf import OmegaConf

    data = yaml.safe_load(trainer_snippet("veRL", "yaml"))
    fn = data["reward"]["custom_reward_function"]
    fn["path"] = verl_adapter.__file__
    fn["name"] = name
    fn["reward_kwargs"].update(address=address, **reward_kwargs)
    return OmegaConf.create(data)


def rows(tokenizer) -> list[tuple[str, str, object, str]]:
    math_rows = [("openai/gsm8k", q, gold, sol) for q, sol, gold in gsm8k_items()]
    code_rows = [("apps", "Solve it.", json.dumps(gt), resp) for resp, gt in CODE_ITEMS]
    return math_rows + code_rows


def expected_scores(address: str, tokenizer, data_rows) -> list[float]:
    """The server's scores for what the managers pass: responses decoded as veRL decodes them."""
    decoded = [tokenizer.decode(tokenizer(r)["input_ids"], skip_special_tokens=True) for _, _, _, r in data_rows]
    with RewardClient(address) as client:
        m = client.score("math", [{"response": d, "reference": g} for d, (s, _, g, _) in zip(decoded, data_rows)
                                  if s == "openai/gsm8k"])
        c = client.score("code", [{"response": d, "reference": g} for d, (s, _, g, _) in zip(decoded, data_rows)
                                  if s == "apps"])
    assert all(r.error is None for r in m + c)
    return [r.score for r in m] + [r.score for r in c]


def last_token_rewards(out) -> list[float]:
    return out["reward_tensor"].sum(dim=-1).tolist()


def test_legacy_naive_and_batch_managers(server, tokenizer) -> None:
    trainer_source()
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.batch import BatchRewardManager
    from verl.workers.reward_manager.naive import NaiveRewardManager

    data_rows = rows(tokenizer)
    want = expected_scores(server.address, tokenizer, data_rows)
    assert 0 < sum(want) < len(want)  # both verdicts occur: the comparison can fail
    fn = get_custom_reward_fn(readme_config(server.address))
    naive = NaiveRewardManager(tokenizer=tokenizer, num_examine=0, compute_score=fn)(batch(tokenizer, data_rows),
                                                                                    return_dict=True)
    assert last_token_rewards(naive) == pytest.approx(want)
    info = naive["reward_extra_info"]
    assert set(info) == {"score", "acc", "error", "verdict"} and info["error"] == [""] * len(want)
    batched = BatchRewardManager(tokenizer, 0, fn, reward_fn_key="data_source")(batch(tokenizer, data_rows),
                                                                                return_dict=True)
    assert last_token_rewards(batched) == pytest.approx(want)
    assert batched["reward_extra_info"]["verdict"] == info["verdict"]


def test_code_items_score_as_verls_own_prime_code(server, tokenizer) -> None:
    trainer_source()
    from verl.utils.reward_score import default_compute_score

    ours = verl_adapter.compute_score(data_sources=["apps"] * len(CODE_ITEMS),
                                      solution_strs=[r for r, _ in CODE_ITEMS],
                                      ground_truths=[json.dumps(g) for _, g in CODE_ITEMS],
                                      extra_infos=[{}] * len(CODE_ITEMS), address=server.address)
    theirs = [default_compute_score("apps", r, json.dumps(g)) for r, g in CODE_ITEMS]
    assert [o["score"] for o in ours] == pytest.approx(theirs)
    assert theirs == [1.0, 0.5, 1.0, 1.0, 1.0, 0.0]


def test_batch_manager_groups_each_prompts_samples(server, tokenizer) -> None:
    trainer_source()
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.batch import BatchRewardManager

    data_rows = [("openai/gsm8k", q, gold, sol) for q, sol, gold in gsm8k_items(2)]  # 2 prompts x 4 samples
    raw = expected_scores(server.address, tokenizer, data_rows)
    fn = get_custom_reward_fn(readme_config(server.address, data_source_scorers={"openai/gsm8k": "z"}))
    out = BatchRewardManager(tokenizer, 0, fn, reward_fn_key="data_source")(batch(tokenizer, data_rows),
                                                                            return_dict=True)
    want = []
    for g in (raw[:4], raw[4:]):
        mean = sum(g) / 4
        std = (sum((v - mean) ** 2 for v in g) / 3) ** 0.5
        want += [(v - mean) / (std + 1e-4) if std else 0.0 for v in g]
    assert last_token_rewards(out) == pytest.approx(want, abs=1e-5)


def test_reward_loop_naive_manager_with_the_async_function(server, tokenizer) -> None:
    trainer_source()
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    data_rows = rows(tokenizer)
    want = expected_scores(server.address, tokenizer, data_rows)
    config = readme_config(server.address, name="compute_score_async")
    fn = get_custom_reward_fn(config)

    async def run() -> list[dict]:
        manager = NaiveRewardManager(config=config, tokenizer=tokenizer, compute_score=fn)
        assert manager.is_async_reward_score
        data = batch(tokenizer, data_rows)
        # reward_loop.py RewardLoopWorker.compute_score_batch: every sample's run_single at once.
        return list(await asyncio.gather(*(manager.run_single(data[i:i + 1]) for i in range(len(data)))))

    outputs = asyncio.run(run())
    assert [o["reward_score"] for o in outputs] == pytest.approx(want)
    assert {tuple(sorted(o["reward_extra_info"])) for o in outputs} == {("acc", "error", "score", "verdict")}


def test_an_unknown_data_source_stops_the_manager_naming_the_option(server, tokenizer) -> None:
    trainer_source()
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.naive import NaiveRewardManager

    fn = get_custom_reward_fn(readme_config(server.address))
    manager = NaiveRewardManager(tokenizer=tokenizer, num_examine=0, compute_score=fn)
    with pytest.raises(ValueError, match=r"data_source 'searchR1_nq'.*reward_kwargs\.data_source_scorers"):
        manager(batch(tokenizer, [("searchR1_nq", "q", "a", "a")]), return_dict=True)

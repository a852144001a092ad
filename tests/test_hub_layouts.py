"""The public reward models' layouts, served by Hub id from an offline HF cache and checked by hand.

One real server (HF_HUB_CACHE = a temporary cache, HF_HUB_OFFLINE=1) hosts a tiny random-weight
look-alike of each (tests/hub_models.py): same architecture class, head, config layout, special
tokens and chat-template style. Each served score is compared with the score this test computes
from the same weights, following the model's own published recipe (its card or evaluation script)
for building the input: so the test fails if the service renders, pads or reads a layout
differently from how its authors use it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hub_models as H
import pytest
from support import ServerProcess

from rewardsvc.client import RewardClient
from rewardsvc.types import Item

pytestmark = pytest.mark.slow
TOL = dict(abs=1e-4, rel=1e-4)

CHATS = [
    ("What is 2 + 3?", "2 + 3 = 5. The answer is 5."),
    ("A train travels 60 miles per hour for 2 hours. How far does it go?",
     "It goes 60 * 2 = 120 miles, so the answer is \\boxed{120}."),
    ("Hello!", "Hi."),
]
SOLUTIONS = [
    ("What is 2 + 3?", ["Step 1: 2 + 3 = 5.", "Step 2: The answer is 5."]),
    ("Let x = 4 and y = 7. What is x + y?", ["x + y = 4 + 7.", "4 + 7 = 11.", "So the answer is \\boxed{11}."]),
    ("What is 6 * 7?", ["6 * 7 = 42."]),
]
CONFIG: dict[str, dict[str, Any]] = {
    "skywork": {"type": "classifier", "model": H.SKYWORK},
    "inf-orm": {"type": "classifier", "model": H.INF_ORM},
    "qwen2-rm": {"type": "classifier", "model": H.QWEN2_RM},
    "gemma2-rm": {"type": "classifier", "model": H.GEMMA2_RM},
    "armo": {"type": "classifier", "model": H.ARMO, "trust_remote_code": True},
    "qwen-prm": {"type": "prm", "model": H.QWEN_PRM, "format": "step_token", "trust_remote_code": True,
                 "system_prompt": H.QWEN_PRM_SYSTEM},
    "shepherd": {"type": "prm", "model": H.SHEPHERD, "format": "step_tag"},
    "rlhflow": {"type": "prm", "model": H.RLHFLOW, "format": "step_chat", "aggregation": "mean"},
    "eurus": {"type": "implicit_prm", "model": H.EURUS, "reference_model": H.EURUS_REF, "beta": 0.05},
}


@pytest.fixture(scope="module")
def local() -> dict[str, Path]:
    return H.hub_cache()[1]


@pytest.fixture(scope="module")
def client() -> Iterator[RewardClient]:
    cache, _ = H.hub_cache()
    config = {"scorers": {name: {**stanza, "device": "cpu", "dtype": "float32"} for name, stanza in CONFIG.items()}}
    with ServerProcess(config, env=H.server_env(cache)) as srv, RewardClient(srv.address) as c:
        yield c


def chat_items() -> list[Item]:
    return [Item(id=str(i), prompt=p, response=r) for i, (p, r) in enumerate(CHATS)]


def step_items() -> list[Item]:
    return [Item(id=str(i), prompt=p, steps=s) for i, (p, s) in enumerate(SOLUTIONS)]


def conv(prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def template_ids(tok: Any, messages: list[dict[str, str]]) -> list[int]:
    """`apply_chat_template(messages, tokenize=True)` as the model cards call it."""
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True)
    return list(out["input_ids"])


def head_weights(path: Path, prefix: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    return {k[len(prefix):]: v for k, v in load_file(str(path / "model.safetensors")).items() if k.startswith(prefix)}


def backbone_hidden(cls: Any, path: Path, ids: list[int]) -> Any:
    """Last hidden states of the checkpoint's backbone (its `model.*` weights) for one sequence."""
    import torch

    model = cls.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).last_hidden_state[0]


def mlp(w: dict[str, Any], x: Any) -> Any:
    """Linear, ReLU, Linear from a state dict with keys 0.* and 2.* (nn.Sequential numbering)."""
    import torch

    return torch.relu(x @ w["0.weight"].T + w["0.bias"]) @ w["2.weight"].T + w["2.bias"]


# ---------------------------------------------------------------- sequence classifiers


def test_skywork_reward_v2_llama_with_its_chat_template(client: RewardClient, local: dict[str, Path]) -> None:
    """Skywork-Reward-V2's card: render the conversation with the chat template, drop the leading BOS
    the template wrote (the tokenizer adds it again), tokenize, score = logits[0][0]."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = local[H.SKYWORK]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    expected = []
    for prompt, response in CHATS:
        text = tok.apply_chat_template(conv(prompt, response), tokenize=False)
        if tok.bos_token and text.startswith(tok.bos_token):
            text = text[len(tok.bos_token):]
        with torch.no_grad():
            expected.append(model(**tok(text, return_tensors="pt")).logits[0][0].item())
    results = client.score("skywork", chat_items())
    assert [r.error for r in results] == [None] * 3
    assert [r.score for r in results] == pytest.approx(expected, **TOL)
    assert len({round(x, 4) for x in expected}) == 3, "the look-alike must tell the items apart"


def test_inf_orm_mlp_head_without_remote_code(client: RewardClient, local: dict[str, Path]) -> None:
    """INF-ORM: LlamaModel + Linear/ReLU/Linear read at the last token; its card tokenizes with
    apply_chat_template(tokenize=True). The checkpoint ships no code: the service has the head."""
    from transformers import AutoTokenizer, LlamaModel

    path = local[H.INF_ORM]
    assert json.loads((path / "config.json").read_text())["architectures"] == ["INFORMForSequenceClassification"]
    tok = AutoTokenizer.from_pretrained(path)
    head = head_weights(path, "score.")
    expected = []
    for prompt, response in CHATS:
        hidden = backbone_hidden(LlamaModel, path, template_ids(tok, conv(prompt, response)))
        expected.append(mlp(head, hidden[-1])[0].item())
    results = client.score("inf-orm", chat_items())
    assert [r.score for r in results] == pytest.approx(expected, **TOL)


@pytest.mark.parametrize("name,repo", [("qwen2-rm", H.QWEN2_RM), ("gemma2-rm", H.GEMMA2_RM)])
def test_qwen2_and_gemma2_sequence_classifiers(client: RewardClient, local: dict[str, Path], name: str,
                                               repo: str) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = local[repo]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    expected = []
    for prompt, response in CHATS:
        with torch.no_grad():
            ids = torch.tensor([template_ids(tok, conv(prompt, response))])
            expected.append(model(input_ids=ids).logits[0][0].item())
    results = client.score(name, chat_items())
    assert [r.score for r in results] == pytest.approx(expected, **TOL)


def test_armorm_multi_objective_score_and_objectives(client: RewardClient, local: dict[str, Path]) -> None:
    """ArmoRM: rewards = regression_layer(h[last]); gate = softmax(MLP(h[assistant header]) / T) * scale;
    score = sum(gate * rewards @ T_matrix). The card reads output.score; the objectives are details."""
    import torch
    from transformers import AutoTokenizer, LlamaModel

    path = local[H.ARMO]
    cfg = json.loads((path / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(path)
    weights = head_weights(path, "")
    gate = {k.removeprefix("gating."): v for k, v in weights.items() if k.startswith("gating.")}
    pattern = cfg["gating_token_pattern"]
    expected = []
    for prompt, response in CHATS:
        ids = template_ids(tok, conv(prompt, response))
        hidden = backbone_hidden(LlamaModel, path, ids)
        rewards = hidden[-1] @ weights["regression_layer.weight"].T
        at = max(i for i in range(len(ids) - len(pattern) + 1) if ids[i:i + len(pattern)] == pattern)
        x = hidden[at]
        for k in range(cfg["gating_n_hidden"]):
            x = torch.relu(x @ gate[f"layers.{k}.weight"].T + gate[f"layers.{k}.bias"])
        n = cfg["gating_n_hidden"]
        x = x @ gate[f"layers.{n}.weight"].T + gate[f"layers.{n}.bias"]
        g = torch.softmax(x / cfg["gating_temperature"], dim=0) * gate["logit_scale"][0]
        score = (g * (rewards @ weights["reward_transform_matrix"])).sum()
        expected.append((score.item(), rewards.tolist(), g.tolist()))
    results = client.score("armo", chat_items())
    for r, (score, rewards, g) in zip(results, expected):
        assert r.score == pytest.approx(score, **TOL)
        assert r.details["objectives"] == pytest.approx(rewards, **TOL)
        assert r.details["objective_weights"] == pytest.approx(g, **TOL)
        assert len(rewards) == 19 and abs(score - rewards[0]) > 1e-3, "score must be the gated sum, not one objective"


# ---------------------------------------------------------------- PRMs


def test_qwen25_math_prm_reads_each_extra_0(client: RewardClient, local: dict[str, Path]) -> None:
    """Qwen2.5-Math-PRM's card: system + user + assistant "<extra_0>".join(steps) + "<extra_0>", encode
    the template's text, softmax(logits) at each <extra_0>, column 1 = p(good step)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Model

    path = local[H.QWEN_PRM]
    tok = AutoTokenizer.from_pretrained(path)
    head = head_weights(path, "score.")
    tag = tok.encode("<extra_0>")[0]
    expected = []
    for prompt, steps in SOLUTIONS:
        messages = [{"role": "system", "content": H.QWEN_PRM_SYSTEM}, {"role": "user", "content": prompt},
                    {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
        ids = tok.encode(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
        probs = torch.softmax(mlp(head, backbone_hidden(Qwen2Model, path, ids)), dim=-1)[:, 1]
        expected.append([probs[i].item() for i, t in enumerate(ids) if t == tag])
    results = client.score("qwen-prm", step_items())
    for r, want, (_, steps) in zip(results, expected, SOLUTIONS):
        assert len(want) == len(steps)
        assert r.step_scores == pytest.approx(want, **TOL)
        assert r.score == pytest.approx(min(want), **TOL)


def test_math_shepherd_step_tag_and_plus_minus(client: RewardClient, local: dict[str, Path]) -> None:
    """Math-Shepherd's card: f"{question} {output}" with " ки" after each step; candidates =
    encode("+ -")[1:], tag = encode("ки")[-1]; p(good) = softmax(logits[:, :, candidates])[..., 0] at tags."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = local[H.SHEPHERD]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    candidates = tok.encode("+ -")[1:]
    tag = tok.encode("ки")[-1]
    assert len(candidates) == 2
    expected = []
    for question, steps in SOLUTIONS:
        output = "".join(f"{s} ки\n" for s in steps).rstrip("\n")
        ids = torch.tensor([tok.encode(f"{question} {output}")])
        with torch.no_grad():
            scores = model(ids).logits[:, :, candidates].softmax(dim=-1)[:, :, 0]
        expected.append(scores[ids == tag].tolist())
    results = client.score("shepherd", step_items())
    for r, want, (_, steps) in zip(results, expected, SOLUTIONS):
        assert len(want) == len(steps)
        assert r.step_scores == pytest.approx(want, **TOL)


def test_rlhflow_prm_plus_after_each_step_in_a_chat(client: RewardClient, local: dict[str, Path]) -> None:
    """RLHFlow's prm_evaluate.py: the conversation grows by (user: step, assistant: "+"); after each step it
    is run again and the score is softmax(logits[:, -3, [+, -]])[:, 0]; the item score is the mean."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = local[H.RLHFLOW]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    candidates = [tok.encode("+")[-1], tok.encode("-")[-1]]
    expected = []
    for question, steps in SOLUTIONS:
        conversation: list[dict[str, str]] = []
        scores = []
        for k, step in enumerate(steps):
            conversation.append({"content": f"{question} {step}" if k == 0 else step, "role": "user"})
            conversation.append({"content": "+", "role": "assistant"})
            ids = torch.tensor([template_ids(tok, conversation)])
            with torch.no_grad():
                logits = model(ids).logits[:, -3, candidates]
            scores.append(logits.softmax(dim=-1)[:, 0][0].item())
        expected.append(scores)
    results = client.score("rlhflow", step_items())
    for r, want in zip(results, expected):
        assert r.step_scores == pytest.approx(want, **TOL)
        assert r.score == pytest.approx(sum(want) / len(want), **TOL)


def test_implicit_prm_pair_sharing_a_tokenizer(client: RewardClient, local: dict[str, Path]) -> None:
    """PRIME / EurusPRM: r_t = beta * (log pi(y_t) - log pi_ref(y_t)); a step's reward sums its tokens'."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(local[H.EURUS])
    policy = AutoModelForCausalLM.from_pretrained(local[H.EURUS], dtype=torch.float32).eval()
    reference = AutoModelForCausalLM.from_pretrained(local[H.EURUS_REF], dtype=torch.float32).eval()

    def token_logprobs(model: Any, ids: list[int], start: int) -> list[float]:
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
        return [logp[t - 1, ids[t]].item() for t in range(start, len(ids))]

    expected = []
    for question, steps in SOLUTIONS:
        context = tok(question, add_special_tokens=False)["input_ids"]
        pieces = [tok(s + ("\n" if k < len(steps) - 1 else ""), add_special_tokens=False)["input_ids"]
                  for k, s in enumerate(steps)]
        ids = context + [t for p in pieces for t in p]
        pol, ref = token_logprobs(policy, ids, len(context)), token_logprobs(reference, ids, len(context))
        q = [a - b for a, b in zip(pol, ref)]
        rewards, at = [], 0
        for p in pieces:
            rewards.append(0.05 * sum(q[at:at + len(p)]))
            at += len(p)
        expected.append(rewards)
    results = client.score("eurus", step_items())
    for r, want in zip(results, expected):
        assert r.step_scores == pytest.approx(want, **TOL)
        assert r.score == pytest.approx(sum(want), **TOL)
        assert not math.isclose(r.score, 0.0, abs_tol=1e-6), "policy and reference must differ"

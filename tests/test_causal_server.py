"""Causal-LM scorers through the real gRPC server: the judge prefers correct GSM8K answers, master
keys never get a positive reward, implicit PRM with policy = reference is 0, confidence variants are
probabilities.

Models: the judge is the full SmolLM2-135M-Instruct (a claim that it judges well); the confidence
and implicit-PRM scorers run on SmolLM2 cut to its first two layers (`smollm_layers(2)`: real weights
and tokenizer, ~1/10 of the forward), since what their tests assert holds for any weights."""

from __future__ import annotations

import pytest
from causal_support import MASTER_KEYS, SMOLLM, gsm8k_pairs, smollm_layers
from support import ServerProcess

from rewardsvc.client import RewardClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    small = smollm_layers(2)
    config = {"scorers": {
        "judge": {"type": "judge", "model": SMOLLM},
        "confidence": {"type": "confidence", "model": small},
        "implicit_prm": {"type": "implicit_prm", "model": small, "reference_model": small},
    }}
    with ServerProcess(config, preimported=True) as srv, RewardClient(srv.address) as c:
        yield c


def _pair_items(pairs):
    items = []
    for k, p in enumerate(pairs):
        for kind in ("correct", "wrong"):
            items.append({"id": f"{k}-{kind}", "prompt": p["question"], "response": p[kind],
                          "reference": p["reference"], "group_id": str(k)})
    return items


def test_judge_prefers_correct_gsm8k_answers(client):
    pairs = gsm8k_pairs()[:5]
    res = client.score("judge", _pair_items(pairs))  # reference-guided (the default mode)
    assert all(r.error is None for r in res), [r.error for r in res]
    for k in range(len(pairs)):
        correct, wrong = res[2 * k], res[2 * k + 1]
        assert correct.score > wrong.score, (pairs[k]["question"], correct.details, wrong.details)
        assert -1.0 <= wrong.score < correct.score <= 1.0


@pytest.mark.parametrize("mode", ["reference", "pairwise", "pointwise"])
def test_master_keys_never_get_a_positive_reward(client, mode):
    pairs = gsm8k_pairs()
    items = [{"id": f"{k}-{i}", "prompt": p["question"], "response": key,
              "reference": p["correct"] if mode == "pairwise" else p["reference"]}
             for k, p in enumerate(pairs[:2]) for i, key in enumerate(MASTER_KEYS)]
    res = client.score("judge", items, mode=mode)
    assert len(res) == len(items)
    for item, r in zip(items, res):
        assert r.error is None, (item["response"], r.error)
        assert r.score <= 0.0, (item["response"], r.score, r.details)
        assert r.details["verdict"] == "master_key"


def test_implicit_prm_with_policy_as_reference_is_zero(client):
    items = [
        {"id": "steps", "prompt": "Add 3 and 4.", "steps": ["3 + 4 = 7", "The sum is 7."]},
        {"id": "split", "prompt": [{"role": "user", "content": "What is 2 * 5?"}],
         "response": "2 * 5 = 10\nSo the answer is 10.\nDone."},
    ]
    res = client.score("implicit_prm", items)
    assert [r.error for r in res] == [None, None]
    assert [len(r.step_scores) for r in res] == [2, 3]
    for r in res:
        assert r.score == 0.0 and all(s == 0.0 for s in r.step_scores)
    tokens = client.score("implicit_prm", items[:1], granularity="token")[0]
    assert tokens.score == 0.0 and len(tokens.step_scores) == tokens.details["tokens"] > 2


def test_confidence_variants_are_probabilities(client):
    items = _pair_items(gsm8k_pairs()[:2])
    for variant in ("crew_mean", "crew_min", "p_true", "reference_prob"):
        res = client.score("confidence", items, variant=variant)
        assert all(r.error is None for r in res), (variant, [r.error for r in res])
        assert all(0.0 <= r.score <= 1.0 for r in res), (variant, [r.score for r in res])
        assert all(r.details["variant"] == variant for r in res)

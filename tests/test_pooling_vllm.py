"""The vLLM pooling path (backend: vllm) scores what the transformers path scores, within 1e-3.

Needs a CUDA GPU and vllm (extra rewardsvc[vllm]); skipped otherwise, with the reason. Tiny
look-alikes (tests/hub_models.py) with head_dim 64, which vLLM's attention kernels support, in
float32 on both paths: a Skywork-style Llama RM and a Qwen2 RM (classify), Qwen2.5-Math-PRM (token
classification, vLLM's own Qwen2ForProcessRewardModel), Math-Shepherd and RLHFlow (LM-head
probabilities of "+"/"-").
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import hub_models as H
import pytest

from rewardsvc.backends.vllm_backend import vllm_unavailable_reason
from rewardsvc.config import parse_config
from rewardsvc.service import ScoringService
from rewardsvc.types import Item


def skip_reason() -> str | None:
    reason = vllm_unavailable_reason()
    if reason:
        return reason
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU: the vLLM pooling path runs on a GPU"


pytestmark = [pytest.mark.slow, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]

DIMS = dict(H.SMALL, hidden_size=128, num_attention_heads=2, num_key_value_heads=2, intermediate_size=256)
ENGINE = {"gpu_memory_utilization": 0.08, "max_model_len": 1024, "enforce_eager": True}


def build(root: Path) -> dict[str, dict[str, Any]]:
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    d = {name: root / name for name in ("llama", "qwen2", "qprm", "shepherd", "rlhflow")}
    H.build_seq_cls(d["llama"], LlamaConfig, H.llama3_tokenizer(), 0, DIMS)
    H.build_seq_cls(d["qwen2"], Qwen2Config, H.qwen_tokenizer(), 1, DIMS)
    H.build_qwen_prm(d["qprm"], DIMS)
    H.build_causal(d["shepherd"], MistralConfig, H.mistral_tokenizer(), 2, DIMS, sliding_window=None)
    H.build_causal(d["rlhflow"], LlamaConfig, H.llama3_tokenizer(), 3, DIMS)
    return {
        "llama": {"type": "classifier", "model": str(d["llama"])},
        "qwen2": {"type": "classifier", "model": str(d["qwen2"])},
        "qprm": {"type": "prm", "model": str(d["qprm"]), "format": "step_token", "trust_remote_code": True},
        "shepherd": {"type": "prm", "model": str(d["shepherd"]), "format": "step_tag"},
        "rlhflow": {"type": "prm", "model": str(d["rlhflow"]), "format": "step_chat"},
    }


def scores(stanzas: dict[str, dict[str, Any]], backend: str) -> dict[str, list[Any]]:
    extra = {"backend": backend, "dtype": "float32", **({"vllm": ENGINE} if backend == "vllm" else {"device": "cuda"})}
    config = parse_config({"scorers": {n: {**s, **extra} for n, s in stanzas.items()}})
    chats = [Item(id=str(i), prompt=p, response=r) for i, (p, r) in enumerate([
        ("What is 2 + 3?", "2 + 3 = 5."), ("Hello!", "Hi, how can I help you today?")])]
    solutions = [Item(id=str(i), prompt=p, steps=s) for i, (p, s) in enumerate([
        ("What is 2 + 3?", ["Step 1: 2 + 3 = 5.", "Step 2: The answer is 5."]),
        ("What is 6 * 7?", ["6 * 7 = 42."])])]

    async def main() -> dict[str, list[Any]]:
        async with ScoringService(config) as svc:
            return {n: await svc.score(n, chats if s["type"] == "classifier" else solutions)
                    for n, s in stanzas.items()}

    return asyncio.run(main())


def test_vllm_pooling_agrees_with_transformers(tmp_path: Path) -> None:
    stanzas = build(tmp_path)
    hf, vl = scores(stanzas, "transformers"), scores(stanzas, "vllm")
    for name in stanzas:
        for a, b in zip(hf[name], vl[name]):
            assert a.error is None and b.error is None, (name, a.error, b.error)
            assert b.score == pytest.approx(a.score, abs=1e-3), name
            assert b.step_scores == pytest.approx(a.step_scores, abs=1e-3), name

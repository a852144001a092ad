"""Batched classification forward passes for HF model directories: sequence and token logits.

One `PoolingBackend` holds one model. Callers hand it token-id lists (see scorers/render.py); it
pads them into one batch, passes explicit position ids so left padding gives the same numbers as
no padding, and returns each item's logits without padding. Tasks:

    sequence_classification  AutoModelForSequenceClassification; one logits row per item, read
                             where the HF class reads it (the last non-pad token for decoder
                             models, the [CLS] pooled output for BERT-like encoders)
    token_classification     AutoModelForTokenClassification (or AutoModel with remote code, e.g.
                             Qwen2.5-Math-PRM); logits at the requested positions
    lm_logits                AutoModelForCausalLM; LM-head logits at the requested positions,
                             restricted to the requested vocabulary ids (Math-Shepherd "+"/"-")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from rewardsvc.backends.device import resolve_device, resolve_dtype
from rewardsvc.model_refs import resolve_model_path

log = logging.getLogger(__name__)

TASKS = ("sequence_classification", "token_classification", "lm_logits")


def is_decoder_config(config: Any) -> bool:
    """True for causal (decoder-only) architectures: they read a sequence at its last token.

    BERT-like encoders appear in the masked-LM mapping; decoders appear only in the causal one.
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_decoder", False):
        return True
    model_type = getattr(config, "model_type", "")
    causal, masked = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return model_type in causal and model_type not in masked


class PoolingBackend:
    """One HF model for classification-style forward passes, used from one thread at a time."""

    def __init__(
        self,
        model: str,
        task: str,
        device: str = "auto",
        dtype: str = "auto",
        padding_side: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        if task not in TASKS:
            raise ValueError(f"task {task!r}: use one of {TASKS}")
        path = resolve_model_path(model)
        if path.is_file():
            raise ValueError(
                f"model {model!r} is a single file ({path.name}); classification scorers need an HF "
                "directory with the trained head (config.json, weights, tokenizer)"
            )
        self.path: Path = path
        self.task = task
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        kwargs: dict[str, Any] = {
            "dtype": self.dtype, "trust_remote_code": trust_remote_code, "output_loading_info": True,
        }
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        auto_map = getattr(hf_config, "auto_map", None)
        if task == "sequence_classification":
            loader: Any = AutoModelForSequenceClassification
        elif task == "lm_logits":
            loader = AutoModelForCausalLM
        elif trust_remote_code and auto_map and "AutoModel" in auto_map:
            # Qwen2.5-Math-PRM ships its own head class, reachable only through AutoModel; the
            # stock token-classification class would load the backbone with a blank head.
            loader = AutoModel
        else:
            loader = AutoModelForTokenClassification
        net, info = loader.from_pretrained(path, **kwargs)
        blank = set(info.get("missing_keys") or ())
        blank |= {k[0] if isinstance(k, tuple) else str(k) for k in info.get("mismatched_keys") or ()}
        if blank:
            # Never serve freshly initialised weights as if they were a trained model.
            names = sorted(blank)
            raise ValueError(
                f"{path} has no trained weights for {names[:4]}{' ...' if len(names) > 4 else ''}: it is "
                f"not a trained {task.replace('_', '-')} checkpoint (a bare backbone?). Train one with "
                "`rewardsvc train rm|prm`, or point `model:` at a trained checkpoint"
            )
        self.model = net.to(self.device).eval()
        self.is_decoder = is_decoder_config(self.model.config)

        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        self.pad_id: int = int(pad)
        text_config = self.model.config.get_text_config()
        if getattr(text_config, "pad_token_id", None) is None:
            # HF's last-token pooling needs a pad id to find the last real token of each row.
            text_config.pad_token_id = self.pad_id

        if padding_side == "auto":
            padding_side = "left" if self.is_decoder else "right"
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side {padding_side!r}: use auto, left or right")
        if padding_side == "left" and task == "sequence_classification" and not self.is_decoder:
            raise ValueError(
                f"padding_side left can't work for {type(self.model).__name__}: an encoder's "
                "classifier reads the first position ([CLS]), which left padding fills with padding; "
                "use padding_side: right (or auto)"
            )
        self.padding_side = padding_side
        self.max_positions = int(getattr(text_config, "max_position_embeddings", 0) or 0) or None
        self._torch = torch

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    def token_id(self, token: str) -> int:
        """The single vocabulary id `token` encodes to; a clear error if it is not one token."""
        ids = self.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"{token!r} is {len(ids)} tokens for this tokenizer ({ids}); it must be exactly one "
                "(try it with or without a leading space)"
            )
        return int(ids[0])

    def _batch(self, batch: Sequence[Sequence[int]]) -> tuple[dict[str, Any], list[int]]:
        """Padded tensors and each row's left offset (how far padding shifted its tokens)."""
        torch = self._torch
        longest = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        positions = torch.zeros((len(batch), longest), dtype=torch.long)
        offsets = []
        for row, ids in enumerate(batch):
            n = len(ids)
            start = longest - n if self.padding_side == "left" else 0
            input_ids[row, start : start + n] = torch.tensor(list(ids), dtype=torch.long)
            mask[row, start : start + n] = 1
            # Real tokens keep positions 0..n-1 whatever the padding, so scores don't move.
            positions[row, start : start + n] = torch.arange(n)
            offsets.append(start)
        tensors = {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}
        return {k: v.to(self.device) for k, v in tensors.items()}, offsets

    def sequence_logits(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        """One row of `num_labels` logits per item."""
        with self._torch.inference_mode():
            tensors, _ = self._batch(batch)
            logits = self.model(**tensors).logits
        return logits.float().cpu().tolist()

    def token_logits(
        self, batch: Sequence[Sequence[int]], positions: Sequence[Sequence[int]]
    ) -> list[list[list[float]]]:
        """Per item, the classifier's logits at each of its positions."""
        with self._torch.inference_mode():
            tensors, offsets = self._batch(batch)
            out = self.model(**tensors)
            logits = out.logits if hasattr(out, "logits") else out[0]
            return self._gather(logits, offsets, positions)

    def lm_token_logits(
        self, batch: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], vocab_ids: Sequence[int]
    ) -> list[list[list[float]]]:
        """Per item, LM-head logits of `vocab_ids` at each position (the next-token prediction there).

        The LM head runs on the gathered positions only: full-vocabulary logits for every token
        would take batch x length x vocab floats.
        """
        torch = self._torch
        with torch.inference_mode():
            tensors, offsets = self._batch(batch)
            hidden = self.model.base_model(**tensors).last_hidden_state
            rows = [r for r, pos in enumerate(positions) for _ in pos]
            cols = [offsets[r] + p for r, pos in enumerate(positions) for p in pos]
            dev = hidden.device
            picked = hidden[torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)]
            head = self.model.get_output_embeddings()
            logits = head(picked)[:, torch.tensor(list(vocab_ids), device=dev)].float().cpu().tolist()
        out, i = [], 0
        for pos in positions:
            out.append(logits[i : i + len(pos)])
            i += len(pos)
        return out

    @staticmethod
    def _gather(
        logits: Any, offsets: list[int], positions: Sequence[Sequence[int]]
    ) -> list[list[list[float]]]:
        rows = logits.float().cpu()
        return [[rows[r, offsets[r] + p].tolist() for p in pos] for r, pos in enumerate(positions)]

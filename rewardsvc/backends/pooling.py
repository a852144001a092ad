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

Checkpoints whose config names their own code (`auto_map`: ArmoRM, Qwen2.5-Math-PRM) load only with
`trust_remote_code`; heads that public checkpoints use without shipping code load from
backends/heads.py. A multi-objective RM (ArmoRM: per-objective rewards, a gating layer and their
weighted sum as `score`) returns all three per item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardsvc.backends.device import resolve_device, resolve_dtype
from rewardsvc.model_refs import resolve_model

log = logging.getLogger(__name__)

TASKS = ("sequence_classification", "token_classification", "lm_logits")


@dataclass
class SequenceOutput:
    """One item's sequence-classification output."""

    logits: list[float]
    #: Multi-objective RMs (ArmoRM): the reward per objective and the gating layer's weight for each.
    objectives: list[float] | None = None
    weights: list[float] | None = None


class RemoteCodeError(ValueError):
    """The checkpoint needs its own model code and the scorer did not allow it."""


def remote_code_error(model: str, auto_map: Any) -> RemoteCodeError:
    return RemoteCodeError(
        f"{model} ships its own model code (config.json auto_map: {auto_map}), which the stock "
        "transformers classes can't stand in for: set `trust_remote_code: true` in this scorer's config "
        "to run it (only for a checkpoint whose code you trust)"
    )


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


def single_token_id(tokenizer: Any, token: str) -> int:
    """The single vocabulary id `token` encodes to; a clear error if it is not one token."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(
            f"{token!r} is {len(ids)} tokens for this tokenizer ({ids}); it must be exactly one "
            "(try it with or without a leading space)"
        )
    return int(ids[0])


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
        if task not in TASKS:
            raise ValueError(f"task {task!r}: use one of {TASKS}")
        # Before importing torch and transformers (~4 CPU-s): a model that isn't there fails at once.
        self.resolved = resolve_model(model)
        path = self.resolved.path
        if path.is_file():
            raise ValueError(
                f"model {model!r} is a single file ({path.name}); classification scorers need an HF "
                "directory with the trained head (config.json, weights, tokenizer)"
            )
        import torch
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        self.path: Path = path
        self.task = task
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            hf_config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        except ValueError as exc:
            if "trust_remote_code" in str(exc) and not trust_remote_code:
                raise remote_code_error(model, _auto_map_of(path)) from None
            raise
        kwargs: dict[str, Any] = {
            "dtype": self.dtype, "trust_remote_code": trust_remote_code, "output_loading_info": True,
        }
        auto_map = getattr(hf_config, "auto_map", None)
        builtin = _builtin_class(hf_config, auto_map) if task == "sequence_classification" else None
        if builtin is not None:
            loader: Any = builtin
            kwargs.pop("trust_remote_code")
        elif task == "sequence_classification":
            loader = AutoModelForSequenceClassification
        elif task == "lm_logits":
            loader = AutoModelForCausalLM
        elif trust_remote_code and auto_map and "AutoModel" in auto_map:
            # Qwen2.5-Math-PRM ships its own head class, reachable only through AutoModel; the
            # stock token-classification class would load the backbone with a blank head.
            loader = AutoModel
        else:
            loader = AutoModelForTokenClassification
        try:
            net, info = loader.from_pretrained(path, **kwargs)
        except ValueError as exc:
            if "trust_remote_code" in str(exc) and not trust_remote_code:
                raise remote_code_error(model, auto_map) from None
            raise
        blank = set(info.get("missing_keys") or ())
        blank |= {k[0] if isinstance(k, tuple) else str(k) for k in info.get("mismatched_keys") or ()}
        if blank and auto_map and not trust_remote_code:
            # The stock class loaded, but the weights are for the checkpoint's own class.
            raise remote_code_error(model, auto_map)
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
        self.multi_objective = getattr(self.model.config, "num_objectives", None) is not None
        log.info("%s: %s model %s", model, task, self.resolved.describe())

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
        return single_token_id(self.tokenizer, token)

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
        return [out.logits for out in self.sequence_outputs(batch)]

    def sequence_outputs(self, batch: Sequence[Sequence[int]]) -> list[SequenceOutput]:
        """Per item: its logits (a multi-objective RM's `score`), and its objectives when it has them."""
        with self._torch.inference_mode():
            tensors, _ = self._batch(batch)
            out = self.model(**tensors)
        score = getattr(out, "score", None) if self.multi_objective else None
        logits = (score if score is not None else out.logits).float().cpu()
        rows = logits.reshape(len(batch), -1).tolist()  # ArmoRM's score is one number per item
        if not self.multi_objective:
            return [SequenceOutput(r) for r in rows]
        rewards = getattr(out, "rewards", None)
        gating = getattr(out, "gating_output", None)
        objectives = rewards.float().cpu().tolist() if rewards is not None else [None] * len(rows)
        weights = gating.float().cpu().tolist() if gating is not None else [None] * len(rows)
        return [SequenceOutput(r, o, w) for r, o, w in zip(rows, objectives, weights)]

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


def _auto_map_of(path: Path) -> Any:
    import json

    try:
        return json.loads((path / "config.json").read_text()).get("auto_map")
    except (OSError, ValueError):
        return None


def _builtin_class(hf_config: Any, auto_map: Any) -> Any:
    """The built-in class for a checkpoint whose architecture transformers lacks (backends/heads.py)."""
    names = getattr(hf_config, "architectures", None) or []
    if auto_map or len(names) != 1:
        return None
    from rewardsvc.backends.heads import BUILTIN_ARCHITECTURES

    return BUILTIN_ARCHITECTURES.get(names[0])

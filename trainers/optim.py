"""The optimiser and what it trains: AdamW over two parameter groups, the learning-rate schedule,
dropout off."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


def make_adamw(groups: list[dict[str, Any]], **kwargs: Any) -> torch.optim.Optimizer:
    """AdamW, fused where torch has it: one kernel over all parameters instead of a loop of small
    ops; on CPU the step over MiniLM's 23M parameters costs about a fifth of the foreach version."""
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(groups, **kwargs)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases and norm weights (1-d) are not decayed."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """The LR multiplier at each step: linear warmup, then cosine, linear or constant."""
    if kind not in ("cosine", "linear", "constant"):
        raise ValueError(f"lr_scheduler {kind!r}: use cosine, linear or constant")

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if kind == "linear":
            return 1.0 - progress
        return 1.0

    return f


def disable_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0

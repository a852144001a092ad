"""Regression value heads written by `rewardsvc train rm|prm --loss mse|bce|hl_gauss`.

The trainers put what a head means into the checkpoint's config, so the scorers read it as trained:
`hl_gauss: {low, high, count}` (one logit per value bin; value = the expected bin centre) and, for
reward models regressing scalar targets, `target_range: [low, high]` (the head predicts the target
scaled to [0, 1]: a 1-output head through a sigmoid, or the bins; the served value is in target units).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def bin_centers(spec: dict[str, Any]) -> list[float]:
    """Centres of an HL-Gauss head's bins ({low, high, count} in the checkpoint's config)."""
    low, high, count = float(spec["low"]), float(spec["high"]), int(spec["count"])
    return [low + (i + 0.5) * (high - low) / count for i in range(count)]


def expected_value(logits: Sequence[float], centers: Sequence[float]) -> float:
    top = max(logits)
    w = [math.exp(x - top) for x in logits]
    return sum(wi * c for wi, c in zip(w, centers)) / sum(w)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass
class ValueHead:
    centers: list[float] | None  # HL-Gauss bins; None = one output through a sigmoid
    low: float = 0.0
    high: float = 1.0

    @property
    def outputs(self) -> int:
        return len(self.centers) if self.centers is not None else 1

    def value(self, logits: Sequence[float]) -> float:
        v = expected_value(logits, self.centers) if self.centers is not None else _sigmoid(logits[0])
        return self.low + v * (self.high - self.low)


def value_head_of(model_config: Any) -> ValueHead | None:
    """The regression head a trainer recorded in `model_config`, or None for a plain head."""
    spec = getattr(model_config, "hl_gauss", None)
    target_range = getattr(model_config, "target_range", None)
    if spec is None and target_range is None:
        return None
    low, high = (float(target_range[0]), float(target_range[1])) if target_range else (0.0, 1.0)
    return ValueHead(bin_centers(spec) if spec else None, low, high)

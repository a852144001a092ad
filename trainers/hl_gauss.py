"""HL-Gauss: regression trained as classification over value bins (Farebrother et al. 2024, "Stop
Regressing").

The head has one logit per bin of [low, high]; the target of a value y is the probability mass a
Gaussian N(y, sigma^2) puts on each bin (sigma = 0.75 bin widths, as the paper recommends), and the
loss is the cross-entropy against it. The prediction is the expected bin centre. Compared with MSE
the loss is bounded, scale-free and keeps gradients alive for rare values; compared with plain
classification the smoothing says that neighbouring bins are nearly right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SIGMA_BINS = 0.75


@dataclass(frozen=True)
class Bins:
    low: float
    high: float
    count: int
    sigma_bins: float = SIGMA_BINS

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"HL-Gauss bins need high > low, got [{self.low}, {self.high}]")
        if self.count < 2:
            raise ValueError(f"HL-Gauss needs at least 2 bins, got {self.count}")
        if not self.sigma_bins > 0:
            raise ValueError(f"HL-Gauss sigma must be > 0 bin widths, got {self.sigma_bins}")

    @property
    def width(self) -> float:
        return (self.high - self.low) / self.count

    def centers(self) -> list[float]:
        return [self.low + (i + 0.5) * self.width for i in range(self.count)]

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "count": self.count, "sigma_bins": self.sigma_bins}


def targets(values: Any, bins: Bins) -> Any:
    """[..., count] probabilities: the mass of N(value, sigma^2) on each bin, renormalised to the
    range (values outside it are clipped to it first)."""
    import torch

    y = values.float().clamp(bins.low, bins.high).unsqueeze(-1)
    edges = torch.linspace(bins.low, bins.high, bins.count + 1, device=y.device)
    sigma = bins.sigma_bins * bins.width
    cdf = 0.5 * (1 + torch.erf((edges - y) / (sigma * math.sqrt(2))))
    mass = cdf[..., 1:] - cdf[..., :-1]
    return mass / (cdf[..., -1:] - cdf[..., :1]).clamp_min(1e-12)


def loss(logits: Any, values: Any, bins: Bins) -> Any:
    """Mean cross-entropy of [N, count] logits against the HL-Gauss targets of [N] values."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(targets(values, bins) * logp).sum(-1).mean()


def predict(logits: Any, bins: Bins) -> Any:
    """The expected bin centre: [..., count] logits -> [...] values."""
    import torch

    centers = torch.tensor(bins.centers(), device=logits.device)
    return torch.softmax(logits.float(), dim=-1) @ centers

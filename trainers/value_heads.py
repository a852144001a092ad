"""Value heads for regression-valued targets, shared by the rm and prm trainers.

    mse       1 output; squared error of the prediction
    bce       1 output; binary cross-entropy of its sigmoid (targets scaled to [0, 1])
    hl_gauss  one logit per value bin, Gaussian-smoothed targets (trainers/hl_gauss.py); the
              prediction is the expected bin centre; the bins go into the checkpoint's config
              (`hl_gauss`), so the scorers read the head as trained

PRM step values live in [0, 1]: mse compares sigmoid(output) with the label, as the prm scorer
reads a 1-output head through a sigmoid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardsvc.trainers.hl_gauss import Bins

HEADS = ("mse", "bce", "hl_gauss")


def check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"loss {head!r}: use one of {list(HEADS)}")


def load_value_head(auto_cls: Any, path: Path, head: str, bins: int, low: float = 0.0, high: float = 1.0) -> Any:
    """`auto_cls` (AutoModelFor{Sequence,Token}Classification) with the head for `head`; a checkpoint
    keeps its own bins."""
    from transformers import AutoConfig

    check_head(head)
    config = AutoConfig.from_pretrained(path)
    if head == "hl_gauss":
        spec = getattr(config, "hl_gauss", None) or Bins(low, high, bins).to_dict()
        config.hl_gauss = spec
        config.num_labels = int(spec["count"])
    else:
        config.num_labels = 1
    return auto_cls.from_pretrained(path, config=config)


def bins_of(spec: dict[str, Any]) -> Bins:
    return Bins(float(spec["low"]), float(spec["high"]), int(spec["count"]), float(spec.get("sigma_bins", 0.75)))


def predict(logits: Any, head: str, spec: dict[str, Any] | None) -> Any:
    """[..., outputs] -> [...] values in the targets' scale (PRM: p(correct))."""
    import torch

    from rewardsvc.trainers import hl_gauss

    if head == "hl_gauss":
        assert spec is not None, "an hl_gauss head without its bins in the model config"
        return hl_gauss.predict(logits, bins_of(spec))
    if head in ("bce", "mse"):
        return torch.sigmoid(logits[..., 0].float())
    return torch.softmax(logits.float(), dim=-1)[..., 1]  # the 2-label ce head


step_value = predict


def pointwise_loss(outputs: Any, targets: Any, head: str, spec: dict[str, Any] | None, weights: Any = None) -> Any:
    """Weighted mean loss of [N, outputs] head outputs against [N] targets in [0, 1]."""
    import torch
    import torch.nn.functional as F

    from rewardsvc.trainers import hl_gauss

    if head == "hl_gauss":
        assert spec is not None
        bins = bins_of(spec)
        per = -(hl_gauss.targets(targets, bins) * torch.log_softmax(outputs.float(), -1)).sum(-1)
    elif head == "bce":
        per = F.binary_cross_entropy_with_logits(outputs[..., 0].float(), targets.float(), reduction="none")
    elif head == "mse":
        per = (torch.sigmoid(outputs[..., 0].float()) - targets.float()) ** 2
    else:
        raise ValueError(f"loss {head!r}: use one of {list(HEADS)}")
    if weights is None:
        return per.mean()
    return (per * weights).sum() / weights.sum().clamp_min(1e-12)


def step_loss(logits: Any, labels: Any, head: str, error_weight: float, spec: dict[str, Any] | None
              ) -> tuple[Any, dict[str, float]]:
    """The PRM loss at labelled step positions (labels 0/1, -100 elsewhere) and its step accuracy."""
    import torch

    keep = labels != -100
    out = logits[keep]
    y = labels[keep].float()
    weights = torch.where(y < 0.5, torch.full_like(y, error_weight), torch.ones_like(y))
    loss = pointwise_loss(out, y, head, spec, weights)
    with torch.no_grad():
        acc = ((predict(out, head, spec) >= 0.5).float() == y).float().mean()
    return loss, {"accuracy": float(acc)}

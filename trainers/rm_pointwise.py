"""Reward model regression on scalar targets (`rewardsvc train rm --loss mse|bce|hl_gauss`).

Rows {prompt, response, <target_column>}: a rating, a stronger RM's score, a pass rate. Targets are
scaled to [0, 1] by the training targets' range (kept in the checkpoint's config as
`target_range`), and every loss predicts the scaled value (trainers/value_heads.py): MSE of a
sigmoid output, BCE of it, or HL-Gauss over value bins. Inputs are rendered as the `classifier`
scorer renders them. Held-out metrics: Pearson and Spearman correlation with the targets, MSE in
target units, and, when rows carry a boolean `label` (e.g. "the solution is correct"), AUROC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardsvc.trainers import value_heads
from rewardsvc.trainers.rm import RMConfig, pad_batch, set_pad_token
from rewardsvc.trainers.task import Task


@dataclass
class Scored:
    ids: list[int]
    target: float  # in target units
    label: bool | None = None


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def ranks(xs: Sequence[float]) -> list[float]:
    """Average ranks (ties share theirs), for Spearman's correlation."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


class PointwiseRMTask(Task):
    plot_metrics = ("pearson",)
    headline = "eval_spearman"

    config: RMConfig

    def prepare(self) -> None:
        from rewardsvc.scorers.render import encode_conversation

        cfg = self.config
        value_heads.check_head(cfg.loss)
        train_rows, eval_rows = self.read_split(key=lambda r: str(r.get("prompt")))

        def encode(rows: list[dict[str, Any]], name: str) -> list[Scored]:
            out = []
            for i, r in enumerate(rows):
                value = r.get(cfg.target_column)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{name}[{i}]: needs a finite number in {cfg.target_column!r}")
                ids = encode_conversation(self.tokenizer, r.get("prompt", ""), r["response"], cfg.max_length).ids
                label = r.get("label")
                out.append(Scored(ids, float(value), label if isinstance(label, bool) else None))
            return out

        self.train = encode(train_rows, "train")
        self.eval = encode(eval_rows, "eval")
        if not self.train:
            raise ValueError("no training rows")
        low, high = min(e.target for e in self.train), max(e.target for e in self.train)
        if not high > low:
            raise ValueError(f"all training targets are {low}: nothing to regress")
        self.range = (low, high)

    def scale(self, value: float) -> float:
        low, high = self.range
        return min(1.0, max(0.0, (value - low) / (high - low)))

    def unscale(self, value: float) -> float:
        low, high = self.range
        return low + value * (high - low)

    def load_model(self, path: Path) -> Any:
        from transformers import AutoModelForSequenceClassification

        cfg = self.config
        model = value_heads.load_value_head(AutoModelForSequenceClassification, path, cfg.loss, cfg.hl_gauss_bins)
        model.config.target_range = list(getattr(model.config, "target_range", None) or self.range)
        self.range = tuple(model.config.target_range)
        set_pad_token(model, self.tokenizer)
        return model

    def length(self, example: Scored) -> int:
        return len(example.ids)

    def collate(self, examples: Sequence[Scored]) -> dict[str, Any]:
        import torch

        ids, mask = pad_batch([e.ids for e in examples], self.tokenizer.pad_token_id)
        targets = torch.tensor([self.scale(e.target) for e in examples])
        return {"input_ids": ids, "attention_mask": mask, "targets": targets}

    def _spec(self, model: Any) -> dict[str, Any] | None:
        return getattr(getattr(model, "module", model).config, "hl_gauss", None)

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        import torch

        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = value_heads.pointwise_loss(out, batch["targets"], self.config.loss, self._spec(model))
        with torch.no_grad():
            pred = value_heads.predict(out, self.config.loss, self._spec(model))
            corr = pearson(pred.tolist(), batch["targets"].tolist())
        return loss, {"pearson": corr}

    def predict(self, model: Any, examples: Sequence[Scored], device: str, autocast: Any) -> list[float]:
        """Predictions in target units, input order kept."""
        import torch

        out = [0.0] * len(examples)
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
        for start in range(0, len(order), 16):
            idx = order[start:start + 16]
            ids, mask = pad_batch([examples[i].ids for i in idx], self.tokenizer.pad_token_id)
            with torch.no_grad(), autocast():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            values = value_heads.predict(logits, self.config.loss, self._spec(model)).float().cpu().tolist()
            for i, v in zip(idx, values):
                out[i] = self.unscale(v)
        return out

    def evaluate(self, model: Any, device: str, autocast: Any) -> dict[str, float]:
        from rewardsvc.trainers.prm import auroc

        pred = self.predict(model, self.eval, device, autocast)
        truth = [e.target for e in self.eval]
        metrics = {
            "eval_pearson": pearson(pred, truth),
            "eval_spearman": pearson(ranks(pred), ranks(truth)),
            "eval_mse": sum((p - t) ** 2 for p, t in zip(pred, truth)) / max(1, len(truth)),
            "eval_examples": len(truth),
        }
        labelled = [(p, e.label) for p, e in zip(pred, self.eval) if e.label is not None]
        if labelled:
            metrics["eval_auroc"] = auroc([p for p, y in labelled if y], [p for p, y in labelled if not y])
        return metrics

    def serving_config(self, model_dir: Path, metrics: dict[str, float]) -> dict[str, Any]:
        cfg = self.config
        return {"scorers": {cfg.scorer_name: {"type": "classifier", "model": str(model_dir),
                                              "max_length": cfg.max_length}}}

"""Bradley-Terry reward model trainer: (prompt, chosen, rejected) -> AutoModelForSequenceClassification.

Loss per pair: -log σ(r_c - r_r - margin) + λ (r_c + r_r)², chosen and rejected in one forward.
Inputs are rendered exactly as the `classifier` scorer renders them (rewardsvc/scorers/render.py:
chat template or the plain HH format, left truncation), so the checkpoint serves as trained.
The held-out reward mean/std go into rewardsvc.yaml as normalize_mean / normalize_std.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardsvc.dataclass_dict import option
from rewardsvc.trainers.examples import Pair, preference_pair
from rewardsvc.trainers.task import Task, TrainConfig


@dataclass
class RMConfig(TrainConfig):
    max_length: int = option(256, "tokens per (prompt, response); longer inputs lose the start of the prompt")
    margin_column: str = option("margin", "row field with a per-pair margin m in -log σ(r_c - r_r - m); absent = 0")
    center_rewards_coefficient: float = option(
        0.0, "λ of the reward-centering term λ·mean((r_c + r_r)²); 0.01 is usual")
    eval_batch_tokens: int = option(16384, "token budget of one evaluation forward")
    scorer_name: str = option("rm", "name of the classifier scorer in the written rewardsvc.yaml")
    loss: str = option("bt", "bt: Bradley-Terry on (chosen, rejected) pairs; mse, bce or hl_gauss: regression on "
                             "pointwise rows {prompt, response, <target_column>} (trainers/rm_pointwise.py)")
    target_column: str = option("target", "mse/bce/hl_gauss: the row field with the scalar target")
    hl_gauss_bins: int = option(51, "hl_gauss: value bins over the training targets' range (sigma = 0.75 bins)")


@dataclass
class EncodedPair:
    chosen: list[int]
    rejected: list[int]
    margin: float


def load_reward_model(path: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    return model


def set_pad_token(model: Any, tokenizer: Any) -> None:
    """Decoder RMs read the reward at the last non-pad token, so both need the same pad id."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id


def encode_pair(tokenizer: Any, pair: Pair, max_length: int) -> EncodedPair:
    from rewardsvc.scorers.render import encode_conversation

    chosen = encode_conversation(tokenizer, pair.prompt, pair.chosen, max_length).ids
    rej_prompt = pair.prompt if pair.rejected_prompt is None else pair.rejected_prompt
    rejected = encode_conversation(tokenizer, rej_prompt, pair.rejected, max_length).ids
    return EncodedPair(chosen, rejected, pair.margin)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Right-padded input_ids and attention_mask (what the classifier backend does for encoders)."""
    import torch

    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def bt_loss(r_chosen: Any, r_rejected: Any, margin: Any = None, center: float = 0.0) -> Any:
    """Bradley-Terry loss -mean log σ(r_c - r_r - m) + λ·mean((r_c + r_r)²)."""
    import torch.nn.functional as F

    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center:
        loss = loss + center * ((r_chosen + r_rejected) ** 2).mean()
    return loss


def score_sequences(model: Any, seqs: Sequence[Sequence[int]], pad_id: int, device: str,
                    batch_tokens: int, autocast: Any = None) -> list[float]:
    """Raw rewards for token sequences, length-sorted batches under a token budget, input order kept."""
    import contextlib

    import torch

    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = [0.0] * len(seqs)
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j + 1 - i) * len(seqs[order[j]]) <= batch_tokens:
            j += 1
        ids, mask = pad_batch([seqs[k] for k in order[i:j]], pad_id)
        with torch.no_grad(), (autocast() if autocast else contextlib.nullcontext()):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for k, v in zip(order[i:j], logits[:, 0].float().cpu().tolist()):
            out[k] = v
        i = j
    return out


class RMTask(Task):
    plot_metrics = ("accuracy",)
    headline = "eval_accuracy"

    config: RMConfig

    def load_model(self, path: Path) -> Any:
        model = load_reward_model(path)
        set_pad_token(model, self.tokenizer)
        return model

    def _pairs(self, rows: list[dict[str, Any]], name: str) -> list[EncodedPair]:
        cfg = self.config
        return [encode_pair(self.tokenizer, preference_pair(r, f"{name}[{i}]", cfg.margin_column), cfg.max_length)
                for i, r in enumerate(rows)]

    def prepare(self) -> None:
        train_rows, eval_rows = self.read_split()
        self.train = self._pairs(train_rows, "train")
        self.eval = self._pairs(eval_rows, "eval")

    def length(self, example: EncodedPair) -> int:
        return max(len(example.chosen), len(example.rejected))

    def collate(self, examples: Sequence[EncodedPair]) -> dict[str, Any]:
        import torch

        # Chosen rows first, then rejected: one forward for both halves.
        ids, mask = pad_batch([e.chosen for e in examples] + [e.rejected for e in examples],
                              self.tokenizer.pad_token_id)
        margin = torch.tensor([e.margin for e in examples], dtype=torch.float32)
        return {"input_ids": ids, "attention_mask": mask, "margin": margin}

    def samples(self, batch: dict[str, Any]) -> int:
        return int(batch["margin"].shape[0])

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()
        n = batch["margin"].shape[0]
        r_c, r_r = rewards[:n], rewards[n:]
        margin = batch["margin"] if bool((batch["margin"] != 0).any()) else None
        loss = bt_loss(r_c, r_r, margin, self.config.center_rewards_coefficient)
        with_grad_off = (r_c - r_r).detach()
        return loss, {"accuracy": float((with_grad_off > 0).float().mean()), "margin": float(with_grad_off.mean())}

    def evaluate(self, model: Any, device: str, autocast: Any) -> dict[str, float]:
        return evaluate_pairs(model, self.eval, self.tokenizer.pad_token_id, device,
                              self.config.eval_batch_tokens, autocast)

    def serving_config(self, model_dir: Path, metrics: dict[str, float]) -> dict[str, Any]:
        stanza: dict[str, Any] = {"type": "classifier", "model": str(model_dir), "max_length": self.config.max_length}
        if metrics.get("eval_reward_std", 0) > 0:
            stanza["normalize_mean"] = metrics["eval_reward_mean"]
            stanza["normalize_std"] = metrics["eval_reward_std"]
        return {"scorers": {self.config.scorer_name: stanza}}


def evaluate_pairs(model: Any, pairs: Sequence[EncodedPair], pad_id: int, device: str,
                   batch_tokens: int = 16384, autocast: Any = None) -> dict[str, float]:
    """Pairwise accuracy 1[r_c > r_r] (ties count as wrong), BT loss, and reward mean/std."""
    import torch

    if not pairs:
        return {}
    seqs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    rewards = score_sequences(model, seqs, pad_id, device, batch_tokens, autocast)
    n = len(pairs)
    r_c, r_r = torch.tensor(rewards[:n]), torch.tensor(rewards[n:])
    margin = torch.tensor([p.margin for p in pairs])
    all_r = torch.tensor(rewards)
    acc = float((r_c > r_r).float().mean())
    return {
        "eval_accuracy": acc,
        # Binomial standard error, so a reader can tell "above chance" from noise.
        "eval_accuracy_se": math.sqrt(acc * (1 - acc) / n),
        "eval_loss": float(bt_loss(r_c, r_r, margin)),
        "eval_reward_mean": float(all_r.mean()),
        "eval_reward_std": float(all_r.std()),
        "eval_pairs": n,
    }


def train_rm(config: RMConfig) -> dict[str, Any]:
    """Train a Bradley-Terry reward model; returns the run summary (eval_accuracy, samples_per_s...)."""
    # The loop imports torch; `rewardsvc train --help` needs only the config above.
    from rewardsvc.trainers.loop import Trainer

    if config.loss != "bt":
        from rewardsvc.trainers.rm_pointwise import PointwiseRMTask

        return Trainer(config, PointwiseRMTask(config)).run()
    return Trainer(config, RMTask(config)).run()

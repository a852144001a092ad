"""Implicit PRM trainer (PRIME): a policy whose log-ratio to a reference LM is a process reward.

PRIME (Cui et al. 2025) trains the policy pi on outcome labels only: with
q_t = log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t), the outcome reward is r = beta * sum_t q_t
and the loss is binary cross-entropy of sigma(r) against "the solution is correct". The dense
per-token rewards beta * q_t then come for free; the `implicit_prm` scorer serves them summed per
step. Inputs are tokenised exactly as that scorer does (the prompt as the policy saw it, each step
on its own, the separator kept), so the checkpoint serves as trained.

Cheap on a CPU: only the top `train_layers` decoder layers train; the layers below stay the
reference's (the policy starts as the reference), so their output for an example is the same at
every step. It is computed once per example together with the reference log-probs, and a training
step runs the top layers and the LM head only. The final norm and the (tied) embeddings stay frozen.

Rows: {prompt, response, verdict: yes|no} (trainers/data/gsm8k-judge.jsonl.gz), or a boolean
`label` / `is_correct`; `steps` (a list) instead of a response split on the separator.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardsvc.dataclass_dict import option
from rewardsvc.trainers.loop import Task, TrainConfig, Trainer

log = logging.getLogger(__name__)

BASE_MODEL = "bundled:smollm2-135m-instruct"


@dataclass
class ImplicitPRMConfig(TrainConfig):
    model: str = option(BASE_MODEL, "the policy's starting point: a causal LM (local HF dir, .gguf, bundled:NAME)")
    reference_model: str = option("", "pi_ref; empty = `model` (the policy starts as its reference)")
    beta: float = option(0.05, "r = beta * sum_t log pi/pi_ref; PRIME uses 0.05")
    train_layers: int = option(2, "decoder layers trained, from the top; the rest stay the reference's and run "
                                  "once per example (0 = all layers)")
    step_separator: str = option("\n", "splits a response into steps (as the implicit_prm scorer does)")
    max_length: int = option(512, "tokens of prompt + response; longer examples are left out (counted)")
    learning_rate: float = option(2e-4, "peak AdamW learning rate")
    scorer_name: str = option("implicit_prm", "name of the implicit_prm scorer in the written rewardsvc.yaml")


@dataclass
class Example:
    ids: list[int]  # context + target
    context: int  # tokens of context; target = ids[context:]
    step_of: list[int]  # step index of each target token
    steps: int
    label: float
    trunk: Any = None  # [len(ids), hidden]: output of the frozen layers (set in load_model)
    ref_logp: Any = None  # [len(target)]: log pi_ref of the target tokens


def outcome_label(row: dict[str, Any], where: str) -> float:
    for key in ("label", "is_correct"):
        if isinstance(row.get(key), bool):
            return float(row[key])
    verdict = str(row.get("verdict", "")).strip().lower()
    if verdict in ("yes", "no"):
        return 1.0 if verdict == "yes" else 0.0
    raise ValueError(f"{where}: needs an outcome: `verdict` yes/no, or a boolean `label` or `is_correct`")


def encode_example(tokenizer: Any, row: dict[str, Any], separator: str, where: str) -> Example:
    """The implicit_prm scorer's tokenisation of one row (scorers/implicit_prm.py, scorers/causal.py)."""
    from rewardsvc.scorers.causal import prompt_token_ids
    from rewardsvc.scorers.implicit_prm import response_steps
    from rewardsvc.types import item_from_dict

    item = item_from_dict({k: row[k] for k in ("prompt", "response", "steps") if k in row})
    context = prompt_token_ids(tokenizer, item.prompt)
    target: list[int] = []
    step_of: list[int] = []
    pieces = response_steps(item, separator)
    for k, step in enumerate(pieces):
        ids = list(tokenizer(step, add_special_tokens=False)["input_ids"])
        target += ids
        step_of += [k] * len(ids)
    if not target:
        raise ValueError(f"{where}: empty response")
    return Example(context + target, len(context), step_of, len(pieces), outcome_label(row, where))


def run_top(lm: Any, hidden: Any, layers: Sequence[Any]) -> Any:
    """`layers` (the top of lm's decoder) and the final norm over hidden states of the layers
    below them; causal attention, right padding only (pads never precede a real token)."""
    import torch

    positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    rope = lm.model.rotary_emb(hidden, position_ids=positions)
    for layer in layers:
        out = layer(hidden, attention_mask=None, position_embeddings=rope, position_ids=positions)
        hidden = out[0] if isinstance(out, tuple) else out
    return lm.model.norm(hidden)


def target_logprobs(lm: Any, normed: Any, positions: Any, targets: Any) -> Any:
    """log p(target) read from the final hidden states at the positions that predict them."""
    import torch

    h = normed.gather(1, positions.unsqueeze(-1).expand(-1, -1, normed.shape[-1]))
    logits = lm.lm_head(h).float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    from rewardsvc.trainers.prm import auroc as _auroc

    return _auroc(positives, negatives)


class ImplicitPRMTask(Task):
    plot_metrics = ("accuracy", "auroc_sum", "auroc_min")
    headline = "eval_auroc_min"

    config: ImplicitPRMConfig

    def prepare(self) -> None:
        cfg = self.config
        if cfg.train_layers < 0:
            raise ValueError(f"train_layers must be >= 0, got {cfg.train_layers}")
        if not cfg.step_separator:
            raise ValueError("step_separator must not be empty")
        # Solutions of one problem stay on one side of the split.
        train_rows, eval_rows = self.read_split(key=lambda r: str(r.get("prompt")))
        self.train, self.too_long = self._encode(train_rows, "train")
        self.eval, eval_long = self._encode(eval_rows, "eval")
        self.too_long += eval_long

    def _encode(self, rows: list[dict[str, Any]], name: str) -> tuple[list[Example], int]:
        out, too_long = [], 0
        for i, r in enumerate(rows):
            ex = encode_example(self.tokenizer, r, self.config.step_separator, f"{name}[{i}]")
            if len(ex.ids) > self.config.max_length:
                too_long += 1
                continue
            out.append(ex)
        if too_long:
            log.info("%s: %d examples longer than max_length=%d left out", name, too_long, self.config.max_length)
        return out, too_long

    # -- model: frozen trunk + trainable top, reference top kept aside

    def load_model(self, path: Path) -> Any:
        import torch
        from transformers import AutoModelForCausalLM

        from rewardsvc.backends.gguf import model_dir

        cfg = self.config
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        n_layers = len(lm.model.layers)
        k = n_layers if cfg.train_layers == 0 else min(cfg.train_layers, n_layers)
        self.split = n_layers - k
        for p in lm.parameters():
            p.requires_grad_(False)
        for layer in lm.model.layers[self.split:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        base = model_dir(cfg.model)
        ref_source = model_dir(cfg.reference_model) if cfg.reference_model else base
        same_ref = ref_source == base
        if Path(path).resolve() == Path(base).resolve() and same_ref:
            reference = lm  # a fresh run: the policy is still its reference
        else:  # resuming, or another reference: load it
            reference = AutoModelForCausalLM.from_pretrained(ref_source, dtype=torch.float32)
        self.ref_top = [copy.deepcopy(layer) for layer in reference.model.layers[self.split:]]
        for layer in self.ref_top:
            layer.requires_grad_(False)
        with torch.no_grad():
            lm.eval()
            for ex in self.train + self.eval:
                ids = torch.tensor([ex.ids])
                hidden = lm.model(ids, output_hidden_states=True).hidden_states
                ex.trunk = hidden[self.split][0]
                ref = lm if reference is lm else reference
                if same_ref:
                    normed = run_top(ref, ex.trunk.unsqueeze(0), self.ref_top)
                else:  # a different reference: its own full forward
                    normed = ref.model(ids).last_hidden_state
                pos, tgt = self._targets([ex])
                ex.ref_logp = target_logprobs(ref, normed, pos, tgt)[0, : len(ex.ids) - ex.context]
            lm.train()
        self.frozen_head = (lm.model.norm, lm.lm_head)
        log.info("implicit PRM: training the top %d of %d layers; %d train / %d held-out examples cached",
                 k, n_layers, len(self.train), len(self.eval))
        return lm

    @staticmethod
    def _targets(examples: Sequence[Example]) -> tuple[Any, Any]:
        """[B, T] positions predicting each target token, and the target ids (right-padded)."""
        import torch

        t_max = max(len(e.ids) - e.context for e in examples)
        pos = torch.zeros((len(examples), t_max), dtype=torch.long)
        tgt = torch.zeros((len(examples), t_max), dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e.ids) - e.context
            pos[i, :n] = torch.arange(e.context - 1, e.context - 1 + n)
            tgt[i, :n] = torch.tensor(e.ids[e.context:])
        return pos, tgt

    def length(self, example: Example) -> int:
        return len(example.ids)

    def collate(self, examples: Sequence[Example]) -> dict[str, Any]:
        import torch

        longest = max(len(e.ids) for e in examples)
        hidden = examples[0].trunk.shape[-1]
        trunk = torch.zeros((len(examples), longest, hidden))
        mask = torch.zeros((len(examples), longest), dtype=torch.long)
        pos, tgt = self._targets(examples)
        ref = torch.zeros(pos.shape)
        tmask = torch.zeros(pos.shape)
        for i, e in enumerate(examples):
            trunk[i, : len(e.ids)] = e.trunk
            mask[i, : len(e.ids)] = 1
            n = len(e.ids) - e.context
            ref[i, :n] = e.ref_logp
            tmask[i, :n] = 1
        labels = torch.tensor([e.label for e in examples])
        return {"trunk": trunk, "attention_mask": mask, "positions": pos, "targets": tgt, "ref_logp": ref,
                "target_mask": tmask, "labels": labels}

    def samples(self, batch: dict[str, Any]) -> int:
        return int(batch["labels"].shape[0])

    def token_logratio(self, model: Any, batch: dict[str, Any]) -> Any:
        """[B, T] log pi - log pi_ref of the target tokens (0 at padding)."""
        lm = getattr(model, "module", model)
        normed = run_top(lm, batch["trunk"], lm.model.layers[self.split:])
        logp = target_logprobs(lm, normed, batch["positions"], batch["targets"])
        return (logp - batch["ref_logp"]) * batch["target_mask"]

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        import torch.nn.functional as F

        reward = self.config.beta * self.token_logratio(model, batch).sum(-1)
        loss = F.binary_cross_entropy_with_logits(reward, batch["labels"])
        correct = ((reward.detach() > 0).float() == batch["labels"]).float().mean()
        return loss, {"accuracy": float(correct), "reward": float(reward.detach().mean())}

    def evaluate(self, model: Any, device: str, autocast: Any) -> dict[str, float]:
        cfg = self.config
        rewards: list[float] = []
        step_min: list[float] = []
        for i in range(0, len(self.eval), 8):
            chunk = self.eval[i : i + 8]
            batch = {k: v.to(device) for k, v in self.collate(chunk).items()}
            with autocast():
                ratio = self.token_logratio(model, batch).float().cpu()
            for e, row in zip(chunk, ratio):
                per_step = [0.0] * e.steps
                for k, q in zip(e.step_of, row.tolist()):
                    per_step[k] += cfg.beta * q
                rewards.append(sum(per_step))
                step_min.append(min(per_step))
        labels = [e.label for e in self.eval]
        pos = [i for i, y in enumerate(labels) if y > 0.5]
        neg = [i for i, y in enumerate(labels) if y <= 0.5]
        nll = [-(y * _logsig(r) + (1 - y) * _logsig(-r)) for r, y in zip(rewards, labels)]
        return {
            "eval_loss": sum(nll) / max(1, len(nll)),
            "eval_accuracy": sum((r > 0) == (y > 0.5) for r, y in zip(rewards, labels)) / max(1, len(labels)),
            # Threshold-free: do the rewards rank correct solutions above incorrect ones?
            "eval_auroc_sum": auroc([rewards[i] for i in pos], [rewards[i] for i in neg]),
            "eval_auroc_min": auroc([step_min[i] for i in pos], [step_min[i] for i in neg]),
            "eval_correct": len(pos), "eval_incorrect": len(neg), "examples_too_long": self.too_long,
        }

    def serving_config(self, model_dir: Path, metrics: dict[str, float]) -> dict[str, Any]:
        cfg = self.config
        return {"scorers": {cfg.scorer_name: {
            "type": "implicit_prm", "model": str(model_dir), "reference_model": cfg.reference_model or cfg.model,
            "beta": cfg.beta, "step_separator": cfg.step_separator, "max_length": cfg.max_length,
        }}}


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def train_implicit_prm(config: ImplicitPRMConfig) -> dict[str, Any]:
    """Train a PRIME implicit PRM; returns the run summary (eval_auroc_min, eval_auroc_sum, ...)."""
    return Trainer(config, ImplicitPRMTask(config)).run()

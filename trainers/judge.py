"""Generative judge trainer: supervised fine-tuning of a causal LM on judge verdicts (and critiques).

Each example becomes exactly the context the `judge` scorer builds (rewardsvc/scorers/judge.py:
the same templates, one user turn through the chat template, the pointwise "Rating: " prefill,
parts split at the scorer's MARK and tokenised on their own), followed by the target: the verdict
first, then the critique if any, then end-of-turn. The loss covers the target tokens only.

The verdict comes first because the scorer reads it from the first answer token's logits
(Yes/No, A/B) or from a short generation (the rating); a critique-first target would teach the
model to answer in a place the scorer never looks.

Modes, from the row: `responses` [a, b] -> pairwise (verdict A/B; swap_augment adds the swapped
order with the flipped verdict, against position bias); `reference` -> reference-guided (verdict
yes/no: the scorer's `reference_method: yes_no`, which the written stanza selects); otherwise
pointwise (verdict a 1-10 rating).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardsvc.dataclass_dict import option
from rewardsvc.scorers.causal import first_token_ids
from rewardsvc.scorers.render import MARK, chat_parts
from rewardsvc.trainers.examples import JudgeExample, judge_example
from rewardsvc.trainers.prm import auroc
from rewardsvc.trainers.task import Task, TrainConfig

_YES = {"yes", "true", "correct", "1", "y"}
_NO = {"no", "false", "incorrect", "wrong", "0", "n"}


@dataclass
class JudgeConfig(TrainConfig):
    model: str = option("bundled:smollm2-135m-instruct", "causal LM to fine-tune (GGUF is converted once)")
    max_length: int = option(1024, "tokens per example (context + target); longer examples are skipped")
    batch_size: int = option(4, "examples per micro-batch per device")
    learning_rate: float = option(1e-5, "peak AdamW learning rate")
    disable_dropout: bool = option(True, "turn dropout off")
    swap_augment: bool = option(True, "pairwise rows also train with A and B swapped (verdict flipped)")
    pointwise_template: str = option("", "empty = the judge scorer's default")
    pairwise_template: str = option("", "empty = the judge scorer's default")
    reference_template: str = option("", "empty = the judge scorer's default")
    pointwise_prefill: str = option("Rating: ", "the start of the judge's reply in pointwise mode (as the scorer)")
    eval_batch_tokens: int = option(8192, "token budget of one evaluation forward")
    scorer_name: str = option("judge", "name of the judge scorer in the written rewardsvc.yaml")


@dataclass
class EncodedJudge:
    context: list[int]
    target: list[int]
    mode: str
    candidates: tuple[list[int], list[int]] | None = None  # (positive first ids, negative first ids)
    positive: bool = True  # for binary modes: is the verdict the positive one (Yes / A)


def example_mode(ex: JudgeExample) -> str:
    if len(ex.responses) == 2:
        return "pairwise"
    if ex.reference is not None:
        return "reference"
    return "pointwise"


def normalise_verdict(mode: str, verdict: str, where: str = "row") -> str:
    v = verdict.strip()
    if mode == "reference":
        if v.lower() in _YES:
            return "Yes"
        if v.lower() in _NO:
            return "No"
        raise ValueError(f"{where}: reference-mode verdict {verdict!r}: use yes or no")
    if mode == "pairwise":
        if v.upper() in ("A", "B"):
            return v.upper()
        raise ValueError(f"{where}: pairwise verdict {verdict!r}: use A or B")
    try:
        rating = float(v)
    except ValueError:
        raise ValueError(f"{where}: pointwise verdict {verdict!r}: use a rating 1-10") from None
    if not (1 <= rating <= 10 and rating.is_integer()):
        raise ValueError(f"{where}: pointwise verdict {verdict!r}: use a whole rating 1-10")
    return str(int(rating))


def verdict_metrics(positives: Sequence[float], negatives: Sequence[float], threshold: float) -> dict[str, float]:
    """Binary-verdict quality from scores of truly positive and truly negative examples (score >
    threshold = verdict positive): accuracy, balanced accuracy (mean recall of the two classes, so
    always answering the majority verdict gets 0.5), AUROC, and the share judged positive."""
    said_pos = sum(x > threshold for x in positives)
    said_neg = sum(x <= threshold for x in negatives)
    n = len(positives) + len(negatives)
    return {
        "accuracy": (said_pos + said_neg) / n,
        "balanced_accuracy": (said_pos / len(positives) + said_neg / len(negatives)) / 2,
        "auroc": auroc(positives, negatives),
        "said_positive": (said_pos + len(negatives) - said_neg) / n,
    }


class JudgePrompts:
    """The judge scorer's templates and tokenisation, reproduced for training."""

    def __init__(self, tokenizer: Any, config: JudgeConfig) -> None:
        from rewardsvc.scorers.judge import JudgeConfig as ScorerConfig

        defaults = ScorerConfig()
        self.tokenizer = tokenizer
        self.pointwise = config.pointwise_template or defaults.pointwise_template
        self.pairwise = config.pairwise_template or defaults.pairwise_template
        self.reference = config.reference_template or defaults.reference_template
        self.prefill = config.pointwise_prefill
        self.yes_words, self.no_words = defaults.yes_words, defaults.no_words
        self.a_words, self.b_words = defaults.a_words, defaults.b_words

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat_parts(self, user: str, prefill: str = "") -> list[list[int]]:
        return chat_parts(self.tokenizer, user, prefill)

    def context(self, mode: str, prompt: str, responses: Sequence[str], reference: str | None) -> list[int]:
        if mode == "pointwise":
            head, tail = self.pointwise.split("{response}", 1)
            user = head.format(prompt=prompt) + MARK + responses[0] + tail.format(prompt=prompt)
            parts = self.chat_parts(user, self.prefill)
        elif mode == "pairwise":
            head, rest = self.pairwise.split("{a}", 1)
            middle, tail = rest.split("{b}", 1)
            user = (head.format(prompt=prompt) + MARK + responses[0] + middle.format(prompt=prompt) + MARK
                    + responses[1] + tail.format(prompt=prompt))
            parts = self.chat_parts(user)
        else:
            fill = {"prompt": prompt, "reference": (reference or "").strip()}
            head, tail = self.reference.split("{response}", 1)
            user = head.format(**fill) + MARK + responses[0] + tail.format(**fill)
            parts = self.chat_parts(user)
        return [t for p in parts for t in p]

    def first_ids(self, words: Sequence[str]) -> list[int]:
        # The same verdict tokens the judge scorer reads.
        return first_token_ids(self.encode, words)

    def end_ids(self) -> list[int]:
        """End of the assistant turn: the tokenizer's EOS (<|im_end|> for ChatML models)."""
        eos = self.tokenizer.eos_token_id
        return [int(eos)] if eos is not None else []


def encode_judge_examples(prompts: JudgePrompts, ex: JudgeExample, max_length: int, swap_augment: bool,
                          where: str = "row") -> list[EncodedJudge]:
    mode = example_mode(ex)
    verdict = normalise_verdict(mode, ex.verdict, where)
    variants = [(ex.responses, verdict)]
    if mode == "pairwise" and swap_augment:
        variants.append(([ex.responses[1], ex.responses[0]], "B" if verdict == "A" else "A"))
    out = []
    for responses, v in variants:
        context = prompts.context(mode, ex.prompt, responses, ex.reference)
        target_text = v + (("\n" + ex.critique.strip()) if ex.critique.strip() else "")
        target = prompts.encode(target_text) + prompts.end_ids()
        if len(context) + len(target) > max_length:
            continue
        candidates = None
        positive = True
        if mode == "reference":
            candidates = (prompts.first_ids(prompts.yes_words), prompts.first_ids(prompts.no_words))
            positive = v == "Yes"
        elif mode == "pairwise":
            candidates = (prompts.first_ids(prompts.a_words), prompts.first_ids(prompts.b_words))
            positive = v == "A"
        out.append(EncodedJudge(context, target, mode, candidates, positive))
    return out


def learnt_logits(model: Any, batch: dict[str, Any]) -> tuple[Any, Any, dict[int, int]]:
    """(logits, labels, column): float logits only at the positions some row of the batch learns from
    (position p predicts token p + 1), the labels there (-100 where that row learns nothing), and each
    kept position's column. The LM head over a judge prompt's every position was most of a step's
    compute, and its float copy most of the step's memory (batch x length x vocabulary); only the
    target tokens carry loss. Models whose forward takes no `logits_to_keep` get every position."""
    import inspect

    import torch

    labels = batch["labels"][:, 1:]
    kept = (labels != -100).any(0).nonzero().flatten()
    forward = getattr(model, "module", model).forward  # unwrapped from DistributedDataParallel
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "logits_to_keep" in inspect.signature(forward).parameters:
        logits = model(**inputs, logits_to_keep=kept).logits
    else:
        kept = torch.arange(labels.shape[1], device=labels.device)
        logits = model(**inputs).logits[:, :-1]
    return logits.float(), labels[:, kept], {int(p): j for j, p in enumerate(kept.tolist())}


class JudgeTask(Task):
    plot_metrics = ("token_accuracy", "verdict_accuracy", "verdict_auroc")
    headline = "eval_verdict_accuracy"

    config: JudgeConfig

    def load_model(self, path: Path) -> Any:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        return model

    def prepare(self) -> None:
        cfg = self.config
        # Responses to one prompt stay on one side of the split: the held-out prompts are unseen.
        train_rows, eval_rows = self.read_split(key=lambda r: json.dumps(r.get("prompt"), sort_keys=True))
        prompts = JudgePrompts(self.tokenizer, cfg)
        self.train = [e for i, r in enumerate(train_rows)
                      for e in encode_judge_examples(prompts, judge_example(r, f"train[{i}]"), cfg.max_length,
                                                     cfg.swap_augment, f"train[{i}]")]
        self.eval = [e for i, r in enumerate(eval_rows)
                     for e in encode_judge_examples(prompts, judge_example(r, f"eval[{i}]"), cfg.max_length,
                                                    False, f"eval[{i}]")]
        self.modes = Counter(e.mode for e in self.train)

    def length(self, example: EncodedJudge) -> int:
        return len(example.context) + len(example.target)

    def collate(self, examples: Sequence[EncodedJudge]) -> dict[str, Any]:
        import torch

        pad = self.tokenizer.pad_token_id
        longest = max(self.length(e) for e in examples)
        ids = torch.full((len(examples), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, e in enumerate(examples):
            seq = e.context + e.target
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            # Loss on the verdict/critique only: the context is given, not learnt.
            labels[row, len(e.context) : len(seq)] = torch.tensor(e.target)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def tokens(self, batch: dict[str, Any]) -> int:
        return int(batch["attention_mask"].sum())

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        logits, labels, _ = learnt_logits(model, batch)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        with torch.no_grad():
            keep = labels != -100
            acc = (logits.argmax(-1)[keep] == labels[keep]).float().mean()
        return loss, {"token_accuracy": float(acc)}

    def evaluate(self, model: Any, device: str, autocast: Any) -> dict[str, float]:
        """Target-token loss and verdict accuracy read the scorer's way (verdict-token logits)."""
        import contextlib

        import torch
        import torch.nn.functional as F

        examples = sorted(self.eval, key=self.length)
        total_nll, total_tokens, right, counted = 0.0, 0, 0, 0
        # Binary verdicts (Yes/No, A/B): P(positive) per example, by true label, for AUROC and
        # balanced accuracy (a judge that always says "no" scores the majority share on accuracy).
        p_when: dict[bool, list[float]] = {True: [], False: []}
        i = 0
        while i < len(examples):
            j = i + 1
            while j < len(examples) and (j + 1 - i) * self.length(examples[j]) <= self.config.eval_batch_tokens:
                j += 1
            chunk = examples[i:j]
            batch = {k: v.to(device) for k, v in self.collate(chunk).items()}
            with autocast() if autocast else contextlib.nullcontext():
                logits, labels, column = learnt_logits(model, batch)
            nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum")
            total_nll += float(nll)
            total_tokens += int((batch["labels"] != -100).sum())
            for row, e in enumerate(chunk):
                at = logits[row, column[len(e.context) - 1]]  # predicts the first answer token
                if e.candidates is not None:
                    pos, neg = e.candidates
                    p = torch.softmax(at, -1)
                    p_pos, p_neg = float(p[pos].sum()), float(p[neg].sum())
                    right += (p_pos > p_neg) == e.positive
                    p_when[e.positive].append(p_pos / (p_pos + p_neg) if p_pos + p_neg > 0 else 0.5)
                else:
                    right += int(at.argmax()) == e.target[0]
                counted += 1
            i = j
        out = {
            "eval_loss": total_nll / max(1, total_tokens),
            "eval_verdict_accuracy": right / max(1, counted),
            "eval_examples": counted,
        }
        if p_when[True] and p_when[False]:
            binary = verdict_metrics(p_when[True], p_when[False], threshold=0.5)
            out["eval_verdict_balanced_accuracy"] = binary["balanced_accuracy"]
            out["eval_verdict_auroc"] = binary["auroc"]
        return out

    def serving_config(self, model_dir: Path, metrics: dict[str, float]) -> dict[str, Any]:
        cfg = self.config
        mode = self.modes.most_common(1)[0][0] if self.modes else "reference"
        stanza: dict[str, Any] = {"type": "judge", "model": str(model_dir), "mode": mode}
        if mode == "reference":
            # Trained to answer Yes/No, so served that way (the scorer's default reads the answer out).
            stanza["reference_method"] = "yes_no"
        for name in ("pointwise_template", "pairwise_template", "reference_template"):
            if getattr(cfg, name):
                stanza[name] = getattr(cfg, name)
        if cfg.pointwise_prefill != "Rating: ":
            stanza["pointwise_prefill"] = cfg.pointwise_prefill
        return {"scorers": {cfg.scorer_name: stanza}}


def train_judge(config: JudgeConfig) -> dict[str, Any]:
    """Fine-tune a generative judge; returns the run summary (eval_verdict_accuracy, ...)."""
    # The loop imports torch; `rewardsvc train --help` needs only the config above.
    from rewardsvc.trainers.loop import Trainer

    return Trainer(config, JudgeTask(config)).run()

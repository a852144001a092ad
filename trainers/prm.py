"""Process reward model trainer: step labels -> token classification at the step separator (TRL PRMTrainer).

Each step is tokenised on its own, the separator ("\\n" by default) appended, and the step's label
(1 = correct, 0 = wrong) put on the separator's last token, -100 elsewhere; 2 labels. The inputs
come from rewardsvc/scorers/render.py `encode_steps_trl`, the function the `prm` scorer serves
with. A training solution whose steps don't fit max_length keeps its leading steps; held-out
solutions that don't fit are left out of the evaluation (and counted).

Evaluation: step-level F1 (positive = correct step), F1 of the wrong steps, PRMBench's PRMScore
(their mean), and ProcessBench's first-error F1: the prediction is the first step with
p(correct) < threshold (or -1 for none), F1 = 2·acc_err·acc_corr / (acc_err + acc_corr).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rewardsvc.trainers.examples import InconsistentRowError, StepExample, first_error, step_examples
from rewardsvc.dataclass_dict import option
from rewardsvc.trainers.task import Task, TrainConfig
from rewardsvc.trainers.rm import pad_batch

log = logging.getLogger(__name__)

LABEL_NAMES = {0: "wrong", 1: "correct"}


@dataclass
class PRMConfig(TrainConfig):
    max_length: int = option(512, "tokens per solution; steps that don't fit are dropped from the end")
    step_separator: str = option("\n", "appended after each step; the label sits on its last token")
    error_weight: float = option(1.0, "loss weight of wrong-step labels (>1 counters the many correct steps)")
    wrong_after_first_error: bool = option(
        False, "train every step from the first wrong one on as wrong (Math-Shepherd's prefix view: the "
        "solution is broken from there); evaluation always uses the labels as given")
    threshold: float = option(0.5, "a step with p(correct) below this counts as wrong in evaluation")
    eval_batch_tokens: int = option(16384, "token budget of one evaluation forward")
    scorer_name: str = option("prm", "name of the prm scorer in the written rewardsvc.yaml")


@dataclass
class EncodedSteps:
    ids: list[int]
    positions: list[int]
    labels: list[bool]
    dropped_steps: int = 0


def encode_step_example(tokenizer: Any, ex: StepExample, separator: str, max_length: int) -> EncodedSteps | None:
    """The scorer's encoding of `ex`, keeping as many leading steps as fit (the whole prompt if it can).

    None when not even one step fits.
    """
    from rewardsvc.scorers.render import InputTooLongError, encode_steps_trl

    def attempt(n: int) -> Any:
        try:
            return encode_steps_trl(tokenizer, ex.prompt, ex.steps[:n], separator, max_length)
        except InputTooLongError:
            return None

    try:
        full = attempt(len(ex.steps))
    except ValueError as exc:  # e.g. a step that tokenises to nothing: the scorer would refuse it too
        log.debug("skipping a solution: %s", exc)
        return None
    if full is not None and full.truncated_tokens == 0:
        return EncodedSteps(full.ids, full.positions, list(ex.labels))
    # Largest n whose encoding keeps the whole prompt; failing that, the largest that fits at all.
    for need_whole_prompt in (True, False):
        lo, hi, best = 1, len(ex.steps), None
        while lo <= hi:
            mid = (lo + hi) // 2
            enc = attempt(mid)
            if enc is not None and (enc.truncated_tokens == 0 or not need_whole_prompt):
                best, lo = (mid, enc), mid + 1
            else:
                hi = mid - 1
        if best is not None:
            n, enc = best
            return EncodedSteps(enc.ids, enc.positions, list(ex.labels[:n]), len(ex.steps) - n)
    return None


def process_metrics(probs: Sequence[Sequence[float]], labels: Sequence[Sequence[bool]],
                    threshold: float = 0.5) -> dict[str, float]:
    """Step-level F1 / F1_neg / PRMScore and ProcessBench first-error accuracy and F1."""
    tp = fp = fn = tn = 0
    err_hit = err_n = corr_hit = corr_n = 0
    for p, y in zip(probs, labels):
        pred = [x >= threshold for x in p]
        for a, b in zip(pred, y):
            tp += a and b
            fp += a and not b
            fn += (not a) and b
            tn += (not a) and (not b)
        truth, guess = first_error(y), first_error(pred)
        if truth < 0:
            corr_n += 1
            corr_hit += guess < 0
        else:
            err_n += 1
            err_hit += guess == truth

    def f1(t: int, f_p: int, f_n: int) -> float:
        return 2 * t / (2 * t + f_p + f_n) if t else 0.0

    step_pos = [x for p, y in zip(probs, labels) for x, ok in zip(p, y) if ok]
    step_neg = [x for p, y in zip(probs, labels) for x, ok in zip(p, y) if not ok]
    sol_pos = [min(p) for p, y in zip(probs, labels) if p and all(y)]
    sol_neg = [min(p) for p, y in zip(probs, labels) if p and not all(y)]
    f1_pos, f1_neg = f1(tp, fp, fn), f1(tn, fn, fp)
    acc_err = err_hit / err_n if err_n else 0.0
    acc_corr = corr_hit / corr_n if corr_n else 0.0
    return {
        "eval_step_accuracy": (tp + tn) / max(1, tp + tn + fp + fn),
        "eval_step_f1": f1_pos,
        "eval_step_f1_neg": f1_neg,
        "eval_prm_score": 0.5 * (f1_pos + f1_neg),
        "eval_first_error_acc_err": acc_err,
        "eval_first_error_acc_corr": acc_corr,
        "eval_first_error_f1": 2 * acc_err * acc_corr / (acc_err + acc_corr) if acc_err + acc_corr else 0.0,
        # Threshold-free: how well p(correct) ranks correct steps above wrong ones, and all-correct
        # solutions above erroneous ones by their weakest step.
        "eval_step_auroc": auroc(step_pos, step_neg),
        "eval_solution_auroc": auroc(sol_pos, sol_neg),
        "eval_solutions_with_error": err_n,
        "eval_solutions_correct": corr_n,
    }


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting half; 0.5 when a side is empty."""
    import bisect

    if not positives or not negatives:
        return 0.5
    neg = sorted(negatives)
    wins = sum(bisect.bisect_left(neg, x) + 0.5 * (bisect.bisect_right(neg, x) - bisect.bisect_left(neg, x))
               for x in positives)
    return wins / (len(positives) * len(negatives))


def step_probabilities(model: Any, examples: Sequence[EncodedSteps], pad_id: int, device: str,
                       batch_tokens: int, autocast: Any = None) -> list[list[float]]:
    """p(correct) at each example's step positions; length-sorted batches, input order kept."""
    import contextlib

    import torch

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    out: list[list[float]] = [[] for _ in examples]
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j + 1 - i) * len(examples[order[j]].ids) <= batch_tokens:
            j += 1
        ids, mask = pad_batch([examples[k].ids for k in order[i:j]], pad_id)
        with torch.no_grad(), (autocast() if autocast else contextlib.nullcontext()):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        probs = torch.softmax(logits, dim=-1)[..., 1].cpu()
        for row, k in enumerate(order[i:j]):
            out[k] = probs[row, examples[k].positions].tolist()
        i = j
    return out


def load_prm(path: Path) -> Any:
    """A 2-label token-classification model (index 1 = correct step) from a base model or checkpoint."""
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(
        path, num_labels=2, id2label=LABEL_NAMES, label2id={v: k for k, v in LABEL_NAMES.items()}
    )


class PRMTask(Task):
    plot_metrics = ("accuracy", "first_error_f1", "prm_score")
    headline = "eval_first_error_f1"

    config: PRMConfig

    def load_model(self, path: Path) -> Any:
        model = load_prm(path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model.config.pad_token_id = self.tokenizer.pad_token_id
        return model

    def _encode(self, rows: list[dict[str, Any]], name: str, train: bool = False) -> list[EncodedSteps]:
        cfg = self.config
        out = []
        skipped: list[str] = []
        for i, r in enumerate(rows):
            try:
                examples = step_examples(r, f"{name}[{i}]")
            except InconsistentRowError as exc:
                skipped.append(str(exc))
                continue
            for ex in examples:
                if train and cfg.wrong_after_first_error and first_error(ex.labels) >= 0:
                    cut = first_error(ex.labels)
                    ex.labels = [i < cut for i in range(len(ex.labels))]
                enc = encode_step_example(self.tokenizer, ex, cfg.step_separator, cfg.max_length)
                if enc is not None:
                    out.append(enc)
        if skipped:
            log.warning("%s: skipped %d of %d rows with inconsistent labels, e.g. %s", name, len(skipped), len(rows),
                        skipped[0])
        return out

    def prepare(self) -> None:
        # Split by problem so a solution's original and modified versions stay on one side.
        def group(r: dict[str, Any]) -> str:
            return str(r.get("idx") or r.get("original_question") or r.get("prompt") or id(r))

        train_rows, eval_rows = self.read_split(key=group)
        self.train = self._encode(train_rows, "train", train=True)
        # First-error evaluation is about whole solutions: those that don't fit are left out (counted).
        encoded = self._encode(eval_rows, "eval")
        self.eval = [e for e in encoded if not e.dropped_steps]
        self.eval_too_long = len(encoded) - len(self.eval)

    def length(self, example: EncodedSteps) -> int:
        return len(example.ids)

    def collate(self, examples: Sequence[EncodedSteps]) -> dict[str, Any]:
        import torch

        ids, mask = pad_batch([e.ids for e in examples], self.tokenizer.pad_token_id)
        labels = torch.full_like(ids, -100)
        for row, e in enumerate(examples):
            labels[row, e.positions] = torch.tensor([1 if y else 0 for y in e.labels], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"]
        weight = None
        if self.config.error_weight != 1.0:
            weight = torch.tensor([self.config.error_weight, 1.0], device=logits.device)
        loss = F.cross_entropy(logits.view(-1, 2), labels.view(-1), weight=weight, ignore_index=-100)
        with torch.no_grad():
            keep = labels != -100
            acc = (logits.argmax(-1)[keep] == labels[keep]).float().mean()
        return loss, {"accuracy": float(acc)}

    def evaluate(self, model: Any, device: str, autocast: Any) -> dict[str, float]:
        import math

        cfg = self.config
        probs = step_probabilities(model, self.eval, self.tokenizer.pad_token_id, device, cfg.eval_batch_tokens,
                                   autocast)
        labels = [e.labels for e in self.eval]
        metrics = process_metrics(probs, labels, cfg.threshold)
        nll = [-math.log(max(p if y else 1 - p, 1e-12)) for ps, ys in zip(probs, labels) for p, y in zip(ps, ys)]
        metrics["eval_loss"] = sum(nll) / max(1, len(nll))
        metrics["eval_solutions_too_long"] = self.eval_too_long
        return metrics

    def serving_config(self, model_dir: Path, metrics: dict[str, float]) -> dict[str, Any]:
        cfg = self.config
        return {"scorers": {cfg.scorer_name: {
            "type": "prm", "model": str(model_dir), "format": "token_classification",
            "step_separator": cfg.step_separator, "max_length": cfg.max_length,
        }}}


def train_prm(config: PRMConfig) -> dict[str, Any]:
    """Train a token-classification PRM; returns the run summary (eval_first_error_f1, ...)."""
    # The loop imports torch; `rewardsvc train --help` needs only the config above.
    from rewardsvc.trainers.loop import Trainer

    return Trainer(config, PRMTask(config)).run()

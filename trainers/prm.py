"""Process reward model trainer: step labels -> token classification at the step separator (TRL PRMTrainer).

Each step is tokenised on its own, the separator ("\\n" by default) appended, and the step's label
(1 = correct, 0 = wrong) put on the separator's last token, -100 elsewhere; 2 labels. The inputs
come from rewardsvc/scorers/step_windows.py `encode_steps_windows`, the function the `prm` scorer
serves with: a solution whose steps don't fit max_length is cut into step-preserving windows (the
prompt's tail, the steps just before, the steps scored), for training and held-out evaluation alike,
so every step of every solution is trained and evaluated as the server will read it.

`holdout_categories` keeps whole PRMBench error categories out of training and reports the metrics
on them separately (eval_ood_*): how the model does on kinds of error it never saw.

`outcome_file` adds training solutions labelled only by their final answer (e.g. sampled model
solutions graded against the reference): a right answer labels every step correct, a wrong one
labels its last step wrong and leaves the others unlabelled (no loss): real model errors, where
the step-labelled data has edited ones.

Evaluation: step-level F1 (positive = correct step), F1 of the wrong steps, PRMBench's PRMScore
(their mean), and ProcessBench's first-error F1: the prediction is the first step with
p(correct) < threshold (or -1 for none), F1 = 2·acc_err·acc_corr / (acc_err + acc_corr).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardsvc.dataclass_dict import option
from rewardsvc.trainers import value_heads
from rewardsvc.trainers.examples import InconsistentRowError, StepExample, first_error, read_files, step_examples
from rewardsvc.trainers.rm import pad_batch
from rewardsvc.trainers.task import Task, TrainConfig

log = logging.getLogger(__name__)

LABEL_NAMES = {0: "wrong", 1: "correct"}


@dataclass
class PRMConfig(TrainConfig):
    max_length: int = option(512, "tokens per input; longer solutions are cut into step-preserving windows")
    step_separator: str = option("\n", "appended after each step; the label sits on its last token")
    error_weight: float = option(1.0, "loss weight of wrong-step labels (>1 counters the many correct steps)")
    wrong_after_first_error: bool = option(
        False, "train every step from the first wrong one on as wrong (Math-Shepherd's prefix view: the "
        "solution is broken from there); evaluation always uses the labels as given")
    threshold: float = option(0.5, "a step with p(correct) below this counts as wrong in evaluation")
    eval_batch_tokens: int = option(16384, "token budget of one evaluation forward")
    scorer_name: str = option("prm", "name of the prm scorer in the written rewardsvc.yaml")
    loss: str = option("ce", "ce: 2 labels, softmax (TRL); bce: 1 logit, sigmoid; mse: squared error of that "
                             "sigmoid; hl_gauss: value bins over [0, 1], Gaussian-smoothed targets (Stop Regressing)")
    hl_gauss_bins: int = option(21, "hl_gauss: bins over [0, 1] (sigma = 0.75 bin widths)")
    holdout_categories: str = option(
        "", "comma-separated row `classification`s (PRMBench error categories) never trained on; their "
        "rows are evaluated on their own as eval_ood_*")
    max_holdout_examples: int = option(0, "evaluate a seeded sample of this many held-out-category rows (0 = all)")
    outcome_file: str = option(
        "", "extra training rows graded by final answer: {prompt, response, verdict: yes|no} (judge rows) or "
        "{prompt, response, label: bool}; steps = the response split on step_separator")


@dataclass
class EncodedSteps:
    """One model input (a whole solution or one window of it) with the labels of the steps it reads."""

    ids: list[int]
    positions: list[int]
    labels: list[bool | None]  # None: no label (no loss), as an outcome-graded solution's earlier steps
    solution: int = 0  # which solution of its set the input belongs to
    steps: list[int] = field(default_factory=list)  # the indices of its steps in that solution


def encode_step_windows(tokenizer: Any, ex: StepExample, separator: str, max_length: int,
                        solution: int = 0) -> list[EncodedSteps]:
    """The scorer's inputs for `ex`: one, or its windows when it is too long; [] if it can't be encoded."""
    from rewardsvc.scorers.step_windows import encode_steps_windows

    try:
        windows = encode_steps_windows(tokenizer, ex.prompt, ex.steps, separator, max_length)
    except ValueError as exc:  # e.g. a step that tokenises to nothing: the scorer would refuse it too
        log.debug("skipping a solution: %s", exc)
        return []
    return [EncodedSteps(w.ids, w.positions, [ex.labels[k] for k in w.steps or []], solution, list(w.steps or []))
            for w in windows]


def solution_probabilities(window_probs: Sequence[Sequence[float]], inputs: Sequence[EncodedSteps],
                           n_solutions: int) -> tuple[list[list[float]], list[list[bool]]]:
    """Per solution, its steps' probabilities and labels in step order, put together from its inputs."""
    probs: list[dict[int, float]] = [{} for _ in range(n_solutions)]
    labels: list[dict[int, bool]] = [{} for _ in range(n_solutions)]
    for p, e in zip(window_probs, inputs):
        for k, x, y in zip(e.steps, p, e.labels):
            assert y is not None, "evaluation inputs come from step_examples, which label every step"
            probs[e.solution][k] = x
            labels[e.solution][k] = y
    return ([[d[k] for k in sorted(d)] for d in probs], [[d[k] for k in sorted(d)] for d in labels])


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
                       batch_tokens: int, autocast: Any = None, head: str = "ce") -> list[list[float]]:
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
        probs = value_heads.step_value(logits, head, getattr(model.config, "hl_gauss", None)).cpu()
        for row, k in enumerate(order[i:j]):
            out[k] = probs[row, examples[k].positions].tolist()
        i = j
    return out


def load_prm(path: Path, head: str = "ce", bins: int = 21) -> Any:
    """A token-classification model from a base model or checkpoint: 2 labels (index 1 = correct
    step) for `ce`, 1 logit for `bce`/`mse`, `bins` value bins for `hl_gauss`."""
    from transformers import AutoModelForTokenClassification

    if head == "ce":
        return AutoModelForTokenClassification.from_pretrained(
            path, num_labels=2, id2label=LABEL_NAMES, label2id={v: k for k, v in LABEL_NAMES.items()}
        )
    return value_heads.load_value_head(AutoModelForTokenClassification, path, head, bins)


class PRMTask(Task):
    plot_metrics = ("accuracy", "first_error_f1", "prm_score")
    headline = "eval_first_error_f1"

    config: PRMConfig

    def load_model(self, path: Path) -> Any:
        model = load_prm(path, self.config.loss, self.config.hl_gauss_bins)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model.config.pad_token_id = self.tokenizer.pad_token_id
        return model

    def _encode(self, rows: list[dict[str, Any]], name: str, train: bool = False) -> tuple[list[EncodedSteps], int]:
        """(inputs, number of solutions) of `rows`."""
        cfg = self.config
        out: list[EncodedSteps] = []
        solutions = 0
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
                inputs = encode_step_windows(self.tokenizer, ex, cfg.step_separator, cfg.max_length, solutions)
                if inputs:
                    out += inputs
                    solutions += 1
        if skipped:
            log.warning("%s: skipped %d of %d rows with inconsistent labels, e.g. %s", name, len(skipped), len(rows),
                        skipped[0])
        return out, solutions

    def prepare(self) -> None:
        # Split by problem so a solution's original and modified versions stay on one side.
        def group(r: dict[str, Any]) -> str:
            return str(r.get("idx") or r.get("original_question") or r.get("prompt") or id(r))

        held = {c.strip() for c in self.config.holdout_categories.split(",") if c.strip()}
        train_rows, eval_rows = self.read_split(key=group)
        if held:
            # Every row of a held-out category (the split's train side too) is evaluated, never trained.
            ood_rows = [r for r in train_rows + eval_rows if r.get("classification") in held]
            if not ood_rows:
                raise ValueError(f"holdout_categories {sorted(held)}: no rows have those classifications")
            cap = self.config.max_holdout_examples
            if 0 < cap < len(ood_rows):
                import random

                ood_rows = random.Random(self.config.split_seed).sample(ood_rows, cap)
            train_rows = [r for r in train_rows if r.get("classification") not in held]
            eval_rows = [r for r in eval_rows if r.get("classification") not in held]
            self.ood, self.ood_solutions = self._encode(ood_rows, "ood")
        self.train, _ = self._encode(train_rows, "train", train=True)
        if self.config.outcome_file:
            self.train += self._encode_outcomes(read_files(self.config.outcome_file))
        self.eval, self.eval_solutions = self._encode(eval_rows, "eval")

    def _encode_outcomes(self, rows: list[dict[str, Any]]) -> list[EncodedSteps]:
        import re

        cfg = self.config
        out: list[EncodedSteps] = []
        for i, r in enumerate(rows):
            right = r["verdict"] == "yes" if "verdict" in r else bool(r["label"])
            # GSM8K's calculator annotations (<<2*3=6>>) are not in what a policy writes.
            text = re.sub(r"<<[^>]*>>", "", str(r["response"]))
            steps = [s.strip() for s in text.split(cfg.step_separator) if s.strip()]
            if not steps:
                continue
            labels: list[bool | None] = [True] * len(steps) if right else [None] * (len(steps) - 1) + [False]
            ex = StepExample(str(r.get("prompt", "")), steps, labels)
            out += encode_step_windows(self.tokenizer, ex, cfg.step_separator, cfg.max_length, i)
        log.info("outcome_file: %d inputs from %d graded solutions", len(out), len(rows))
        return out

    def length(self, example: EncodedSteps) -> int:
        return len(example.ids)

    def collate(self, examples: Sequence[EncodedSteps]) -> dict[str, Any]:
        import torch

        ids, mask = pad_batch([e.ids for e in examples], self.tokenizer.pad_token_id)
        labels = torch.full_like(ids, -100)
        for row, e in enumerate(examples):
            labels[row, e.positions] = torch.tensor([-100 if y is None else int(y) for y in e.labels],
                                                    dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"]
        if self.config.loss != "ce":
            return value_heads.step_loss(logits, labels, self.config.loss, self.config.error_weight,
                                         getattr(getattr(model, "module", model).config, "hl_gauss", None))
        weight = None
        if self.config.error_weight != 1.0:
            weight = torch.tensor([self.config.error_weight, 1.0], device=logits.device)
        loss = F.cross_entropy(logits.view(-1, 2), labels.view(-1), weight=weight, ignore_index=-100)
        with torch.no_grad():
            keep = labels != -100
            acc = (logits.argmax(-1)[keep] == labels[keep]).float().mean()
        return loss, {"accuracy": float(acc)}

    def evaluate(self, model: Any, device: str, autocast: Any) -> dict[str, float]:
        metrics = self._metrics(model, device, autocast, self.eval, self.eval_solutions)
        if getattr(self, "ood", None):
            ood = self._metrics(model, device, autocast, self.ood, self.ood_solutions)
            metrics.update({"eval_ood_" + k.removeprefix("eval_"): v for k, v in ood.items()})
        return metrics

    def _metrics(self, model: Any, device: str, autocast: Any, inputs: list[EncodedSteps],
                 n_solutions: int) -> dict[str, float]:
        import math
        from collections import Counter

        cfg = self.config
        window_probs = step_probabilities(model, inputs, self.tokenizer.pad_token_id, device, cfg.eval_batch_tokens,
                                          autocast, cfg.loss)
        probs, labels = solution_probabilities(window_probs, inputs, n_solutions)
        metrics = process_metrics(probs, labels, cfg.threshold)
        nll = [-math.log(max(p if y else 1 - p, 1e-12)) for ps, ys in zip(probs, labels) for p, y in zip(ps, ys)]
        metrics["eval_loss"] = sum(nll) / max(1, len(nll))
        metrics["eval_solutions"] = n_solutions
        per_solution = Counter(e.solution for e in inputs)
        metrics["eval_windowed_solutions"] = sum(1 for n in per_solution.values() if n > 1)
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

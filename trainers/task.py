"""What a trainer supplies to the shared loop: its config fields and a `Task`.

Kept free of torch so `rewardsvc train rm --help` (which only needs the config dataclass) stays quick;
the loop itself is `loop.py`.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardsvc.dataclass_dict import option
from rewardsvc.trainers.examples import read_files, split_rows


@dataclass
class TrainConfig:
    """Fields every trainer shares; each trainer's config adds its own."""

    model: str = option("bundled:all-minilm-l6-v2", "base model: local HF dir, .gguf file, bundled:NAME or cache:NAME")
    output_dir: str = option("", "where the checkpoint, metrics and rewardsvc.yaml go (required)")
    train_file: str = option("", "JSONL(.gz) training data; comma-separated files and globs allowed (required)")
    eval_file: str = option("", "held-out JSONL; empty = hold out eval_fraction of train_file with split_seed")
    eval_fraction: float = option(0.1, "share of train_file held out when eval_file is empty")
    split_seed: int = option(0, "seed of the train/held-out split")
    max_train_examples: int = option(0, "train on a seeded sample of this many rows (0 = all)")
    max_eval_examples: int = option(0, "evaluate on the first this many held-out rows (0 = all)")
    max_length: int = option(512, "tokens per sequence; longer inputs lose the start of the prompt")
    batch_size: int = option(8, "examples per micro-batch per device")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimiser step")
    learning_rate: float = option(5e-5, "peak AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay (not applied to biases and norms)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_epsilon: float = option(1e-8, "AdamW epsilon")
    warmup_ratio: float = option(0.05, "share of the steps with linear warmup")
    lr_scheduler: str = option("cosine", "cosine, linear or constant (after warmup)")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 = off)")
    num_epochs: float = option(1.0, "passes over the training data (fractions allowed)")
    max_steps: int = option(0, "optimiser steps; overrides num_epochs when > 0")
    group_by_length: bool = option(True, "batch examples of similar length together (less padding)")
    eval_steps: int = option(0, "evaluate every N steps (0 = only at the end)")
    eval_on_start: bool = option(False, "also evaluate before the first step (a baseline for the curves)")
    save_steps: int = option(0, "save a resumable checkpoint every N steps and at the last step (0 = only on Ctrl-C)")
    save_total_limit: int = option(2, "keep this many checkpoints")
    logging_steps: int = option(1, "write a metrics line every N steps")
    seed: int = option(0, "seed of the head initialisation and the data order")
    device: str = option("auto", "auto (cuda if visible, else cpu), cpu, cuda")
    mixed_precision: str = option("auto", "auto (bf16 autocast on GPU, fp32 on CPU), bf16, no")
    disable_dropout: bool = option(True, "turn dropout off (as TRL does for reward models)")
    resume_from: str = option("", "continue a run: 'latest' (newest checkpoint in output_dir) or a checkpoint dir")
    overwrite_output_dir: bool = option(False, "start fresh even if output_dir holds checkpoints of an earlier run")
    progress: bool = option(True, "show a tqdm progress bar")
    plot: bool = option(True, "write metrics.png (loss and accuracy) at the end")


class Task(abc.ABC):
    """What one kind of trainer adds to the loop."""

    #: metric keys plotted on the right panel (eval metrics are prefixed with eval_)
    plot_metrics: tuple[str, ...] = ("accuracy",)
    #: the eval metric reported as the run's headline number
    headline: str = "eval_loss"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.tokenizer: Any = None
        self.train: list[Any] = []
        self.eval: list[Any] = []

    def read_split(self, key: Any = None) -> tuple[list[Any], list[Any]]:
        """(train rows, held-out rows): eval_file, else the fixed-seed split of train_file (groups
        `key(row)` kept on one side); max_train_examples is a seeded sample, max_eval_examples a head."""
        cfg = self.config
        rows = read_files(cfg.train_file)
        if cfg.eval_file:
            train_rows, eval_rows = rows, read_files(cfg.eval_file)
        else:
            train_rows, eval_rows = split_rows(rows, cfg.eval_fraction, cfg.split_seed, key=key)
        if 0 < cfg.max_train_examples < len(train_rows):
            keep = sorted(random.Random(cfg.split_seed).sample(range(len(train_rows)), cfg.max_train_examples))
            train_rows = [train_rows[i] for i in keep]
        if cfg.max_eval_examples:
            eval_rows = eval_rows[: cfg.max_eval_examples]
        return train_rows, eval_rows

    @abc.abstractmethod
    def load_model(self, path: Path) -> Any:
        """The model to train, from a base model or a checkpoint directory."""

    @abc.abstractmethod
    def prepare(self) -> None:
        """Read the data and fill self.train / self.eval with encoded examples (needs self.tokenizer)."""

    @abc.abstractmethod
    def length(self, example: Any) -> int:
        """Padded length an example needs (for length grouping)."""

    @abc.abstractmethod
    def collate(self, examples: Sequence[Any]) -> dict[str, Any]:
        """A batch of tensors (on CPU)."""

    @abc.abstractmethod
    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        """(loss tensor, per-batch metrics such as accuracy)."""

    @abc.abstractmethod
    def evaluate(self, model: Any, device: str, autocast: Any) -> dict[str, float]:
        """Held-out metrics, keys prefixed with eval_."""

    @abc.abstractmethod
    def serving_config(self, model_dir: Path, metrics: dict[str, float]) -> dict[str, Any]:
        """The rewardsvc config that serves the trained checkpoint in `model_dir`."""

    def samples(self, batch: dict[str, Any]) -> int:
        """Training examples in a batch (a preference pair counts once)."""
        return int(batch["input_ids"].shape[0])

    def tokens(self, batch: dict[str, Any]) -> int:
        return int(batch["attention_mask"].sum())

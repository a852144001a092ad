"""The training loop every trainer shares: batches, optimiser, checkpoints, metrics, DDP, Ctrl-C.

A trainer supplies a `Task` (its examples, collate, loss, evaluation and serving stanza); this
module runs it: length-grouped batches, gradient accumulation, AdamW with warmup and cosine decay,
bf16 autocast on GPU, periodic evaluation, resumable checkpoints (a resumed run continues from its
step with the same data order), Ctrl-C -> checkpoint, tqdm progress, a JSONL metrics log and a PNG
plot. Under `torchrun` / `accelerate launch` (WORLD_SIZE > 1) it runs DistributedDataParallel:
each rank takes every WORLD_SIZE-th batch; rank 0 evaluates, logs and saves.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from rewardsvc.dataclass_dict import option

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"
SERVING_CONFIG = "rewardsvc.yaml"
SUMMARY_FILE = "results.json"


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
        from rewardsvc.trainers.examples import read_files, split_rows

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


# ---- batching and schedule ---------------------------------------------------------------------


def make_batches(lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool) -> list[list[int]]:
    """Index batches for one epoch, a pure function of (lengths, seed).

    Length grouping as in HF's LengthGroupedSampler: shuffle, cut into mega-batches of 50 batches,
    sort each by length, cut into batches, shuffle the batch order (longest batch first so an
    out-of-memory shows at step 1).
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return _full_batches([order[i : i + batch_size] for i in range(0, len(order), batch_size)], batch_size)
    mega = batch_size * 50
    batches: list[list[int]] = []
    for m in range(0, len(order), mega):
        chunk = sorted(order[m : m + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    batches = _full_batches(batches, batch_size)
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
    first = batches.pop(longest)
    rng.shuffle(batches)
    return [first] + batches


def _full_batches(batches: list[list[int]], batch_size: int) -> list[list[int]]:
    """Drop the one short batch (the epoch's remainder) unless it is all there is: a step on a
    handful of examples would be a noisy step at full learning rate."""
    full = [b for b in batches if len(b) == batch_size]
    return full or batches


def lr_lambda(kind: str, warmup: int, total: int) -> Any:
    if kind not in ("cosine", "linear", "constant"):
        raise ValueError(f"lr_scheduler {kind!r}: use cosine, linear or constant")

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if kind == "linear":
            return 1.0 - progress
        return 1.0

    return f


# ---- helpers -----------------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_cfg: str) -> tuple[Dist, str]:
    """(ranks, device). torchrun / accelerate launch set WORLD_SIZE, RANK and LOCAL_RANK."""
    import torch

    from rewardsvc.backends.device import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_cfg)
    if world <= 1:
        return Dist(), device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank), device


def resolve_base_model(model: str) -> Path:
    """A local HF directory for `model`; a GGUF file is converted once into the cache."""
    from rewardsvc.backends.gguf import model_dir

    return model_dir(model)


def make_adamw(groups: list[dict[str, Any]], **kwargs: Any) -> Any:
    """AdamW, fused where torch has it: one kernel over all parameters instead of a loop of small
    ops; on CPU the step over MiniLM's 23M parameters costs about a fifth of the foreach version."""
    import torch

    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(groups, **kwargs)


def disable_dropout(model: Any) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def latest_checkpoint(output_dir: Path) -> Path | None:
    root = output_dir / CHECKPOINTS
    done = [p for p in root.glob("step-*") if (p / STATE_FILE).exists()] if root.exists() else []
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


class _Interrupt:
    """Ctrl-C sets a flag the loop checks after each optimiser step; a second Ctrl-C kills."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "_Interrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: saving a checkpoint after this step (Ctrl-C again to abort without saving)")

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---- the loop ----------------------------------------------------------------------------------


@dataclass
class RunState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # next micro-batch of this epoch (per rank)
    samples: int = 0  # training examples seen, all ranks
    train_time_s: float = 0.0  # time in forward/backward/step, without evaluation and saving


class Trainer:
    """Runs a Task to completion (or Ctrl-C) and returns a summary dict."""

    def __init__(self, config: TrainConfig, task: Task) -> None:
        self.config = config
        self.task = task
        if not config.output_dir:
            raise ValueError("output_dir is required (where the trained checkpoint goes)")
        if not config.train_file:
            raise ValueError("train_file is required (JSONL training data)")
        if config.batch_size < 1 or config.gradient_accumulation_steps < 1:
            raise ValueError("batch_size and gradient_accumulation_steps must be >= 1")
        if config.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(f"mixed_precision {config.mixed_precision!r}: use auto, bf16 or no")
        self.out = Path(config.output_dir).expanduser().resolve()

    # -- setup

    def _start_dir(self) -> Path | None:
        cfg = self.config
        if cfg.resume_from:
            ckpt = latest_checkpoint(self.out) if cfg.resume_from == "latest" else Path(cfg.resume_from)
            if ckpt is None or not (ckpt / STATE_FILE).exists():
                raise FileNotFoundError(
                    f"resume_from={cfg.resume_from!r}: no checkpoint found"
                    + (f" under {self.out / CHECKPOINTS}" if cfg.resume_from == "latest" else "")
                )
            return ckpt
        if latest_checkpoint(self.out) is not None and not cfg.overwrite_output_dir:
            raise FileExistsError(
                f"{self.out} holds checkpoints of an earlier run: continue it with --resume-from latest, "
                "or start over with --overwrite-output-dir (or pick another output_dir)"
            )
        return None

    def run(self) -> dict[str, Any]:
        import torch
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        cfg, task = self.config, self.task
        dist_info, device = setup_distributed(cfg.device)
        self.dist, self.device = dist_info, device
        resume = self._start_dir()
        if dist_info.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if resume is None and cfg.overwrite_output_dir:
                shutil.rmtree(self.out / CHECKPOINTS, ignore_errors=True)
        hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected here
        seed_everything(cfg.seed)

        base = resolve_base_model(cfg.model)
        task.tokenizer = AutoTokenizer.from_pretrained(resume or base)
        task.prepare()
        if not task.train:
            raise ValueError(f"no training examples in {cfg.train_file}")
        model = task.load_model(resume or base)
        if cfg.disable_dropout:
            disable_dropout(model)
        model.to(device)
        model.train()
        use_bf16 = cfg.mixed_precision == "bf16" or (cfg.mixed_precision == "auto" and device.startswith("cuda"))
        device_type = "cuda" if device.startswith("cuda") else "cpu"
        self.autocast = lambda: torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16)

        wrapped = model
        if dist_info.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            wrapped = DistributedDataParallel(
                model, device_ids=[dist_info.local_rank] if device.startswith("cuda") else None
            )

        lengths = [task.length(e) for e in task.train]
        per_epoch = len(make_batches(lengths, cfg.batch_size, 0, False)) // dist_info.world
        steps_per_epoch = per_epoch // cfg.gradient_accumulation_steps
        if steps_per_epoch < 1:
            raise ValueError(
                f"{len(task.train)} training examples make fewer micro-batches than one optimiser step needs "
                f"(batch_size {cfg.batch_size} x gradient_accumulation_steps {cfg.gradient_accumulation_steps}"
                f" x {dist_info.world} ranks): lower them or add data"
            )
        total = cfg.max_steps or max(1, math.ceil(cfg.num_epochs * steps_per_epoch))
        warmup = math.ceil(cfg.warmup_ratio * total)

        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 else decay).append(p)
        optimizer = make_adamw(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.lr_scheduler, warmup, total))

        state = RunState()
        if resume is not None:
            state = self._load_state(resume, optimizer, scheduler)
            log.info("resuming from %s at step %d", resume, state.step)
        self._open_metrics(state.step, fresh=resume is None)
        if dist_info.main:
            (self.out / "train_config.yaml").write_text(dump_yaml(config_dict(cfg)))
            log.info(
                "training %s: %d examples (%d held out), %d steps (%d per epoch), batch %d x %d accum x %d ranks on %s%s",
                type(task).__name__, len(task.train), len(task.eval), total, steps_per_epoch, cfg.batch_size,
                cfg.gradient_accumulation_steps, dist_info.world, device, " with bf16 autocast" if use_bf16 else "",
            )

        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=state.step, disable=not (cfg.progress and dist_info.main),
                   desc=type(task).__name__, unit="step", dynamic_ncols=True)
        interrupted = False
        last_eval: dict[str, float] = {}
        window: dict[str, list[float]] = {}
        window_samples, window_tokens, window_time = 0, 0, 0.0
        accum = cfg.gradient_accumulation_steps
        if cfg.eval_on_start and task.eval and state.step == 0:
            self._evaluate(model, 0)
        loop_wall, loop_cpu = time.perf_counter(), time.process_time()
        eval_wall = eval_cpu = 0.0
        with _Interrupt() as stop:
            while state.step < total and not interrupted:
                batches = make_batches(lengths, cfg.batch_size, cfg.seed * 1000 + state.epoch, cfg.group_by_length)
                usable = (len(batches) // dist_info.world // accum) * accum * dist_info.world
                mine = batches[:usable][dist_info.rank :: dist_info.world]
                while state.batch_in_epoch + accum <= len(mine) and state.step < total:
                    t0 = time.perf_counter()
                    step_metrics: dict[str, float] = {}
                    step_samples = 0
                    for k in range(accum):
                        batch = task.collate([task.train[i] for i in mine[state.batch_in_epoch + k]])
                        step_samples += task.samples(batch) * dist_info.world
                        window_tokens += task.tokens(batch) * dist_info.world
                        batch = {n: v.to(device) if hasattr(v, "to") else v for n, v in batch.items()}
                        sync = k == accum - 1 or dist_info.world == 1
                        ctx = wrapped.no_sync() if not sync else _null()
                        with ctx:
                            with self.autocast():
                                loss, metrics = task.loss(wrapped, batch)
                            (loss / accum).backward()
                        for n, v in {"loss": float(loss.detach()), **metrics}.items():
                            step_metrics[n] = step_metrics.get(n, 0.0) + v / accum
                    grad_norm = 0.0
                    if cfg.max_grad_norm > 0:
                        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
                    lr = scheduler.get_last_lr()[0]  # the rate this step used
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    state.step += 1
                    state.batch_in_epoch += accum
                    dt = time.perf_counter() - t0
                    state.train_time_s += dt
                    window_time += dt
                    state.samples += step_samples
                    window_samples += step_samples
                    for n, v in step_metrics.items():
                        window.setdefault(n, []).append(v)
                    bar.update(1)
                    bar.set_postfix({n: f"{v:.3f}" for n, v in step_metrics.items()}, refresh=False)
                    if state.step % cfg.logging_steps == 0 or state.step == total:
                        self._write_metrics({
                            "step": state.step, "epoch": round(state.epoch + state.batch_in_epoch / max(1, len(mine)), 4),
                            **{n: sum(v) / len(v) for n, v in window.items()},
                            "lr": lr, "grad_norm": grad_norm,
                            "samples_per_s": window_samples / max(window_time, 1e-9),
                            "tokens_per_s": window_tokens / max(window_time, 1e-9),
                        })
                        window, window_samples, window_tokens, window_time = {}, 0, 0, 0.0
                    if cfg.eval_steps and state.step % cfg.eval_steps == 0 and state.step < total and task.eval:
                        w, c = time.perf_counter(), time.process_time()
                        last_eval = self._evaluate(model, state.step)
                        eval_wall += time.perf_counter() - w
                        eval_cpu += time.process_time() - c
                    if cfg.save_steps and state.step % cfg.save_steps == 0:
                        self._save_checkpoint(model, optimizer, scheduler, state)
                    if self._should_stop(stop.requested):
                        interrupted = True
                        break
                else:
                    if state.step < total:
                        state.epoch += 1
                        state.batch_in_epoch = 0
            bar.close()
            # The whole loop without the evaluations in it (what a benchmark compares).
            loop_wall = time.perf_counter() - loop_wall - eval_wall
            loop_cpu = time.process_time() - loop_cpu - eval_cpu
            summary: dict[str, Any] = {
                "output_dir": str(self.out), "steps": state.step, "total_steps": total, "epoch": state.epoch,
                "train_examples": len(task.train), "eval_examples": len(task.eval),
                "train_samples": state.samples, "train_time_s": round(state.train_time_s, 3),
                "samples_per_s": state.samples / max(state.train_time_s, 1e-9), "device": device,
                "loop_time_s": round(loop_wall, 3), "loop_cpu_s": round(loop_cpu, 3),
                "world_size": dist_info.world, "interrupted": interrupted,
            }
            if interrupted:
                ckpt = self._save_checkpoint(model, optimizer, scheduler, state)
                summary["checkpoint"] = str(ckpt)
                if dist_info.main:
                    log.warning("interrupted at step %d: checkpoint %s; continue with --resume-from latest",
                                state.step, ckpt)
            else:
                if task.eval:
                    last_eval = self._evaluate(model, state.step)
                summary.update(last_eval)
                if cfg.save_steps and state.step % cfg.save_steps:
                    # The last step, so a later run with a larger max_steps can continue from it.
                    self._save_checkpoint(model, optimizer, scheduler, state)
                if dist_info.main:
                    self._save_final(model, last_eval, summary)
        if dist_info.main and cfg.plot:
            self._plot()
        if dist_info.world > 1:
            import torch.distributed as dist

            dist.barrier()
        return summary

    # -- pieces

    def _should_stop(self, requested: bool) -> bool:
        if self.dist.world == 1:
            return requested
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1.0 if requested else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        return bool(flag.item() > 0)

    def _evaluate(self, model: Any, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.dist.main:
            model.eval()
            t0 = time.perf_counter()
            import torch

            with torch.no_grad():
                metrics = self.task.evaluate(model, self.device, self.autocast)
            model.train()
            metrics["eval_time_s"] = round(time.perf_counter() - t0, 3)
            self._write_metrics({"step": step, **metrics})
            log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        if self.dist.world > 1:
            import torch.distributed as dist

            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        return metrics

    def _open_metrics(self, step: int, fresh: bool) -> None:
        if not self.dist.main:
            return
        path = self.out / METRICS_FILE
        if fresh or not path.exists():
            path.write_text("")
            return
        # Lines written after the checkpoint we resume from describe steps that will be redone.
        kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        path.write_text("".join(ln + "\n" for ln in kept))

    def _write_metrics(self, row: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _save_checkpoint(self, model: Any, optimizer: Any, scheduler: Any, state: RunState) -> Path:
        import torch

        final = self.out / CHECKPOINTS / f"step-{state.step:06d}"
        if self.dist.main:
            tmp = final.with_name(final.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            model.save_pretrained(tmp)
            self.task.tokenizer.save_pretrained(tmp)
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save(_rng_state(), tmp / "rng.pt")
            (tmp / STATE_FILE).write_text(json.dumps(dataclasses.asdict(state), indent=1))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            kept = sorted((p for p in final.parent.glob("step-*") if not p.name.endswith(".tmp")),
                          key=lambda p: int(p.name.split("-")[1]))
            for old in kept[: max(0, len(kept) - max(1, self.config.save_total_limit))]:
                shutil.rmtree(old, ignore_errors=True)
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.barrier()
        return final

    def _load_state(self, ckpt: Path, optimizer: Any, scheduler: Any) -> RunState:
        import torch

        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=self.device, weights_only=False))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
        _set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
        return RunState(**json.loads((ckpt / STATE_FILE).read_text()))

    def _save_final(self, model: Any, metrics: dict[str, float], summary: dict[str, Any]) -> None:
        model.save_pretrained(self.out)
        self.task.tokenizer.save_pretrained(self.out)
        serving = self.task.serving_config(self.out, metrics)
        try:
            from rewardsvc.config import parse_config

            parse_config(serving, str(self.out / SERVING_CONFIG))
        except ImportError as exc:  # a scorer module not installed here: still write the file
            log.warning("could not validate %s (%s)", SERVING_CONFIG, exc)
        (self.out / SERVING_CONFIG).write_text(
            "# Serve this checkpoint: rewardsvc serve --config " + str(self.out / SERVING_CONFIG) + "\n"
            + dump_yaml(serving)
        )
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")

    def _plot(self) -> None:
        path = self.out / METRICS_FILE
        if not path.exists():
            return
        rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        train = [r for r in rows if "loss" in r]
        evals = [r for r in rows if any(k.startswith("eval_") for k in r)]
        if not train:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        steps = [r["step"] for r in train]
        ax1.plot(steps, [r["loss"] for r in train], alpha=0.3, color="C0", label="train loss")
        ax1.plot(steps, _ema([r["loss"] for r in train]), color="C0", label="train loss (EMA)")
        if any("eval_loss" in r for r in evals):
            e = [r for r in evals if "eval_loss" in r]
            ax1.plot([r["step"] for r in e], [r["eval_loss"] for r in e], "o-", color="C1", label="eval loss")
        ax1.set_xlabel("step")
        ax1.set_title("loss")
        ax1.legend()
        for i, name in enumerate(self.task.plot_metrics):
            if any(name in r for r in train):
                ax2.plot(steps, _ema([r.get(name, float("nan")) for r in train]), color=f"C{i}",
                         label=f"train {name} (EMA)")
            e = [r for r in evals if f"eval_{name}" in r]
            if e:
                ax2.plot([r["step"] for r in e], [r[f"eval_{name}"] for r in e], "o-", color=f"C{i + 3}",
                         label=f"eval {name}")
        ax2.set_xlabel("step")
        ax2.set_title(", ".join(self.task.plot_metrics))
        ax2.legend()
        fig.tight_layout()
        fig.savefig(self.out / PLOT_FILE, dpi=100)
        plt.close(fig)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> Any:
    # "\n" (the default step separator) reads better as a double-quoted escape than folded YAML.
    style = '"' if any(c in value for c in "\n\t\r") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def _ema(values: list[float], alpha: float = 0.1) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None or math.isnan(acc) else (1 - alpha) * acc + alpha * v
        out.append(acc)
    return out


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None

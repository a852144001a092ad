"""The training loop every trainer shares: batches, optimiser, checkpoints, metrics, DDP, Ctrl-C.

A trainer supplies a `Task` (its examples, collate, loss, evaluation and serving stanza; task.py);
`Trainer.run` runs it, and reads top to bottom: set up (data, model, optimiser, resume), then
optimiser steps epoch by epoch (gradient accumulation, clipping, a metrics line, periodic
evaluation and checkpoints), then finish (final evaluation, the trained model and its
rewardsvc.yaml, or a checkpoint after Ctrl-C). Length-grouped batches (batches.py), AdamW with
warmup and cosine decay (optim.py), bf16 autocast on GPU, resumable checkpoints: a resumed run
continues from its step with the same data order (checkpoints.py), a JSONL metrics log and a PNG
plot (run_log.py). Under `torchrun` / `accelerate launch` (WORLD_SIZE > 1) it runs
DistributedDataParallel: each rank takes every WORLD_SIZE-th batch; rank 0 evaluates, logs and
saves (runtime.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from rewardsvc.progress import progress_bar
from rewardsvc.trainers.batches import make_batches
from rewardsvc.trainers.checkpoints import (
    CHECKPOINTS,
    CONFIG_FILE,
    checkpoint_dir,
    config_dict,
    dump_yaml,
    latest_checkpoint,
    load_checkpoint,
    resolve_base_model,
    save_checkpoint,
    save_final,
    start_checkpoint,
)
from rewardsvc.trainers.optim import disable_dropout, lr_lambda, make_adamw, param_groups
from rewardsvc.trainers.run_log import MetricsLog, plot
from rewardsvc.trainers.runtime import Interrupt, barrier, from_main, seed_everything, setup_distributed, should_stop
from rewardsvc.trainers.task import Task, TrainConfig

# Importers of the loop's names from before it was split (trainers, tests, bench).
__all__ = ["RunState", "Task", "TrainConfig", "Trainer", "config_dict", "dump_yaml", "latest_checkpoint",
           "lr_lambda", "make_batches", "resolve_base_model"]

log = logging.getLogger(__name__)


@dataclass
class RunState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # next micro-batch of this epoch (per rank)
    samples: int = 0  # training examples seen, all ranks
    train_time_s: float = 0.0  # time in forward/backward/step, without evaluation and saving


@dataclass
class _Window:
    """What the steps since the last metrics line did; averaged into the next line."""

    metrics: dict[str, list[float]] = field(default_factory=dict)
    samples: int = 0
    tokens: int = 0
    time_s: float = 0.0


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

    def run(self) -> dict[str, Any]:
        cfg, task = self.config, self.task
        self._setup()
        state, total, accum = self.state, self.total, cfg.gradient_accumulation_steps
        # A bar on a terminal; in `make install`'s output or a job log, a line per 5% with loss and ETA.
        self.bar = progress_bar(total, type(task).__name__, unit="step", initial=state.step,
                                enabled=cfg.progress and self.ranks.main)
        if cfg.eval_on_start and task.eval and state.step == 0:
            self._evaluate()
        interrupted = False
        loop_wall, loop_cpu = time.perf_counter(), time.process_time()
        with Interrupt() as stop:
            while state.step < total and not interrupted:
                batches = self._epoch_batches(state.epoch)
                while state.batch_in_epoch + accum <= len(batches) and state.step < total:
                    self._optimiser_step(batches)
                    if cfg.eval_steps and state.step % cfg.eval_steps == 0 and state.step < total and task.eval:
                        self._evaluate_in_loop()
                    if cfg.save_steps and state.step % cfg.save_steps == 0:
                        self._save_checkpoint()
                    if should_stop(stop.requested, self.ranks, self.device):
                        interrupted = True
                        break
                else:
                    if state.step < total:
                        state.epoch += 1
                        state.batch_in_epoch = 0
            self.bar.close()
            # The whole loop without the evaluations in it (what a benchmark compares).
            loop_wall = time.perf_counter() - loop_wall - self.eval_wall
            loop_cpu = time.process_time() - loop_cpu - self.eval_cpu
            summary = self._finish(interrupted, loop_wall, loop_cpu)
        if self.ranks.main and cfg.plot:
            plot(self.out, task.plot_metrics)
        barrier(self.ranks)
        return summary

    # -- setup

    def _setup(self) -> None:
        """Ranks and device, the output dir, then data, model, optimiser and schedule; on resume the
        saved optimiser, schedule, RNG and step."""
        cfg, task = self.config, self.task
        self.ranks, self.device = setup_distributed(cfg.device)
        resume = start_checkpoint(self.out, cfg.resume_from, cfg.overwrite_output_dir)
        if self.ranks.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if resume is None and cfg.overwrite_output_dir:
                shutil.rmtree(self.out / CHECKPOINTS, ignore_errors=True)
        hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected here
        seed_everything(cfg.seed)  # before load_model: a new head's initialisation draws from it

        base = resolve_base_model(cfg.model)
        task.tokenizer = AutoTokenizer.from_pretrained(resume or base)
        task.prepare()
        if not task.train:
            raise ValueError(f"no training examples in {cfg.train_file}")
        self.model = self._load_model(resume or base)

        self.lengths = [task.length(e) for e in task.train]
        per_epoch = len(make_batches(self.lengths, cfg.batch_size, 0, False)) // self.ranks.world
        self.steps_per_epoch = per_epoch // cfg.gradient_accumulation_steps
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{len(task.train)} training examples make fewer micro-batches than one optimiser step needs "
                f"(batch_size {cfg.batch_size} x gradient_accumulation_steps {cfg.gradient_accumulation_steps}"
                f" x {self.ranks.world} ranks): lower them or add data"
            )
        self.total = cfg.max_steps or max(1, math.ceil(cfg.num_epochs * self.steps_per_epoch))
        warmup = math.ceil(cfg.warmup_ratio * self.total)
        self.optimizer = make_adamw(
            param_groups(self.model, cfg.weight_decay),
            lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.lr_scheduler, warmup, self.total))

        self.state = RunState()
        if resume is not None:
            self.state = RunState(**load_checkpoint(resume, self.optimizer, self.scheduler, self.device))
            log.info("resuming from %s at step %d", resume, self.state.step)
        self.metrics_log = MetricsLog(self.out, enabled=self.ranks.main)
        self.metrics_log.start(self.state.step, fresh=resume is None)
        self.window = _Window()
        self.eval_wall = self.eval_cpu = 0.0
        if self.ranks.main:
            (self.out / CONFIG_FILE).write_text(dump_yaml(config_dict(cfg)))
            log.info(
                "training %s: %d examples (%d held out), %d steps (%d per epoch), "
                "batch %d x %d accum x %d ranks on %s%s",
                type(task).__name__, len(task.train), len(task.eval), self.total, self.steps_per_epoch,
                cfg.batch_size, cfg.gradient_accumulation_steps, self.ranks.world, self.device,
                " with bf16 autocast" if self.use_bf16 else "",
            )

    def _load_model(self, path: Path) -> Any:
        """The task's model on the device in train mode; `self.wrapped` is what the loss runs (DDP
        on several ranks, else the model itself)."""
        cfg = self.config
        model = self.task.load_model(path)
        if cfg.disable_dropout:
            disable_dropout(model)
        model.to(self.device)
        model.train()
        self.use_bf16 = cfg.mixed_precision == "bf16" or (
            cfg.mixed_precision == "auto" and self.device.startswith("cuda"))
        self.wrapped = model
        if self.ranks.world > 1:
            self.wrapped = DistributedDataParallel(
                model, device_ids=[self.ranks.local_rank] if self.device.startswith("cuda") else None
            )
        return model

    def autocast(self) -> Any:
        """bf16 autocast when configured (Task.evaluate gets this too), else a no-op."""
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.use_bf16)

    # -- one optimiser step

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches of `epoch`: a whole number of optimiser steps on every rank."""
        cfg, ranks = self.config, self.ranks
        accum = cfg.gradient_accumulation_steps
        batches = make_batches(self.lengths, cfg.batch_size, cfg.seed * 1000 + epoch, cfg.group_by_length)
        usable = (len(batches) // ranks.world // accum) * accum * ranks.world
        return batches[:usable][ranks.rank :: ranks.world]

    def _optimiser_step(self, batches: list[list[int]]) -> None:
        """Accumulate gradients over the next micro-batches, clip, step; then log."""
        cfg, task, state, window = self.config, self.task, self.state, self.window
        accum, world = cfg.gradient_accumulation_steps, self.ranks.world
        t0 = time.perf_counter()
        step_metrics: dict[str, float] = {}
        step_samples = 0
        for k in range(accum):
            batch = task.collate([task.train[i] for i in batches[state.batch_in_epoch + k]])
            step_samples += task.samples(batch) * world
            window.tokens += task.tokens(batch) * world
            batch = {n: v.to(self.device) if hasattr(v, "to") else v for n, v in batch.items()}
            # DDP all-reduces gradients on the last micro-batch only.
            sync = k == accum - 1 or world == 1
            with self.wrapped.no_sync() if not sync else contextlib.nullcontext():
                with self.autocast():
                    loss, metrics = task.loss(self.wrapped, batch)
                (loss / accum).backward()
            for n, v in {"loss": float(loss.detach()), **metrics}.items():
                step_metrics[n] = step_metrics.get(n, 0.0) + v / accum
        grad_norm = 0.0
        if cfg.max_grad_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm))
        lr = float(self.scheduler.get_last_lr()[0])  # the rate this step used
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.batch_in_epoch += accum
        dt = time.perf_counter() - t0
        state.train_time_s += dt
        state.samples += step_samples
        window.time_s += dt
        window.samples += step_samples
        for n, v in step_metrics.items():
            window.metrics.setdefault(n, []).append(v)
        self.bar.set_postfix({n: f"{v:.3f}" for n, v in step_metrics.items()}, refresh=False)
        self.bar.update(1)  # after the postfix: a progress line shows this step's loss
        if state.step % cfg.logging_steps == 0 or state.step == self.total:
            self._log_window(lr, grad_norm, epoch_batches=len(batches))

    def _log_window(self, lr: float, grad_norm: float, epoch_batches: int) -> None:
        state, window = self.state, self.window
        self.metrics_log.write({
            "step": state.step, "epoch": round(state.epoch + state.batch_in_epoch / max(1, epoch_batches), 4),
            **{n: sum(v) / len(v) for n, v in window.metrics.items()},
            "lr": lr, "grad_norm": grad_norm,
            "samples_per_s": window.samples / max(window.time_s, 1e-9),
            "tokens_per_s": window.tokens / max(window.time_s, 1e-9),
        })
        self.window = _Window()

    # -- evaluation

    def _evaluate(self) -> dict[str, float]:
        """Held-out metrics at this step: computed and logged on rank 0, the same on every rank."""
        metrics: dict[str, float] = {}
        if self.ranks.main:
            self.model.eval()
            t0 = time.perf_counter()
            with torch.no_grad():
                metrics = self.task.evaluate(self.model, self.device, self.autocast)
            self.model.train()
            metrics["eval_time_s"] = round(time.perf_counter() - t0, 3)
            self.metrics_log.write({"step": self.state.step, **metrics})
            log.info("step %d: %s", self.state.step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        return from_main(metrics, self.ranks)

    def _evaluate_in_loop(self) -> None:
        """A periodic evaluation; its time is left out of the loop time in the summary."""
        wall, cpu = time.perf_counter(), time.process_time()
        self._evaluate()
        self.eval_wall += time.perf_counter() - wall
        self.eval_cpu += time.process_time() - cpu

    # -- checkpoints and the end of the run

    def _save_checkpoint(self) -> Path:
        path = checkpoint_dir(self.out, self.state.step)
        if self.ranks.main:
            save_checkpoint(path, self.model, self.task.tokenizer, self.optimizer, self.scheduler,
                            dataclasses.asdict(self.state), keep=self.config.save_total_limit)
        barrier(self.ranks)
        return path

    def _finish(self, interrupted: bool, loop_wall: float, loop_cpu: float) -> dict[str, Any]:
        """The run summary; after Ctrl-C a checkpoint to resume from, else the final evaluation and
        the trained model with the rewardsvc.yaml that serves it."""
        cfg, task, state = self.config, self.task, self.state
        summary: dict[str, Any] = {
            "output_dir": str(self.out), "steps": state.step, "total_steps": self.total, "epoch": state.epoch,
            "train_examples": len(task.train), "eval_examples": len(task.eval),
            "train_samples": state.samples, "train_time_s": round(state.train_time_s, 3),
            "samples_per_s": state.samples / max(state.train_time_s, 1e-9), "device": self.device,
            "loop_time_s": round(loop_wall, 3), "loop_cpu_s": round(loop_cpu, 3),
            "world_size": self.ranks.world, "interrupted": interrupted,
        }
        if interrupted:
            ckpt = self._save_checkpoint()
            summary["checkpoint"] = str(ckpt)
            if self.ranks.main:
                log.warning("interrupted at step %d: checkpoint %s; continue with --resume-from latest",
                            state.step, ckpt)
            return summary
        metrics = self._evaluate() if task.eval else {}
        summary.update(metrics)
        if cfg.save_steps and state.step % cfg.save_steps:
            # The last step, so a later run with a larger max_steps can continue from it.
            self._save_checkpoint()
        if self.ranks.main:
            save_final(self.out, self.model, task.tokenizer, task.serving_config(self.out, metrics), summary)
        return summary

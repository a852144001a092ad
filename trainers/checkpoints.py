"""What a run leaves on disk: resumable checkpoints (weights, optimiser, schedule, RNG, step), and
at the end the trained model with its rewardsvc.yaml and results.json.

A checkpoint is written to `step-N.tmp` and renamed when complete, so `latest_checkpoint` never
picks a half-written one; only the newest `save_total_limit` are kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from rewardsvc.backends.gguf import model_dir
from rewardsvc.config import parse_config
from rewardsvc.trainers.runtime import rng_state, set_rng_state

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
SERVING_CONFIG = "rewardsvc.yaml"
SUMMARY_FILE = "results.json"
CONFIG_FILE = "train_config.yaml"


def resolve_base_model(model: str) -> Path:
    """A local HF directory for `model`; a GGUF file is converted once into the cache."""
    return model_dir(model)


def latest_checkpoint(output_dir: Path) -> Path | None:
    root = output_dir / CHECKPOINTS
    done = [p for p in root.glob("step-*") if (p / STATE_FILE).exists()] if root.exists() else []
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def start_checkpoint(out: Path, resume_from: str, overwrite: bool) -> Path | None:
    """The checkpoint a run continues from (None: a fresh start); refuses to mix two runs in one dir."""
    if resume_from:
        ckpt = latest_checkpoint(out) if resume_from == "latest" else Path(resume_from)
        if ckpt is None or not (ckpt / STATE_FILE).exists():
            raise FileNotFoundError(
                f"resume_from={resume_from!r}: no checkpoint found"
                + (f" under {out / CHECKPOINTS}" if resume_from == "latest" else "")
            )
        return ckpt
    if latest_checkpoint(out) is not None and not overwrite:
        raise FileExistsError(
            f"{out} holds checkpoints of an earlier run: continue it with --resume-from latest, "
            "or start over with --overwrite-output-dir (or pick another output_dir)"
        )
    return None


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / CHECKPOINTS / f"step-{step:06d}"


def save_checkpoint(final: Path, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], keep: int) -> None:
    """Write the checkpoint `final` (complete or absent) and delete all but the newest `keep`."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    kept = sorted((p for p in final.parent.glob("step-*") if not p.name.endswith(".tmp")),
                  key=lambda p: int(p.name.split("-")[1]))
    for old in kept[: max(0, len(kept) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(ckpt: Path, optimizer: Any, scheduler: Any, device: str) -> dict[str, Any]:
    """Restore optimiser, schedule and RNG from `ckpt`; returns the saved run state."""
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=False))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
    return json.loads((ckpt / STATE_FILE).read_text())


def save_final(out: Path, model: Any, tokenizer: Any, serving: dict[str, Any], summary: dict[str, Any]) -> None:
    """The trained model in `out`, the rewardsvc.yaml that serves it, and the run summary."""
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    try:
        parse_config(serving, str(out / SERVING_CONFIG))
    except ImportError as exc:  # a scorer module not installed here: still write the file
        log.warning("could not validate %s (%s)", SERVING_CONFIG, exc)
    (out / SERVING_CONFIG).write_text(
        "# Serve this checkpoint: rewardsvc serve --config " + str(out / SERVING_CONFIG) + "\n"
        + dump_yaml(serving)
    )
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> Any:
    # "\n" (the default step separator) reads better as a double-quoted escape than folded YAML.
    style = '"' if any(c in value for c in "\n\t\r") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)

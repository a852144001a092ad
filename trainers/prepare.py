"""Install-time step: train the default reward model, PRM and implicit PRM into the model cache (once, under a lock).

`python -m rewardsvc.prepare` (run by `make install`) calls `prepare_default_models`. All are short,
honest CPU runs on real data shipped in trainers/data: a Bradley-Terry RM on HH-RLHF helpful-base
and a token-classification PRM on PRMBench, each on the MiniLM encoder, and a PRIME implicit PRM
(SmolLM2-135M-Instruct against itself as reference) on labelled GSM8K solutions, each evaluated on
a fixed-seed held-out split it never trained on. The server's default config serves them as
cache:default-rm, cache:default-prm and cache:default-implicit-prm; each directory's rewardsvc.yaml
also serves it alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewardsvc.trainers.examples import DATA_DIR

log = logging.getLogger(__name__)

DONE = "results.json"  # written last by the trainer: its presence means the model is complete


def default_rm_config(output_dir: Path) -> Any:
    from rewardsvc.trainers.rm import RMConfig

    return RMConfig(
        model="bundled:all-minilm-l6-v2",
        output_dir=str(output_dir),
        train_file=str(DATA_DIR / "hh-rlhf-helpful-base.jsonl.gz"),
        eval_fraction=0.15,
        split_seed=0,
        max_eval_examples=300,
        max_length=128,
        batch_size=16,
        learning_rate=1e-4,
        warmup_ratio=0.1,
        max_steps=60,
        seed=0,
        progress=True,  # a line per 5% of the steps with loss and ETA in `make install`'s output
        overwrite_output_dir=True,
    )


def default_prm_config(output_dir: Path) -> Any:
    from rewardsvc.trainers.prm import PRMConfig

    return PRMConfig(
        model="bundled:all-minilm-l6-v2",
        output_dir=str(output_dir),
        train_file=str(DATA_DIR / "prmbench-train-*.jsonl.gz"),
        eval_fraction=0.03,
        split_seed=0,
        max_train_examples=1000,  # problems (2 solutions each): more than 40 steps use; tokenising all costs minutes
        max_length=512,
        # About 1 step in 8 is wrong as labelled: trained as given, 40 steps learn only "every step is
        # fine". Counting the steps after a solution's first error as wrong too, and weighting wrong
        # steps up, gives the short run something to learn.
        wrong_after_first_error=True,
        error_weight=3.0,
        batch_size=8,
        learning_rate=1e-4,
        warmup_ratio=0.1,
        max_steps=80,
        seed=0,
        progress=True,  # a line per 5% of the steps with loss and ETA in `make install`'s output
        overwrite_output_dir=True,
    )


def default_implicit_prm_config(output_dir: Path) -> Any:
    from rewardsvc.trainers.implicit_prm import ImplicitPRMConfig

    # PRIME on the bundled SmolLM2-135M-Instruct, which is also the reference: GSM8K test problems
    # 0-399 with 4 labelled model solutions each (trainers/data/gsm8k-judge), 10% of the problems
    # held out. The cheap recipe that fits `make install` on 2 CPU cores (trainers/README.md): the top
    # 2 of 30 layers train, so the frozen layers run once per example; a sample of the solutions.
    return ImplicitPRMConfig(
        model="bundled:smollm2-135m-instruct",
        output_dir=str(output_dir),
        train_file=str(DATA_DIR / "gsm8k-judge.jsonl.gz"),
        eval_fraction=0.1,
        split_seed=0,
        max_train_examples=160,
        max_eval_examples=32,
        train_layers=2,
        beta=0.05,
        batch_size=8,
        learning_rate=2e-4,
        warmup_ratio=0.1,
        max_steps=32,  # 1.6 epochs
        seed=0,
        progress=True,
        overwrite_output_dir=True,
    )


def recipe(config: Any) -> dict[str, Any]:
    """What determines the trained model: the config without where it goes or how it reports."""
    import dataclasses

    data = dataclasses.asdict(config)
    for key in ("output_dir", "progress", "plot", "overwrite_output_dir", "resume_from"):
        data.pop(key, None)
    data["train_file"] = Path(data["train_file"]).name  # the checkout's location doesn't matter
    return data


#: Bumped when a trainer changes what the same config trains, so `make install` retrains that model.
#: default-prm 2: long solutions trained and evaluated in step-preserving windows, none dropped.
TRAINER_VERSIONS = {"default-rm": 1, "default-prm": 2, "default-implicit-prm": 1}
VERSION_FILE = "trainer_version.txt"


def is_current(target: Path, config: Any) -> bool:
    """A finished model trained with this recipe (a changed default config retrains at install)."""
    import yaml

    if not (target / DONE).exists() or not (target / "train_config.yaml").exists():
        return False
    version = (target / VERSION_FILE).read_text().strip() if (target / VERSION_FILE).exists() else "1"
    if version != str(TRAINER_VERSIONS.get(target.name, 1)):
        return False
    try:
        return recipe(type(config)(**yaml.safe_load((target / "train_config.yaml").read_text()))) == recipe(config)
    except (TypeError, ValueError, yaml.YAMLError):  # a config from another version of the trainers
        return False


def _prepare(name: str, make_config: Callable[[Path], Any], train: Callable[[Any], dict[str, Any]],
             headline: str) -> Path:
    from filelock import FileLock

    from rewardsvc.model_refs import cache_dir

    target = cache_dir() / "models" / name
    config = make_config(target)
    if is_current(target, config):
        log.info("prepare: %s already in %s", name, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if is_current(target, config):  # another process trained it while we waited
            return target
        if (target / DONE).exists():
            log.info("prepare: %s in %s was trained with other settings; training it again", name, target)
        shutil.rmtree(target, ignore_errors=True)
        t0 = time.perf_counter()
        log.info("prepare: training %s into %s (one time, a few minutes on CPU)", name, target)
        summary = train(config)
        # Checkpoints are for resuming; the served model is the top-level directory.
        shutil.rmtree(target / "checkpoints", ignore_errors=True)
        (target / VERSION_FILE).write_text(f"{TRAINER_VERSIONS.get(name, 1)}\n")
        value = summary.get(headline)
        log.info("prepare: %s done in %.0fs: held-out %s %s (%s)", name, time.perf_counter() - t0, headline,
                 f"{value:.3f}" if isinstance(value, float) else value,
                 json.dumps({k: v for k, v in summary.items() if k.startswith("eval_")}))
    return target


def prepare_default_rm() -> Path:
    from rewardsvc.trainers.rm import train_rm

    return _prepare("default-rm", default_rm_config, train_rm, "eval_accuracy")


def prepare_default_prm() -> Path:
    from rewardsvc.trainers.prm import train_prm

    return _prepare("default-prm", default_prm_config, train_prm, "eval_first_error_f1")


def prepare_default_implicit_prm() -> Path:
    from rewardsvc.trainers.implicit_prm import train_implicit_prm

    return _prepare("default-implicit-prm", default_implicit_prm_config, train_implicit_prm, "eval_auroc_min")


def prepare_default_models() -> None:
    """The rewardsvc.prepare step: the default RM, PRM and implicit PRM (skipped when cached)."""
    if os.environ.get("REWARDSVC_SKIP_TRAINING") == "1":
        log.info("prepare: REWARDSVC_SKIP_TRAINING=1, not training the default RM, PRM and implicit PRM")
        return
    prepare_default_rm()
    prepare_default_prm()
    prepare_default_implicit_prm()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prepare_default_models()

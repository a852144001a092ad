"""Bradley-Terry reward-model training: rewardsvc's trainer vs TRL's RewardTrainer, one run each per seed.

    .venv/bin/python bench/bench_trainers.py [--steps 40] [--batch-size 8] [--max-length 256] [--seeds 0,1,2,3,4]

Same backbone (all-MiniLM-L6-v2), same data (HH-RLHF helpful-base, the trainers' fixed-seed split:
the first steps x batch-size training pairs, each seen once; the same held-out pairs), the same
token ids (both get the pairs rendered and truncated by rewardsvc/scorers/render.py, so TRL neither
re-tokenises nor filters anything), the same hyperparameters (AdamW, peak lr, warmup steps, cosine
decay, grad-norm clip 1.0, no weight decay, seed, dropout off, fp32, no gradient checkpointing,
chosen and rejected in one forward in both). What differs is the trainer: ours groups batches by
length; TRL's sampler is random (its default). Each side runs in its own process, one after the
other; throughput is training pairs per second over the training loop (wall clock and process
CPU time, the latter less sensitive to other load on a shared machine), accuracy is 1[r_c > r_r]
on the held-out pairs, scored by the same function for both final models.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BACKBONE = "bundled:all-minilm-l6-v2"


def make_data(tmp: Path, n_train: int, n_eval: int, split_seed: int) -> tuple[Path, Path]:
    from rewardsvc.trainers.examples import DATA_DIR, read_jsonl, split_rows

    rows = read_jsonl(DATA_DIR / "hh-rlhf-helpful-base.jsonl.gz")
    train, held = split_rows(rows, 0.15, split_seed)
    if n_train > len(train) or n_eval > len(held):
        raise SystemExit(f"asked for {n_train} train / {n_eval} held-out pairs; the split has {len(train)} / {len(held)}")
    paths = (tmp / "train.jsonl", tmp / "eval.jsonl")
    for path, part in zip(paths, (train[:n_train], held[:n_eval])):
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
    return paths


def run_ours(p: dict) -> dict:
    from rewardsvc.trainers.rm import RMConfig, train_rm

    summary = train_rm(RMConfig(
        model=BACKBONE, output_dir=p["out"], train_file=p["train"], eval_file=p["eval"], max_length=p["max_length"],
        batch_size=p["batch_size"], learning_rate=p["lr"], warmup_ratio=p["warmup_steps"] / p["steps"],
        lr_scheduler="cosine", weight_decay=0.0, max_grad_norm=1.0, num_epochs=1.0, max_steps=p["steps"],
        seed=p["seed"], disable_dropout=True, mixed_precision="no", progress=False, plot=False,
        overwrite_output_dir=True,
    ))
    return {"loop_time_s": summary["loop_time_s"], "loop_cpu_s": summary["loop_cpu_s"],
            "pairs": summary["train_samples"], "eval_accuracy": summary["eval_accuracy"],
            "eval_pairs": summary["eval_pairs"]}


def run_trl(p: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import RewardConfig, RewardTrainer

    from rewardsvc.trainers.examples import preference_pair, read_jsonl
    from rewardsvc.trainers.loop import resolve_base_model
    from rewardsvc.trainers.rm import encode_pair, evaluate_pairs

    hf_logging.set_verbosity_error()
    base = resolve_base_model(BACKBONE)
    tok = AutoTokenizer.from_pretrained(base)

    def encoded(path: str) -> list:
        return [encode_pair(tok, preference_pair(r), p["max_length"]) for r in read_jsonl(path)]

    train = encoded(p["train"])
    dataset = Dataset.from_list([{"chosen_ids": e.chosen, "rejected_ids": e.rejected} for e in train])
    args = RewardConfig(
        output_dir=p["out"], per_device_train_batch_size=p["batch_size"], max_steps=p["steps"],
        learning_rate=p["lr"], lr_scheduler_type="cosine", warmup_steps=p["warmup_steps"], weight_decay=0.0,
        max_grad_norm=1.0, seed=p["seed"], bf16=False, fp16=False, gradient_checkpointing=False,
        disable_dropout=True, max_length=p["max_length"], use_cpu=True, save_strategy="no", eval_strategy="no",
        logging_steps=p["steps"], report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        model_init_kwargs={"dtype": torch.float32},
    )

    class Clock(TrainerCallback):
        def on_train_begin(self, *a: object, **k: object) -> None:
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_train_end(self, *a: object, **k: object) -> None:
            self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    clock = Clock()
    trainer = RewardTrainer(model=str(base), args=args, train_dataset=dataset, processing_class=tok,
                            callbacks=[clock])
    trainer.train()
    model = trainer.model.eval()
    metrics = evaluate_pairs(model, encoded(p["eval"]), tok.pad_token_id, "cpu")
    return {"loop_time_s": clock.wall, "loop_cpu_s": clock.cpu, "pairs": p["steps"] * p["batch_size"],
            "eval_accuracy": metrics["eval_accuracy"], "eval_pairs": metrics["eval_pairs"]}


def side(name: str, params: dict) -> dict:
    """Run one trainer in its own process (no shared threads, caches or allocator state)."""
    import os

    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--side", name, "--params", json.dumps(params)],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    out["load"] = (load_before, os.getloadavg()[0])
    print(f"{name}: {out}", file=sys.stderr)
    return out


def report_defaults(write: bool) -> None:
    """The install-time models' own run summaries (trainers/prepare.py) as a RESULTS.md section."""
    from rewardsvc.model_refs import cache_dir
    from rewardsvc.trainers.prepare import default_prm_config, default_rm_config

    lines = []
    for name, make, keys in (
        ("default-rm", default_rm_config, ("eval_accuracy", "eval_accuracy_se", "eval_pairs")),
        ("default-prm", default_prm_config, ("eval_first_error_f1", "eval_first_error_acc_err",
                                             "eval_first_error_acc_corr", "eval_step_f1", "eval_step_f1_neg",
                                             "eval_prm_score", "eval_step_auroc", "eval_solution_auroc",
                                             "eval_solutions", "eval_windowed_solutions", "eval_ood_prm_score",
                                             "eval_ood_first_error_f1", "eval_ood_step_auroc",
                                             "eval_ood_solution_auroc", "eval_ood_solutions")),
    ):
        path = cache_dir() / "models" / name / "results.json"
        if not path.exists():
            raise SystemExit(f"{path} missing: run `python -m rewardsvc.prepare` first")
        r = json.loads(path.read_text())
        cfg = make(Path("."))
        held = ", ".join(f"{k.removeprefix('eval_')} {r[k]:.3f}" if isinstance(r.get(k), float) else
                         f"{k.removeprefix('eval_')} {r.get(k)}" for k in keys)
        lines.append(
            f"| cache:{name} | {Path(cfg.train_file).name} (held out: {cfg.eval_fraction:.0%}, seed {cfg.split_seed}) | "
            f"{r['steps']} x {cfg.batch_size}, max_length {cfg.max_length}, lr {cfg.learning_rate:g} | "
            f"{r['loop_time_s']:.0f} s wall, {r['loop_cpu_s']:.0f} s CPU | {held} |")
    body = ("Install-time models trained by `python -m rewardsvc.prepare` (all-MiniLM-L6-v2, CPU fp32); "
            "numbers from each model's results.json, held-out parts never trained on.\n\n"
            "| model | data | budget (steps x batch) | training loop | held-out |\n|---|---|---|---|---|\n"
            + "\n".join(lines)
            + "\n\nThe training-loop times are those of the runs that made the models, on whatever machine ran "
            "`make install` and under whatever else it was running; process CPU time is the steadier figure "
            "(2 threads: a fresh 2-core machine needs roughly CPU time / 2 of wall time).")
    print(body)
    if write:
        from common import write_section

        write_section("Trainers: install-time default RM and PRM", "python bench/bench_trainers.py --defaults", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup-steps", type=int, default=4)
    ap.add_argument("--eval-pairs", type=int, default=353, help="held-out pairs (353 = the whole held-out split)")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="one run per trainer per seed (comma-separated)")
    ap.add_argument("--no-write", action="store_true", help="don't update bench/RESULTS.md")
    ap.add_argument("--defaults", action="store_true",
                    help="only report the install-time default RM/PRM runs (cache:default-rm/-prm)")
    ap.add_argument("--side", choices=["ours", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.defaults:
        report_defaults(not a.no_write)
        return
    if a.side:
        result = (run_ours if a.side == "ours" else run_trl)(json.loads(a.params))
        print(json.dumps(result))
        return

    seeds = [int(x) for x in a.seeds.split(",")]
    runs: list[tuple[int, dict, dict]] = []
    with tempfile.TemporaryDirectory(prefix="bench-trainers-") as tmp_name:
        tmp = Path(tmp_name)
        train, held = make_data(tmp, a.steps * a.batch_size, a.eval_pairs, split_seed=0)
        params = {"train": str(train), "eval": str(held), "max_length": a.max_length, "batch_size": a.batch_size,
                  "steps": a.steps, "lr": a.lr, "warmup_steps": a.warmup_steps}
        for k, seed in enumerate(seeds):
            # Alternate who goes first, so a drift in machine load hits both sides alike.
            order = ("ours", "trl") if k % 2 == 0 else ("trl", "ours")
            got = {name: side(name, {**params, "seed": seed, "out": str(tmp / f"{name}-{seed}")}) for name in order}
            runs.append((seed, got["ours"], got["trl"]))

    def rate(r: dict, key: str) -> float:
        return r["pairs"] / r[key]

    def row(seed: int, ours: dict, trl: dict) -> str:
        return (f"| {seed} | {rate(ours, 'loop_time_s'):.2f} | {rate(trl, 'loop_time_s'):.2f} | "
                f"{rate(ours, 'loop_time_s') / rate(trl, 'loop_time_s'):.2f}x | "
                f"{rate(ours, 'loop_cpu_s') / rate(trl, 'loop_cpu_s'):.2f}x | "
                f"{ours['eval_accuracy']:.3f} | {trl['eval_accuracy']:.3f} | "
                f"{ours['eval_accuracy'] - trl['eval_accuracy']:+.3f} | "
                f"{min(ours['load'][0], trl['load'][0]):.1f}-{max(ours['load'][1], trl['load'][1]):.1f} |")

    def total(side_runs: list[dict], key: str) -> float:
        return sum(r["pairs"] for r in side_runs) / sum(r[key] for r in side_runs)

    ours_runs, trl_runs = [o for _, o, _ in runs], [t for _, _, t in runs]
    wall_ratio = total(ours_runs, "loop_time_s") / total(trl_runs, "loop_time_s")
    cpu_ratio = total(ours_runs, "loop_cpu_s") / total(trl_runs, "loop_cpu_s")
    acc_ours = statistics.mean(r["eval_accuracy"] for r in ours_runs)
    acc_trl = statistics.mean(r["eval_accuracy"] for r in trl_runs)
    diffs = [o["eval_accuracy"] - t["eval_accuracy"] for _, o, t in runs]
    diff_se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    n_eval = ours_runs[0]["eval_pairs"]
    binom_se = math.sqrt(acc_ours * (1 - acc_ours) / n_eval)
    import trl as trl_pkg

    body = f"""BT reward model on HH-RLHF helpful-base, all-MiniLM-L6-v2, CPU fp32: {a.steps} steps x {a.batch_size} pairs
(each training pair seen once), max_length {a.max_length} (left truncation), AdamW lr {a.lr}, {a.warmup_steps} warmup
steps then cosine, clip 1.0, dropout off, no gradient checkpointing; held-out accuracy on {n_eval} pairs of the
fixed-seed split. One run per trainer per seed ({", ".join(map(str, seeds))}; the seed sets the head's
initialisation and the data order in both); within a seed the two run back to back, order alternating. TRL
{trl_pkg.__version__}.

| seed | ours pairs/s (wall) | TRL pairs/s (wall) | ratio (wall) | ratio (CPU) | ours accuracy | TRL accuracy | ours - TRL | load avg |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(row(*r) for r in runs)}

- throughput ours / TRL over all seeds: **{wall_ratio:.2f}x** pairs/s (wall clock), **{cpu_ratio:.2f}x** (process CPU
  time, the steadier figure on a shared machine); goal >= 1.2x
- held-out accuracy, mean over seeds: ours **{acc_ours:.3f}**, TRL **{acc_trl:.3f}**; paired difference
  {statistics.mean(diffs):+.3f} ± {diff_se:.3f} (standard error over seeds; one seed's binomial SE on {n_eval} pairs is
  ±{binom_se:.3f}); ours better on {sum(d > 0 for d in diffs)} of {len(diffs)} seeds, equal on {sum(d == 0 for d in diffs)}

Where the speed comes from: length-grouped batches (less padding; both pad chosen and rejected of a
batch to one length and run them in one forward) and a lean loop. TRL's own defaults would be
slower still on CPU (gradient checkpointing on, bf16 autocast); both are off here so the comparison
is of the trainers, not of those settings."""
    print(body)
    if not a.no_write:
        from common import write_section

        cmd = "python bench/bench_trainers.py " + " ".join(
            f"--{k} {v}" for k, v in (("steps", a.steps), ("batch-size", a.batch_size), ("max-length", a.max_length),
                                      ("seeds", a.seeds)))
        write_section("Trainers: BT reward model, ours vs TRL RewardTrainer (bench_trainers.py)", cmd, body)


if __name__ == "__main__":
    main()

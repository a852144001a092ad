"""Generative-judge SFT: does `rewardsvc train judge` make SmolLM2 a better reference-guided judge?

One run: fine-tune SmolLM2-135M-Instruct on GSM8K judge rows (trainers/data/gsm8k-judge.jsonl.gz:
a model solution, the reference answer, verdict yes/no), then serve the base model and the checkpoint
side by side from one real server and score the same held-out rows (problems never trained on)
through the client:

    base, extract    the default config's judge: P(reference answer | the solution)
    base, yes_no     the base model asked for a Yes/No verdict (verdict-token probabilities)
    trained, yes_no  the checkpoint, served from the rewardsvc.yaml stanza the trainer wrote

Reported per judge: accuracy (verdict = score > 0), balanced accuracy (mean recall on correct and on
wrong solutions: 62% of rows are wrong, so always-"no" gets 0.62 accuracy but 0.50 balanced) and
AUROC of the score. The trainer's own held-out evaluation before and after training is shown beside.

    python bench/judge_sft.py [--max-steps 100] [--batch-size 4] [--lr 3e-5] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

DATA = REPO / "trainers" / "data" / "gsm8k-judge.jsonl.gz"


def split(tmp: Path, eval_fraction: float, seed: int) -> tuple[Path, Path, list[dict]]:
    """The trainer's split by problem, written out so the held-out rows are known here too."""
    from rewardsvc.trainers.examples import read_jsonl, split_rows

    rows = read_jsonl(DATA)
    train, held = split_rows(rows, eval_fraction, seed, key=lambda r: json.dumps(r.get("prompt"), sort_keys=True))
    paths = (tmp / "train.jsonl", tmp / "eval.jsonl")
    for path, part in zip(paths, (train, held)):
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
    return paths[0], paths[1], held


def metrics(scores: list[float], labels: list[bool]) -> dict[str, float]:
    """The trainer's verdict metrics on served scores (score > 0 = judged correct)."""
    from rewardsvc.trainers.judge import verdict_metrics

    return verdict_metrics([s for s, y in zip(scores, labels) if y], [s for s, y in zip(scores, labels) if not y], 0.0)


def eval_rows(out_dir: Path) -> list[dict[str, Any]]:
    """The trainer's evaluation lines from its metrics log (step 0 = before training)."""
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "eval_verdict_accuracy" in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--max-length", type=int, default=768)
    ap.add_argument("--eval-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default="", help="copy the trained checkpoint here")
    ap.add_argument("--no-write", action="store_true", help="don't update bench/RESULTS.md")
    args = ap.parse_args()

    from rewardsvc.client import RewardClient
    from rewardsvc.types import Item
    from support import ServerProcess
    from rewardsvc.trainers.judge import JudgeConfig, train_judge

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="judge-sft-"))
    try:
        train_file, eval_file, held = split(tmp, args.eval_fraction, args.seed)
        out = tmp / "judge"
        t0 = time.perf_counter()
        summary = train_judge(JudgeConfig(
            output_dir=str(out), train_file=str(train_file), eval_file=str(eval_file), max_length=args.max_length,
            batch_size=args.batch_size, learning_rate=args.lr, max_steps=args.max_steps, seed=args.seed,
            eval_on_start=True, overwrite_output_dir=True, plot=False,
        ))
        train_s = time.perf_counter() - t0
        trainer_evals = eval_rows(out)
        if args.keep:
            shutil.copytree(out, args.keep, dirs_exist_ok=True)

        import yaml

        trained = yaml.safe_load((out / "rewardsvc.yaml").read_text())["scorers"]["judge"]
        items = [Item(id=r["id"], prompt=r["prompt"], response=r["response"], reference=r["reference"]) for r in held]
        labels = [r["verdict"] == "yes" for r in held]
        config = {"scorers": {"judge-base": {"type": "judge", "device": "cpu"},
                              "judge-trained": {**trained, "device": "cpu"}}}
        results: dict[str, dict[str, float]] = {}
        with ServerProcess(config) as srv, RewardClient(srv.address, timeout_s=1800) as client:
            for label, scorer, method in (("base, extract (default config)", "judge-base", "extract"),
                                          ("base, yes_no", "judge-base", "yes_no"),
                                          ("trained, yes_no", "judge-trained", "yes_no")):
                t1 = time.perf_counter()
                res = client.score(scorer, items, mode="reference", reference_method=method)
                bad = [r for r in res if not r.ok]
                if bad:
                    raise SystemExit(f"{label}: {len(bad)} items failed, e.g. {bad[0].error}")
                results[label] = {**metrics([r.score for r in res], labels), "seconds": time.perf_counter() - t1}
                print(label, results[label], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load_after = os.getloadavg()[0]
    n_pos = sum(labels)
    rows = "\n".join(
        f"| {k} | {v['accuracy']:.3f} | {v['balanced_accuracy']:.3f} | {v['auroc']:.3f} | {v['said_positive']:.2f} |"
        for k, v in results.items())
    first, last = trainer_evals[0], trainer_evals[-1]

    def ev(r: dict[str, Any]) -> str:
        return (f"accuracy {r['eval_verdict_accuracy']:.3f}, balanced {r.get('eval_verdict_balanced_accuracy', float('nan')):.3f}, "
                f"AUROC {r.get('eval_verdict_auroc', float('nan')):.3f}, verdict loss {r['eval_loss']:.3f}")

    body = f"""Data: trainers/data/gsm8k-judge.jsonl.gz (GSM8K test problems, OpenAI's model solutions, verdict =
their correctness label), split by problem with seed {args.seed}: {summary['train_examples']} training rows,
{len(held)} held-out rows ({n_pos} correct solutions, {len(held) - n_pos} wrong). Training: SmolLM2-135M-Instruct,
full fine-tune, CPU fp32, {summary['steps']} steps x {args.batch_size} rows ({summary['train_samples']} rows seen),
lr {args.lr}, max_length {args.max_length}, loss on the verdict tokens only; training loop
{summary['loop_time_s']:.0f} s wall, {summary['loop_cpu_s']:.0f} s CPU ({train_s:.0f} s with the two
evaluations and saving).

Held-out rows scored through one real server (client -> gRPC -> judge scorer), same items for all three:

| judge | accuracy | balanced accuracy | AUROC | share judged correct |
|---|---|---|---|---|
{rows}

The trainer's own held-out evaluation (verdict-token logits, as the scorer reads them): before
training {ev(first)}; after {ev(last)}.
Load average before / after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} cores.
"""
    print(body)
    if not args.no_write:
        from common import write_section

        cmd = f"python bench/judge_sft.py --max-steps {args.max_steps} --batch-size {args.batch_size} --lr {args.lr}"
        write_section("Trainers: generative judge SFT (judge_sft.py)", cmd, body)


if __name__ == "__main__":
    main()

"""HL-Gauss vs MSE vs BCE (and the PRM's 2-label CE) on the same data and seeds, held-out metrics.

    .venv/bin/python bench/bench_value_heads.py [--seeds 0,1,2] [--which rm,prm]

rm   regression of a strong reward model's scores: the 100 MATH problems x 8 CoT responses of
     bench/data/eval/math500-cot-bon8-100 with Qwen2.5-Math-RM-72B's score of each (`pred_score`)
     as the target, MiniLM, 20% of the problems held out; held-out Spearman / Pearson with the
     72B scores and AUROC of the prediction for the responses' correctness labels.
prm  the install-time PRM recipe (trainers/prepare.py: PRMBench, MiniLM, 80 steps) with each loss;
     held-out step AUROC, PRMScore and first-error F1 on PRMBench's held-out problems.
Every loss runs with the same seeds, data order and steps; only the head and the loss differ.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import gzip
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_section

DATA = Path(__file__).parent / "data" / "eval" / "math500-cot-bon8-100.jsonl.gz"


def rm_rows(path: Path) -> int:
    rows = 0
    with gzip.open(DATA, "rt") as f, gzip.open(path, "wt") as out:
        for line in f:
            r = json.loads(line)
            responses = r["code"] if isinstance(r["code"], list) else ast.literal_eval(r["code"])
            scores = r["pred_score"] if isinstance(r["pred_score"], list) else ast.literal_eval(r["pred_score"])
            labels = r["score"] if isinstance(r["score"], list) else ast.literal_eval(r["score"])
            for resp, s, y in zip(responses, scores, labels):
                out.write(json.dumps({"prompt": r["question"], "response": resp, "target": float(s[0]),
                                      "label": bool(y)}) + "\n")
                rows += 1
    return rows


def run_rm(loss: str, seed: int, data: Path, out: Path, steps: int) -> dict:
    from rewardsvc.trainers.rm import RMConfig, train_rm

    cfg = RMConfig(model="bundled:all-minilm-l6-v2", output_dir=str(out / f"rm-{loss}-{seed}"), train_file=str(data),
                   eval_fraction=0.2, split_seed=0, max_length=256, batch_size=16, learning_rate=1e-4,
                   warmup_ratio=0.1, max_steps=steps, seed=seed, loss=loss, progress=False, plot=False,
                   overwrite_output_dir=True)
    return train_rm(cfg)


def run_prm(loss: str, seed: int, out: Path) -> dict:
    from rewardsvc.trainers.prepare import default_prm_config
    from rewardsvc.trainers.prm import train_prm

    cfg = default_prm_config(out / f"prm-{loss}-{seed}")
    cfg = dataclasses.replace(cfg, loss=loss, seed=seed, progress=False, plot=False)
    return train_prm(cfg)


def table(results: dict[str, list[dict]], keys: list[str]) -> list[str]:
    lines = ["| loss | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for loss, runs in results.items():
        cells = []
        for k in keys:
            vals = [r[k] for r in runs if k in r]
            if not vals:
                cells.append("-")
                continue
            sd = f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else ""
            cells.append(f"{statistics.mean(vals):.3f}{sd}")
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (same for every loss)")
    ap.add_argument("--which", default="rm,prm", help="rm, prm or both")
    ap.add_argument("--rm-steps", type=int, default=60)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    which = args.which.split(",")
    sections: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-value-heads-") as tmp:
        out = Path(tmp)
        if "rm" in which:
            data = out / "math500-bon8-rm72b.jsonl.gz"
            n = rm_rows(data)
            res: dict[str, list[dict]] = {}
            for loss in ("mse", "bce", "hl_gauss"):
                for seed in seeds:
                    res.setdefault(loss, []).append(run_rm(loss, seed, data, out, args.rm_steps))
                    print(loss, seed, {k: v for k, v in res[loss][-1].items() if k.startswith("eval_")}, flush=True)
            lines = sections.setdefault("HL-Gauss vs MSE / BCE: RM regression", [])
            lines += [f"RM regression: {n} MATH responses (100 problems x 8), target = Qwen2.5-Math-RM-72B's score, "
                      f"MiniLM, max_length 256, batch 16, {args.rm_steps} steps, lr 1e-4; 20 problems held out "
                      f"({res['mse'][0].get('eval_examples', '?')} responses); seeds {args.seeds}; mean ± sd.", ""]
            lines += table(res, ["eval_spearman", "eval_pearson", "eval_auroc", "eval_mse"])
        if "prm" in which:
            res = {}
            for loss in ("ce", "bce", "mse", "hl_gauss"):
                for seed in seeds:
                    res.setdefault(loss, []).append(run_prm(loss, seed, out))
                    print(loss, seed, {k: v for k, v in res[loss][-1].items() if k.startswith("eval_")}, flush=True)
            lines = sections.setdefault("HL-Gauss vs MSE / BCE / CE: PRM", [])
            lines += ["PRM: the install-time recipe (PRMBench, MiniLM, 80 steps, error weight 3, later steps of a "
                      f"wrong solution trained as wrong) with each loss; seeds {args.seeds}; mean ± sd over seeds. "
                      "ce is the default (2-label softmax, TRL's PRMTrainer); hl_gauss: 21 bins over [0, 1].", ""]
            lines += table(res, ["eval_step_auroc", "eval_solution_auroc", "eval_prm_score", "eval_first_error_f1"])
    for name, lines in sections.items():
        print("\n".join(lines))
        if not args.no_write:
            write_section(name, "heavy .venv/bin/python bench/bench_value_heads.py " + " ".join(sys.argv[1:]),
                          "\n".join(lines))


if __name__ == "__main__":
    main()

"""The default PRM on long and out-of-distribution solutions (issue 16); numbers go to bench/RESULTS.md.

    .venv/bin/python bench/prm_long.py --name after [--model cache:default-prm] [--code DIR]
    .venv/bin/python bench/prm_long.py --write RUN... [--trainer-results DIR...]   # the RESULTS.md section

Data (written under reports/prm_long/data/, from files the repo ships):
  prmbench-heldout.jsonl   PRMBench rows of the problems the default PRM holds out (trainers/prepare.py's
                           split): step labels, original and modified processes, up to ~1,700 tokens
  math500-correct.jsonl    MATH-500 BoN-8 responses (bench/data/eval, Qwen2.5-Math samples) whose final
                           answer is right, split into steps at blank lines, ProcessBench format with
                           label -1 (every step counted correct): up to ~4,000 tokens
  math500-all.jsonl        all 800 responses, the wrong ones labelled at their last step (their final
                           answer is wrong; where the first error is, nobody labelled): only the
                           solution-level numbers below are read from it
Runs (each one `rewardsvc eval --suite steps`, in a subprocess, so --code can point at an older tree):
  steps   prmbench-heldout + math500-correct: items rejected (INVALID_ITEM), step F1, first-error F1,
          PRMScore
  ood     math500-all: how well the PRM's solution score (min / mean / last step) ranks right final
          answers above wrong ones (AUROC; 0.5 = chance), best-of-8 accuracy, beside a length-only
          baseline (fewer steps ranked higher) that needs no model
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "prm_long"
BON = ROOT / "bench" / "data" / "eval" / "math500-cot-bon8-100.jsonl.gz"


def auroc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def make_data() -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from rewardsvc.trainers.examples import read_files, split_rows
    from rewardsvc.trainers.prepare import default_prm_config

    cfg = default_prm_config(OUT / "unused")

    def group(r: dict[str, Any]) -> str:
        return str(r.get("idx") or r.get("original_question") or r.get("prompt") or id(r))

    _, held = split_rows(read_files(cfg.train_file), cfg.eval_fraction, cfg.split_seed, key=group)
    correct, every = [], []
    with gzip.open(BON, "rt") as f:
        for row in map(json.loads, f):
            for k, (response, ok) in enumerate(zip(row["code"], row["score"])):
                steps = [s.strip() for s in response.split("\n\n") if s.strip()]
                rec = {"id": f"{row['idx']}-{k}", "problem": row["question"], "steps": steps,
                       "label": -1 if ok else len(steps) - 1, "subset": "math500", "final_answer_right": ok}
                every.append(rec)
                if ok:
                    correct.append(rec)
    return {"prmbench": write_jsonl(OUT / "data" / "prmbench-heldout.jsonl", held),
            "math500-correct": write_jsonl(OUT / "data" / "math500-correct.jsonl", correct),
            "math500-all": write_jsonl(OUT / "data" / "math500-all.jsonl", every)}


def run_eval(args: argparse.Namespace, config: Path, data: list[Path], report: Path) -> dict[str, Any]:
    env = dict(os.environ)
    if args.code:
        env["PYTHONPATH"] = str(Path(args.code).resolve())
    cmd = [sys.executable, "-m", "rewardsvc.cli", "eval", "--scorer", "prm", "--suite", "steps", "--config",
           str(config), "--report", str(report), "--no-progress", "--batch-size", "16", "--data", *map(str, data)]
    t0 = time.perf_counter()
    # `python -m` puts the working directory first on sys.path: run from the tree being measured.
    subprocess.run(cmd, cwd=Path(args.code).resolve() if args.code else ROOT, env=env, check=True)
    out = json.loads((report / "report.json").read_text())
    out["wall_s"] = time.perf_counter() - t0
    return out


def ood_numbers(results: Path, data: Path) -> dict[str, Any]:
    rows = {r["id"]: r for r in map(json.loads, data.read_text().splitlines())}
    scored = {r["id"]: r for r in map(json.loads, results.read_text().splitlines())}
    out: dict[str, Any] = {"n": len(rows), "n_right": sum(r["final_answer_right"] for r in rows.values()),
                           "n_errors": sum(1 for r in scored.values() if r.get("error"))}
    aggs = {"min": min, "mean": lambda s: sum(s) / len(s), "last": lambda s: s[-1],
            "length_baseline": None}
    for name, agg in aggs.items():
        pos, neg = [], []
        for rid, row in rows.items():
            res = scored.get(rid, {})
            if agg is None:
                value = -float(len(row["steps"]))
            elif res.get("step_scores"):
                value = agg(res["step_scores"])
            else:
                continue
            (pos if row["final_answer_right"] else neg).append(value)
        out[f"auroc_{name}"] = auroc(pos, neg)
    # Best-of-8 by the min-aggregated score (ties broken at random, seeded) vs picking at random.
    rng = random.Random(0)
    by_problem: dict[str, list[tuple[float, bool]]] = {}
    for rid, row in rows.items():
        steps = scored.get(rid, {}).get("step_scores") or [0.0]
        by_problem.setdefault(rid.rsplit("-", 1)[0], []).append((min(steps), row["final_answer_right"]))
    hits = 0.0
    for cands in by_problem.values():
        best = max(s for s, _ in cands)
        top = [ok for s, ok in cands if s == best]
        hits += rng.choice(top)
    out["best_of_8_accuracy"] = hits / len(by_problem)
    out["random_pick_accuracy"] = sum(ok for c in by_problem.values() for _, ok in c) / len(rows)
    return out


def f3(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def write_results(runs: list[str], trainer_dirs: list[str], note: str = "") -> None:
    """The RESULTS.md section from finished runs' summaries and training runs' results.json."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import write_section

    rows = [json.loads((OUT / r / "summary.json").read_text()) for r in runs]
    lines = ["`rewardsvc eval --suite steps` on PRMBench's held-out processes plus the MATH-500 BoN responses "
             "with a right final answer (870 solutions, up to ~4,000 MiniLM tokens; label: every step correct), "
             "scorer max_length 512:", "",
             "| run | model | code | items | rejected for length | first-error F1 | acc. erroneous | acc. correct | "
             "step F1 | step F1 (wrong steps) | PRMScore |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = r["steps"]
        lines.append(f"| {r['name']} | {r['model']} | {r['code']} | {st['items']} | {st['rejected']} | "
                     f"{f3(st['processbench_f1'])} | {f3(st['accuracy_erroneous'])} | {f3(st['accuracy_correct'])} | "
                     f"{f3(st['step_f1'])} | {f3(st['step_negative_f1'])} | {f3(st['prm_score'])} |")
    lines += ["", "Out of distribution, MATH-500 BoN-8 (Qwen2.5-Math samples, 800 responses, "
              f"{rows[0]['ood_math500']['n_right']} with a right final answer): AUROC of the solution score "
              "against the final answer (0.5 = chance; errors = items not scored, left out), best-of-8 by the "
              "min score vs a random pick, and a baseline that needs no model (fewer steps ranked higher):", "",
              "| run | not scored | AUROC min | AUROC mean | AUROC last | length baseline | best-of-8 | random pick |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o = r["ood_math500"]
        lines.append(f"| {r['name']} | {o['n_errors']} | {f3(o['auroc_min'])} | {f3(o['auroc_mean'])} | "
                     f"{f3(o['auroc_last'])} | {f3(o['auroc_length_baseline'])} | {f3(o['best_of_8_accuracy'])} | "
                     f"{f3(o['random_pick_accuracy'])} |")
    if trainer_dirs:
        keys = ("step_auroc", "solution_auroc", "prm_score", "first_error_f1", "step_f1", "step_f1_neg", "solutions")
        lines += ["", "Trainer runs (each model's results.json): held-out problems of the trained categories "
                  "(in distribution) and, where the run held whole PRMBench error categories out of training, "
                  "those categories (eval_ood_*):", "",
                  "| run | held-out categories | " + " | ".join(keys) + " | ood " + " | ood ".join(keys) + " |",
                  "|---|---|" + "---|" * (2 * len(keys))]
        for d in trainer_dirs:
            res = json.loads((Path(d) / "results.json").read_text())
            cfg = yaml.safe_load((Path(d) / "train_config.yaml").read_text())
            lines.append(f"| {Path(d).name} | {cfg.get('holdout_categories') or '-'} | "
                         + " | ".join(f3(res.get('eval_' + k)) for k in keys) + " | "
                         + " | ".join(f3(res.get('eval_ood_' + k, '-')) for k in keys) + " |")
    loads = "; ".join(f"{r['name']}: {r['load_before'][0]}-{r['load_after'][0]}" for r in rows)
    lines += ["", f"1-minute load average before/after each scoring run: {loads}."]
    if note:
        lines += ["", note]
    write_section("Default PRM: long and out-of-distribution solutions (prm_long.py)",
                  "python bench/prm_long.py --name NAME [--model M] [--code DIR]; then --write NAMES", "\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", help="label of this run (reports/prm_long/NAME/)")
    p.add_argument("--write", nargs="+", metavar="RUN", help="write the RESULTS.md section from these runs")
    p.add_argument("--note", help="--write: a file whose text goes under the tables (what the runs are)")
    p.add_argument("--trainer-results", nargs="*", default=[], metavar="DIR",
                   help="--write: also list these training runs' results.json (in-distribution, held-out categories)")
    p.add_argument("--model", default="cache:default-prm", help="the PRM to serve")
    p.add_argument("--code", help="run rewardsvc from this source tree (e.g. an older commit's `git archive`)")
    p.add_argument("--max-length", type=int, default=512)
    args = p.parse_args()
    if args.write:
        write_results(args.write, args.trainer_results, Path(args.note).read_text() if args.note else "")
        return 0
    if not args.name:
        p.error("--name is required to score")
    data = make_data()
    run_dir = OUT / args.name
    config = run_dir / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump({"scorers": {"prm": {
        "type": "prm", "model": args.model, "format": "token_classification", "step_separator": "\n",
        "max_length": args.max_length, "device": "cpu"}}}))
    load = os.getloadavg()
    steps = run_eval(args, config, [data["prmbench"], data["math500-correct"]], run_dir / "steps")
    ood_report = run_eval(args, config, [data["math500-all"]], run_dir / "ood")
    ood = ood_numbers(run_dir / "ood" / "results.jsonl", data["math500-all"])
    m = steps["metrics"]
    summary = {
        "name": args.name, "model": args.model, "code": args.code or "this checkout",
        "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
        "steps": {"items": steps["n_items"], "rejected": steps["n_errors"], "errors_by_code": steps["errors_by_code"],
                  "processbench_f1": m["processbench_f1"], "accuracy_erroneous": m["accuracy_erroneous"],
                  "accuracy_correct": m["accuracy_correct"], "prm_score": m["prm_score"],
                  "step_f1": m["steps"]["f1"], "step_negative_f1": m["steps"]["negative_f1"],
                  "wall_s": round(steps["wall_s"], 1)},
        "ood_math500": {**ood, "wall_s": round(ood_report["wall_s"], 1)},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

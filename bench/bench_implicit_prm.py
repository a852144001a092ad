"""The default config's implicit PRM on held-out GSM8K solutions: do its step scores separate correct
from incorrect solutions? Through a real server, beside a training-free baseline in the same run.

    .venv/bin/python bench/bench_implicit_prm.py [--problems N] [--first P]

Items: GSM8K test problems P .. P+N-1 (default 400..; the implicit PRM trained on problems 0-399
only) with their 4 labelled model solutions each (bench/data/eval/gsm8k-test-model-solutions).
Scored: `implicit_prm` as the default config hosts it (cache:default-implicit-prm against the bundled
SmolLM2-135M-Instruct), and the `confidence` scorer (crew_mean, the same bundled model, no training).
Reported: AUROC of the summed reward (`score`), of the weakest step (min of `step_scores`) and of the
mean step, for correct vs incorrect solutions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from common import write_section
from support import ServerProcess

from rewardsvc.client import RewardClient

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "bench" / "data" / "eval" / "gsm8k-test-model-solutions.jsonl.gz"
MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def auroc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg)) if pos and neg else 0.5


def auroc_se(a: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil's standard error of an AUROC."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg))


def items(first: int, problems: int) -> tuple[list[dict], list[bool]]:
    out, labels = [], []
    with gzip.open(SOLUTIONS, "rt") as f:
        for p, line in enumerate(f):
            if p < first:
                continue
            if p >= first + problems:
                break
            row = json.loads(line)
            for m in MODELS:
                out.append({"id": f"{p}-{m}", "prompt": row["question"], "response": row[m]["solution"],
                            "group_id": str(p)})
                labels.append(bool(row[m]["is_correct"]))
    return out, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--first", type=int, default=400, help="first problem (0-399 are the training problems)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    default = yaml.safe_load((REPO / "rewardsvc" / "default.yaml").read_text())["scorers"]
    config = {"scorers": {"implicit_prm": default["implicit_prm"], "confidence": default["confidence"]}}
    batch, labels = items(args.first, args.problems)
    rows = []
    with ServerProcess(config) as srv, RewardClient(srv.address, timeout_s=3600) as client:
        for name in ("implicit_prm", "confidence"):
            t0 = time.perf_counter()
            results = client.score(name, batch)
            elapsed = time.perf_counter() - t0
            bad = [r for r in results if r.error is not None]
            assert not bad, bad[:3]
            views = {"score": [r.score for r in results]}
            if name == "implicit_prm":
                views["min step"] = [min(r.step_scores) for r in results]
                views["mean step"] = [sum(r.step_scores) / len(r.step_scores) for r in results]
            for view, values in views.items():
                pos = [v for v, y in zip(values, labels) if y]
                neg = [v for v, y in zip(values, labels) if not y]
                a = auroc(pos, neg)
                rows.append(f"| {name} | {view} | {a:.3f} ± {auroc_se(a, len(pos), len(neg)):.3f} | "
                            f"{len(batch) / elapsed:.2f} |")
                print(rows[-1], flush=True)
    n_pos = sum(labels)
    body = "\n".join([
        f"GSM8K test problems {args.first}-{args.first + args.problems - 1} (never trained on), 4 labelled model "
        f"solutions each: {len(batch)} solutions, {n_pos} correct. The default config's stanzas, through a real "
        "server. AUROC ± Hanley-McNeil standard error; 0.5 = chance.", "",
        "| scorer | value | AUROC correct vs incorrect | items/s |", "|---|---|---|---|", *rows])
    print(body)
    if not args.no_write:
        write_section("Implicit PRM on held-out GSM8K solutions",
                      "heavy .venv/bin/python bench/bench_implicit_prm.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()

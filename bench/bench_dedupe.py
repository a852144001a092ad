"""GRPO-shaped math load with and without dedupe, and the result cache's hit path, one run.

    .venv/bin/python bench/bench_dedupe.py [--problems N] [--groups-per-request G] [--rounds R]

Loads (one group_id per problem, each request G whole groups, sent one request at a time as a
trainer's reward step does):
  gsm8k-resampled  8 rollouts per GSM8K test problem drawn with replacement (seeded) from the
                   problem's 4 model solutions in bench/data/eval (only 4 exist per problem, so
                   some rollouts repeat a solution word for word, as a policy sampling at low
                   temperature does)
  gsm8k-distinct   the 4 model solutions + the reference solution: 5 different texts per problem,
                   so every saving comes from equal final answers
  math500-bon8     100 MATH problems x 8 sampled CoT responses (Qwen2.5-Math's BoN example data)
Baseline and dedupe run on two real servers (server.dedupe false / true, same math workers).
Each round starts both afresh and sends them a previous step (other GSM8K problems) before the
clock; then the load, every (answer, reference) pair new to the workers, as in a training step with
new problems ("new problems"); then the same load again ("same again": sympy's caches in the
workers hold parts of it). The results of both must be identical item for item.
Cache: a server with result_cache_items; the latency of a one-group request computed, then the
same request answered from the cache.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
from common import write_section
from support import ServerProcess

from rewardsvc import messages
from rewardsvc.types import Item
from rewardsvc.v1 import reward_pb2 as pb
from rewardsvc.v1 import reward_pb2_grpc as pb_grpc

EVAL = Path(__file__).parent / "data" / "eval"
MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def gsm8k(problems: int, distinct: bool, seed: int = 0) -> list[list[Item]]:
    rng = random.Random(seed)
    groups = []
    with gzip.open(EVAL / "gsm8k-test-model-solutions.jsonl.gz", "rt") as f:
        for p, line in zip(range(problems), f):
            row = json.loads(line)
            answer = re.search(r"A:\s*(.+?)\s*$", row["ground_truth"]).group(1)
            sols = [row[m]["solution"] for m in MODELS]
            texts = [*sols, row["ground_truth"]] if distinct else [rng.choice(sols) for _ in range(8)]
            groups.append([Item(id=f"{p}-{k}", prompt=row["question"], response=t, reference=answer, group_id=str(p))
                           for k, t in enumerate(texts)])
    return groups


def math500(problems: int) -> list[list[Item]]:
    groups = []
    with gzip.open(EVAL / "math500-cot-bon8-100.jsonl.gz", "rt") as f:
        for p, line in zip(range(problems), f):
            row = json.loads(line)
            responses = row["code"] if isinstance(row["code"], list) else ast.literal_eval(row["code"])
            groups.append([Item(id=f"{p}-{k}", prompt=row["question"], response=r, reference=row["answer"],
                                group_id=str(p)) for k, r in enumerate(responses)])
    return groups


def requests_of(groups: list[list[Item]], per_request: int) -> list[list[Item]]:
    return [[it for g in groups[i:i + per_request] for it in g] for i in range(0, len(groups), per_request)]


def run_load(address: str, batches: list[list[Item]]) -> tuple[float, list[pb.Result], int, int]:
    """Seconds, results in order, deduplicated items, flat groups. The requests are built before the
    clock starts: the load generator's own protobuf building would otherwise share the 2 cores and the
    critical path with the server it measures."""
    results: list[pb.Result] = []
    saved = flat = 0
    requests = [pb.ScoreRequest(scorer="math", items=[messages.item_to_pb(i) for i in batch]) for batch in batches]
    with grpc.insecure_channel(address) as ch:
        stub = pb_grpc.RewardServiceStub(ch)
        t0 = time.perf_counter()
        for request in requests:
            resp = stub.Score(request, timeout=600)
            results.extend(resp.results)
            saved += resp.metadata.deduplicated_items
            flat += resp.metadata.health.flat_groups
        return time.perf_counter() - t0, results, saved, flat


def cache_latency(address: str, groups: list[list[Item]]) -> tuple[list[float], list[float], int]:
    """Per one-group request: ms computed (first time), ms from the cache (second time), hits."""
    computed, cached, hits = [], [], 0
    with grpc.insecure_channel(address) as ch:
        stub = pb_grpc.RewardServiceStub(ch)
        for g in groups:
            req = pb.ScoreRequest(scorer="math", items=[messages.item_to_pb(i) for i in g])
            for out in (computed, cached):
                t0 = time.perf_counter()
                resp = stub.Score(req, timeout=600)
                out.append((time.perf_counter() - t0) * 1000)
            hits += resp.metadata.cache_hits
    return computed, cached, hits


def repeat_cost(groups: list[list[Item]], pairs: int = 100) -> tuple[float, float]:
    """Median ms of a math-verify check of an (answer, reference) pair seen for the first time, and of
    the same pair again in the same process (math-verify caches its parses): what a duplicate costs a
    worker that already checked it."""
    from rewardsvc.verifiers.math.check import check
    from rewardsvc.verifiers.math.extract import extract_answer, reference_answer

    seen: dict[tuple[str, str], None] = {}
    for g in groups:
        for it in g:
            answer, _ = extract_answer(it.response_text)
            if answer and it.reference:
                seen.setdefault((reference_answer(it.reference), answer), None)
    first, again = [], []
    check("1", "1", 3)  # imports
    for gold, pred in list(seen)[:pairs]:
        for out in (first, again):
            t0 = time.perf_counter()
            check(gold, pred, 3)
            out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(first), statistics.median(again)


def speedup(times: dict[tuple[str, str], list[float]], run: str) -> str:
    """Median (range) of the rounds' ratios: each round's two servers ran back to back, so the ratio
    within a round is the paired measure; the machine's state moves between rounds."""
    ratios = [b / d for b, d in zip(times["baseline", run], times["dedupe", run], strict=True)]
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=200, help="GSM8K problems per load (MATH500 has 100)")
    ap.add_argument("--groups-per-request", type=int, default=16, help="groups of 8 per request (16 = 128 items)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per load, each on fresh servers")
    ap.add_argument("--workers", type=int, default=2, help="math worker processes of each server")
    ap.add_argument("--cache-groups", type=int, default=50, help="one-group requests timed for the cache")
    ap.add_argument("--no-write", action="store_true", help="print, don't write bench/RESULTS.md")
    args = ap.parse_args()

    loads = {
        "gsm8k-resampled": gsm8k(args.problems, distinct=False),
        "gsm8k-distinct": gsm8k(args.problems, distinct=True),
        "math500-bon8": math500(100),
    }
    math = {"type": "math", "workers": args.workers, "timeout_s": 10.0}
    lines = [
        f"Math scorer, {args.workers} worker processes per server; requests of {args.groups_per_request} groups "
        "sent one after another; items/s over the whole load, best of the rounds; speed-up: median of the rounds' "
        "paired ratios (range). Each round on fresh servers that first served a previous step of other GSM8K "
        "problems. New problems: every pair new to the workers (a training step). Same again: the load a "
        "second time (sympy's caches in the workers hold parts of it).", "",
        "| load | items | distinct (answer, reference) per group | new problems: baseline items/s | dedupe items/s "
        "| speed-up | same again: baseline items/s | dedupe items/s | speed-up | deduplicated "
        "| identical results |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # "A previous step" for each server before the clock: other GSM8K problems, and a few LaTeX answers
    # for math-verify's grammar. A just-started server pays one-time costs in its first step (the
    # first LaTeX parse alone takes ~0.2 s per worker) that a training run's long-lived server doesn't.
    before = requests_of(gsm8k(args.problems + 100, distinct=False, seed=1)[args.problems:], args.groups_per_request)
    before.append([Item(id=f"w{k}", response=f"so \\boxed{{{a}}}", reference=a, group_id="w")
                   for k, a in enumerate(["7", "\\frac{3}{7}", "x^2+7", "0.5", "1.25"] * 2)])
    for name, groups in loads.items():
        batches = requests_of(groups, args.groups_per_request)
        n = sum(len(b) for b in batches)
        times: dict[tuple[str, str], list[float]] = {}
        same = True
        saved = 0
        for r in range(args.rounds):
            results = {}
            for mode in ("baseline", "dedupe") if r % 2 == 0 else ("dedupe", "baseline"):
                with ServerProcess({"server": {"dedupe": mode == "dedupe"}, "scorers": {"math": math}}) as srv:
                    run_load(srv.address, before)
                    for run in ("new", "again"):
                        t, results[mode, run], got, _ = run_load(srv.address, batches)
                        times.setdefault((mode, run), []).append(t)
                        saved = got if mode == "dedupe" else saved
            for run in ("new", "again"):
                same = same and all(
                    a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
                    for a, b in zip(results["baseline", run], results["dedupe", run], strict=True))
        answers = iter(messages.result_from_pb(r).details.get("extracted_answer") for r in results["dedupe", "new"])
        distinct = statistics.mean(len({next(answers) for _ in g}) for g in groups)
        rate = {k: n / min(v) for k, v in times.items()}

        lines.append(f"| {name} | {n} | {distinct:.2f} | {rate['baseline', 'new']:.0f} | {rate['dedupe', 'new']:.0f} "
                     f"| **{speedup(times, 'new')}** | {rate['baseline', 'again']:.0f} | {rate['dedupe', 'again']:.0f} "
                     f"| {speedup(times, 'again')} | {saved} ({saved / n:.0%}) | {'yes' if same else 'NO'} |")
        print(lines[-1], flush=True)
    cache_groups = loads["gsm8k-resampled"][: args.cache_groups]
    with ServerProcess({"server": {"result_cache_items": 100_000}, "scorers": {"math": math}}) as srv:
        run_load(srv.address, requests_of(loads["gsm8k-resampled"][-2:], 1))  # warm the pool, not the groups timed
        computed, cached, hits = cache_latency(srv.address, cache_groups)
        # The per-item work no saving removes: requests answered wholly from the cache (conversion,
        # item checks, answer extraction for the keys, copies, reward health, gRPC both ways).
        batches = requests_of(loads["gsm8k-resampled"], args.groups_per_request)
        run_load(srv.address, batches)
        floor = min(run_load(srv.address, batches)[0] for _ in range(args.rounds)) / len(batches)
    q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1]  # noqa: E731
    lines += ["", f"Result cache: {len(cache_groups)} one-group requests (8 items each, GSM8K resampled), each sent "
              f"twice to a server with result_cache_items=100000; {hits} of {8 * len(cache_groups)} items of the "
              "second sends came from the cache.", "",
              "| path | p50 ms | p90 ms | mean ms |", "|---|---|---|---|",
              f"| computed (dedupe + math workers) | {q(computed, 50):.2f} | {q(computed, 90):.2f} | "
              f"{statistics.mean(computed):.2f} |",
              f"| cache hit | {q(cached, 50):.2f} | {q(cached, 90):.2f} | {statistics.mean(cached):.2f} |"]
    first, again = repeat_cost(loads["gsm8k-distinct"])
    per_request = args.groups_per_request * 8
    lines += ["", f"What bounds the saving: a {per_request}-item request answered wholly from the result cache (no "
              f"check at all) takes {1000 * floor:.1f} ms ({1e6 * floor / per_request:.0f} us per item: conversion, "
              "item checks, answer extraction for the keys, copies, reward health, gRPC both ways); dedupe removes "
              "checks, not that. A math-verify check of a GSM8K pair the process has not seen costs "
              f"{first:.2f} ms (median of 100, in-process; decimals cost several ms, plain integers skip the LaTeX "
              f"grammar), the same pair again {again:.2f} ms: math-verify keeps its last 20 parses, so a "
              "duplicate the baseline sends to the worker that just checked it is cheap too."]
    print("\n".join(lines[-8:]))
    if not args.no_write:
        cmd = "heavy .venv/bin/python bench/bench_dedupe.py " + " ".join(sys.argv[1:])
        write_section("Dedupe and result cache (GRPO-shaped math)", cmd.strip(), "\n".join(lines))


if __name__ == "__main__":
    main()

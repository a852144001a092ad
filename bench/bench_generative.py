"""Generative scorer: generation through the service vs the same calls made directly, and k samples
sharing one prompt vs k independent calls.

(1) Service overhead. `items` GSM8K judge items (pointwise, default preset, greedy, `--tokens` new
    tokens each) scored through ScoringService (tokenising, the DynamicBatcher set to take them as
    one batch, verdict parsing, results), against the same token contexts given directly to the
    backend's `sample()` in one call. Greedy, so both produce the same tokens (checked).
(2) k = 4 samples of one judge prompt at temperature 0.8 on the transformers backend:
      shared       one request with n = 4: the prompt runs once, its KV cache is copied to 4 rows
                   that decode as one batch (`prefix_sharing: true`, the default)
      independent  4 requests of n = 1 with their own seeds: 4 generate calls of one row each
                   (`prefix_sharing: false` does exactly this)
      batched      4 copies of the prompt as one batch of 4 rows (no sharing: the prompt runs 4x)
    direct on the backend and, for shared / independent, through the service. Sampled lengths
    vary (EOS), so the table gives generated tokens as well as seconds.
Rounds alternate the order of the paths; medians are reported. vLLM (`n` sampling with prefix
caching) needs a GPU and is not run here.

    python bench/bench_generative.py [--items 8] [--tokens 32] [--k-tokens 48] [--prompts 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_section
from rewardsvc.backends.causal_lm import GenerateRequest
from rewardsvc.config import parse_config
from rewardsvc.scorers.generative import GenerativeOptions
from rewardsvc.service import ScoringService
from rewardsvc.types import Item

MODEL = "bundled:smollm2-135m-instruct"
DATA = Path(__file__).with_name("data") / "gsm8k-test.jsonl"


def judge_items(n: int) -> list[Item]:
    """Real GSM8K questions with their reference solutions as the responses to judge."""
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][:n]
    return [Item(id=f"q{i}", prompt=r["question"], response=r["answer"]) for i, r in enumerate(rows)]


def median_s(samples: list[float]) -> float:
    return statistics.median(samples)


async def main(args: argparse.Namespace) -> str:
    start_load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    stanza = {"type": "generative", "model": MODEL, "max_new_tokens": args.tokens,
              # one batch for the whole request, as the direct call makes it
              "batching": {"max_batch_tokens": 1 << 20, "max_batch_size": 256, "min_fill_ratio": 0.0,
                           "max_wait_ms": 1}}
    config = parse_config({"scorers": {
        "gen": stanza,
        "gen_k": {**stanza, "max_new_tokens": args.k_tokens, "k": 4, "temperature": 0.8},
        "gen_k_alone": {**stanza, "max_new_tokens": args.k_tokens, "k": 4, "temperature": 0.8,
                        "prefix_sharing": False},
    }})
    async with ScoringService(config) as service:
        scorer = service.get("gen")
        lm = scorer.lm
        assert lm is not None

        def contexts(items: list[Item], name: str) -> list[list[int]]:
            s = service.get(name)
            plan = s.plan(GenerativeOptions())
            return [s.encode(s.render(s.prompts_for(it, plan)[0][1])) for it in items]

        # ---- (1) service vs direct, greedy ----
        items = judge_items(args.items)
        ctx = contexts(items, "gen")
        direct_reqs = [GenerateRequest(context=c, max_new_tokens=args.tokens) for c in ctx]
        await service.score("gen", items)  # warm-up: the first batch of a shape costs extra on CPU
        lm.sample(direct_reqs)
        t_service, t_direct = [], []
        same = True
        for r in range(args.rounds):
            order = ("service", "direct") if r % 2 == 0 else ("direct", "service")
            for path in order:
                t0 = time.perf_counter()
                if path == "service":
                    res = await service.score("gen", items)
                    t_service.append(time.perf_counter() - t0)
                    got_service = [x.details["samples"][0]["tokens"] for x in res]
                else:
                    out = lm.sample(direct_reqs)
                    t_direct.append(time.perf_counter() - t0)
                    got_direct = [len(s[0]) for s in out]
            same = same and got_service == got_direct
        n_tokens = sum(got_direct)
        ms, md = median_s(t_service), median_s(t_direct)

        # ---- (2) k = 4: shared prompt vs independent calls ----
        k_items = judge_items(args.items + args.prompts)[args.items:]
        k_ctx = contexts(k_items, "gen_k")
        kt = args.k_tokens
        times: dict[str, list[float]] = {p: [] for p in ("shared", "independent", "batched", "service shared",
                                                         "service independent")}
        toks: dict[str, list[int]] = {p: [] for p in times}
        paths = list(times)
        lm.sample([GenerateRequest(k_ctx[0], 2, temperature=0.8, seed=0, n=4)])  # warm-up
        for r in range(args.rounds):
            for path in paths[r % len(paths):] + paths[: r % len(paths)]:
                seed = 1000 * r
                t0 = time.perf_counter()
                generated = 0
                for c, item in zip(k_ctx, k_items):
                    if path == "shared":
                        out = lm.sample([GenerateRequest(c, kt, temperature=0.8, seed=seed, n=4)])[0]
                    elif path == "independent":
                        out = [lm.sample([GenerateRequest(c, kt, temperature=0.8, seed=seed + j)])[0][0]
                               for j in range(4)]
                    elif path == "batched":
                        out = [o[0] for o in lm.sample([GenerateRequest(c, kt, temperature=0.8, seed=seed)] * 4)]
                    else:
                        name = "gen_k" if path == "service shared" else "gen_k_alone"
                        (res,) = await service.score(name, [item], {"seed": seed})
                        out = [[0] * s["tokens"] for s in res.details["samples"]]
                    assert len(out) == 4
                    generated += sum(len(o) for o in out)
                times[path].append(time.perf_counter() - t0)
                toks[path].append(generated)

    prompt_tokens = statistics.mean(len(c) for c in k_ctx)
    end_load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"Load average (1/5/15 min) at the start: {start_load}; at the end: {end_load}.",
        "",
        f"(1) Service vs direct: {len(items)} GSM8K judge items (pointwise, default preset, mean prompt "
        f"{statistics.mean(len(c) for c in ctx):.0f} tokens), greedy, up to {args.tokens} new tokens each "
        f"({n_tokens} generated), one batch; {args.rounds} alternating rounds, medians.",
        "",
        "| path | seconds | generated tokens/s | vs direct |",
        "|---|---|---|---|",
        f"| backend `sample()` directly | {md:.2f} | {n_tokens / md:.1f} | 1.00x |",
        f"| through ScoringService (`score`) | {ms:.2f} | {n_tokens / ms:.1f} | {md / ms:.2f}x |",
        "",
        f"Same tokens both ways: {'yes' if same else 'NO'}. Goal >= 0.9x.",
        "",
        f"(2) k = 4 samples at temperature 0.8 of one judge prompt ({len(k_ctx)} prompts in turn, mean "
        f"{prompt_tokens:.0f} prompt tokens, up to {kt} new tokens per sample), transformers backend; "
        f"{args.rounds} rounds, medians.",
        "",
        "| path | seconds for all prompts | generated tokens | samples/s | vs independent |",
        "|---|---|---|---|---|",
    ]
    base = median_s(times["independent"])
    for p in paths:
        t = median_s(times[p])
        n_samples = 4 * len(k_ctx)
        lines.append(f"| {p} | {t:.2f} | {statistics.median(toks[p]):.0f} | {n_samples / t:.2f} | {base / t:.2f}x |")
    lines += [
        "",
        "shared: one request, n = 4 (prompt once, 4 rows decode together); independent: 4 calls of one row; "
        "batched: the prompt 4x in one batch; service rows: the scorer with prefix_sharing true / false. "
        "Goal >= 2x for shared vs independent. vLLM: not run (no GPU here).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--k-tokens", type=int, default=48)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    a = ap.parse_args()
    body = asyncio.run(main(a))
    print(body)
    if not a.no_write:
        cmd = "python bench/bench_generative.py " + " ".join(sys.argv[1:])
        write_section("Generative scorer (bench_generative.py)", cmd.strip(), body)

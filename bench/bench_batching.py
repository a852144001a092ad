"""Classifier throughput (tokens/s): the service with concurrent clients vs the model in-process.

Three paths score the same HH-RLHF conversations with the same reward model, side by side in one
run, each rendered and tokenised by the same function (scorers/render.py), tokenisation included:

    service     the real server (subprocess, loopback gRPC); 8 concurrent AsyncRewardClients
                each send requests of a few items, as RL workers do; the server's DynamicBatcher
                turns them into length-sorted batches under max_batch_tokens
    in-process  (a) the same model, all items known up front, sorted by length and cut into
                batches under the token budget that was fastest in a sweep (the upper bound)
    naive       (b) one forward per item, as a reward function called per rollout does

Rounds interleave the paths (order rotated each round) so load on a shared machine hits them
alike; the reported figure per path is the median over rounds.

    python bench/bench_batching.py [--model cache:default-rm] [--pairs 128] [--rounds 5] [--device auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from common import write_section  # noqa: E402
from rewardsvc.types import Item  # noqa: E402

DATA = REPO / "bench" / "data" / "hh-rlhf-helpful-base-test-300.jsonl"


def load_items(pairs: int) -> list[Item]:
    from rewardsvc.scorers.render import hh_prompt_response

    items = []
    for i, line in enumerate(DATA.read_text().splitlines()[:pairs]):
        row = json.loads(line)
        for side in ("chosen", "rejected"):
            prompt, response = hh_prompt_response(row[side])
            items.append(Item(id=f"{i}-{side}", prompt=prompt, response=response))
    return items


def pick_model(requested: str | None, tmp: Path) -> tuple[str, str]:
    """(model, label): the trained default RM when present, else MiniLM with a random head."""
    from rewardsvc.model_refs import resolve_model_path

    if requested:
        return requested, requested
    try:
        resolve_model_path("cache:default-rm")
        return "cache:default-rm", "cache:default-rm (MiniLM Bradley-Terry RM trained at install)"
    except FileNotFoundError:
        pass
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = resolve_model_path("bundled:all-minilm-l6-v2")
    torch.manual_seed(0)
    out = tmp / "minilm-rm-random-head"
    AutoModelForSequenceClassification.from_pretrained(src, num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return str(out), "all-MiniLM-L6-v2 + random-init 1-logit head (cache:default-rm absent; throughput only)"


def batches_under(lengths: list[tuple[int, int]], budget: int, max_size: int) -> list[list[int]]:
    """Length-sorted indices cut into batches whose padded size (n x longest) fits `budget`."""
    out: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for idx, n in sorted(lengths, key=lambda x: x[1]):
        if cur and (max(longest, n) * (len(cur) + 1) > budget or len(cur) >= max_size):
            out.append(cur)
            cur, longest = [], 0
        cur.append(idx)
        longest = max(longest, n)
    if cur:
        out.append(cur)
    return out


Timing = tuple[float, int, list[float]]  # seconds, tokens, scores


def run_inprocess(backend: Any, items: list[Item], max_length: int, budget: int, max_size: int) -> Timing:
    from rewardsvc.scorers.render import encode_conversation

    t0 = time.perf_counter()
    encoded = [encode_conversation(backend.tokenizer, it.prompt, it.response, max_length).ids for it in items]
    scores = [0.0] * len(items)
    for batch in batches_under([(i, len(e)) for i, e in enumerate(encoded)], budget, max_size):
        for i, row in zip(batch, backend.sequence_logits([encoded[i] for i in batch])):
            scores[i] = row[0]
    return time.perf_counter() - t0, sum(map(len, encoded)), scores


def run_naive(backend: Any, items: list[Item], max_length: int) -> Timing:
    from rewardsvc.scorers.render import encode_conversation

    t0 = time.perf_counter()
    tokens, scores = 0, []
    for it in items:
        ids = encode_conversation(backend.tokenizer, it.prompt, it.response, max_length).ids
        tokens += len(ids)
        scores.append(backend.sequence_logits([ids])[0][0])
    return time.perf_counter() - t0, tokens, scores


async def run_service(address: str, items: list[Item], clients: int, request_items: int) -> Timing:
    from rewardsvc.client import AsyncRewardClient

    chunks = [items[i : i + request_items] for i in range(0, len(items), request_items)]
    queue: asyncio.Queue[list[Item]] = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)
    results: dict[str, Any] = {}
    conns = [AsyncRewardClient(address, timeout_s=600) for _ in range(clients)]
    await asyncio.gather(*(c.score("rm", items[:1]) for c in conns))  # connect + warm up

    async def worker(client: Any) -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            for it, res in zip(chunk, await client.score("rm", chunk)):
                if not res.ok:
                    raise RuntimeError(f"item {it.id}: {res.error}")
                results[it.id] = res

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return elapsed, int(sum(r.details["tokens"] for r in results.values())), [results[it.id].score for it in items]


def batch_fill(srv: Any) -> tuple[float, float]:
    """(batches, fill ratio) of the server's rm batcher so far, from its /metrics."""
    values = {}
    for line in srv.metrics().splitlines():
        for key in ("rewardsvc_scorer_batches", "rewardsvc_scorer_batch_fill_ratio"):
            if line.startswith(key + '{scorer="rm"}'):
                values[key] = float(line.split()[-1])
    return values.get("rewardsvc_scorer_batches", 0.0), values.get("rewardsvc_scorer_batch_fill_ratio", 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: cache:default-rm, else MiniLM + random head")
    ap.add_argument("--pairs", type=int, default=128, help="HH-RLHF pairs (2 items each)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--request-items", type=int, default=8, help="items per client request")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--budgets", default="1024,2048,4096,8192,16384", help="max_batch_tokens values swept for (a)")
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto", help="auto (cuda if visible, else cpu), cpu, cuda")
    ap.add_argument("--no-write", action="store_true", help="don't write bench/RESULTS.md")
    args = ap.parse_args()

    from rewardsvc.backends.pooling import PoolingBackend
    from support import ServerProcess

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-batching-"))
    try:
        model, label = pick_model(args.model, tmp)
        items = load_items(args.pairs)
        backend = PoolingBackend(model, "sequence_classification", device=args.device)

        # (a) is "optimally sized": sweep the token budget on a slice, keep the fastest.
        sweep = {}
        probe = items[: min(len(items), 96)]
        run_inprocess(backend, probe[:8], args.max_length, 4096, args.max_batch_size)  # warm-up
        for budget in [int(b) for b in args.budgets.split(",")]:
            secs, toks, _ = run_inprocess(backend, probe, args.max_length, budget, args.max_batch_size)
            sweep[budget] = toks / secs
            print(f"sweep max_batch_tokens={budget}: {sweep[budget]:.0f} tok/s", flush=True)
        budget = max(sweep, key=sweep.get)

        config = {"scorers": {"rm": {
            "type": "classifier", "model": model, "device": args.device, "max_length": args.max_length,
            "batching": {"max_batch_tokens": budget, "max_batch_size": args.max_batch_size, "max_wait_ms": 5},
        }}}
        rates: dict[str, list[float]] = {"service": [], "inprocess": [], "naive": []}
        scores: dict[str, list[float]] = {}
        tokens = 0
        fill_before = fill_after = None
        with ServerProcess(config) as srv:
            fill_before = batch_fill(srv)
            paths = ["service", "inprocess", "naive"]
            for r in range(args.rounds):
                for name in paths[r % 3:] + paths[: r % 3]:
                    if name == "service":
                        secs, tokens, s = asyncio.run(
                            run_service(srv.address, items, args.clients, args.request_items)
                        )
                    elif name == "inprocess":
                        secs, tokens, s = run_inprocess(
                            backend, items, args.max_length, budget, args.max_batch_size
                        )
                    else:
                        secs, tokens, s = run_naive(backend, items, args.max_length)
                    rates[name].append(tokens / secs)
                    scores[name] = s
                    print(f"round {r + 1} {name}: {tokens / secs:.0f} tok/s ({secs:.1f}s)", flush=True)
            fill_after = batch_fill(srv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load_after = os.getloadavg()[0]
    med = {k: statistics.median(v) for k, v in rates.items()}
    diff = max(abs(a - b) for a, b in zip(scores["service"], scores["inprocess"]))
    ratio_a = med["service"] / med["inprocess"]
    ratio_b = med["service"] / med["naive"]
    per_round_a = [s / a for s, a in zip(rates["service"], rates["inprocess"])]
    per_round_b = [s / n for s, n in zip(rates["service"], rates["naive"])]
    ceiling_b = med["inprocess"] / med["naive"]
    # The warm-up call's batches are in fill_before; the rounds' fill is the rest (fill is cumulative).
    (b0, _), (b1, f1) = fill_before, fill_after
    service_batches = b1 - b0
    fmt = lambda xs: ", ".join(f"{x:.0f}" for x in xs)  # noqa: E731
    body = f"""
Model: {label}, on {backend.device} ({str(backend.dtype).removeprefix("torch.")}). Items: {len(items)} HH-RLHF helpful-base conversations ({args.pairs} pairs, chosen
and rejected), {tokens} tokens in all (max_length {args.max_length}), rendered and tokenised by
scorers/render.py in every path (tokenisation is inside the timings). {args.rounds} rounds, paths
interleaved; medians.

| path | tokens/s (median) | per round |
|---|---|---|
| service: real server, {args.clients} concurrent clients x {args.request_items}-item requests, max_batch_tokens {budget} | {med['service']:.0f} | {fmt(rates['service'])} |
| (a) in-process, all items length-sorted, best max_batch_tokens ({budget}) | {med['inprocess']:.0f} | {fmt(rates['inprocess'])} |
| (b) in-process naive loop, one item per forward | {med['naive']:.0f} | {fmt(rates['naive'])} |

Budget sweep for (a) on {len(probe)} items (tokens/s): {", ".join(f"{b}: {v:.0f}" for b, v in sweep.items())}.

- service / (a): **{ratio_a:.2f}x** (goal >= 0.9x; per round {", ".join(f"{x:.2f}" for x in per_round_a)})
- service / (b): **{ratio_b:.2f}x** (goal >= 5x; per round {", ".join(f"{x:.2f}" for x in per_round_b)})
- ceiling for (b) on this machine, (a) / (b): **{ceiling_b:.2f}x**: the best batches there are gain no more than this
- service batches: {service_batches:.0f} over {args.rounds} rounds ({args.rounds * (len(items) + args.clients) / max(service_batches, 1):.1f} items each, counting each round's {args.clients} warm-up items),
  real / padded tokens {f1:.3f} (min_fill_ratio: the scorer's default for its device)
- largest |service score - in-process score|: {diff:.2e}
- 1-minute load average at start / end: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} cores (other jobs
  share the machine: per-round spread is noise from them, hence interleaving and medians)

What the service adds is that small requests from many callers become (a)-like batches, so it
should land near (a), not above it. Goal (b) is a GPU-scale figure: a one-item forward leaves most
of a GPU idle, while on CPU cores a sequence of ~160 tokens already keeps them busy, so (a) / (b)
bounds what any batching can gain here. On CPU every pad token costs as much as a real one, which
is why the scorer bounds padding there (min_fill_ratio 0.9).
"""
    print(body)
    if not args.no_write:
        write_section("Classifier batching throughput (bench_batching.py)", "python bench/bench_batching.py",
                      body)


if __name__ == "__main__":
    main()

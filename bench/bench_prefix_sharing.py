"""GRPO-group prefix sharing: causal-LM scoring with vs without running each group's prompt once.

GRPO groups of 8 responses to one prompt, the prompt 4x the response length (real GSM8K text:
few-shot questions and solutions). Both paths score the same items with the `implicit_prm` scorer
(policy SmolLM2, reference a copy with 1% weight noise, so every batch is two real forward passes
and the scores are not trivially 0) in one process,
through the scorer's DynamicBatcher; they differ only in `prefix_sharing`. Rounds alternate the
order of the two paths; the table reports the median.

    python bench/bench_prefix_sharing.py [--groups 4] [--group-size 8] [--response-tokens 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_section  # noqa: E402
from rewardsvc.config import parse_config  # noqa: E402
from rewardsvc.service import ScoringService  # noqa: E402
from rewardsvc.types import Item  # noqa: E402

MODEL = "bundled:smollm2-135m-instruct"
DATA = Path(__file__).with_name("data") / "gsm8k-test.jsonl"


def build_items(tokenizer, groups: int, group_size: int, response_tokens: int, ratio: int) -> list[Item]:
    """`groups` prompts of ratio x response_tokens tokens, each with `group_size` distinct responses."""
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]

    def cut(text: str, n: int) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < n:
            raise ValueError(f"text too short for {n} tokens")
        return tokenizer.decode(ids[:n])

    items: list[Item] = []
    k = 0
    for g in range(groups):
        shots = ""
        while len(tokenizer(shots, add_special_tokens=False)["input_ids"]) < ratio * response_tokens + 8:
            row = rows[k % len(rows)]
            k += 1
            shots += f"Q: {row['question']}\nA: {row['answer']}\n\n"
        prompt = cut(shots, ratio * response_tokens - 4) + "\nQ: Solve the next problem.\nA:"
        for j in range(group_size):
            row = rows[(k + j) % len(rows)]
            items.append(Item(id=f"g{g}-{j}", prompt=prompt, response=" " + cut(row["answer"], response_tokens),
                              group_id=f"g{g}"))
        k += group_size
    return items


def perturbed_copy(directory: Path) -> str:
    """SmolLM2 with seeded 1% multiplicative weight noise: a real, different reference model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardsvc.backends.gguf import model_dir

    source = str(model_dir(MODEL))
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.01 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(source).save_pretrained(directory)
    return str(directory)


async def run(args: argparse.Namespace, reference: str) -> str:
    stanza = {"type": "implicit_prm", "model": MODEL, "reference_model": reference,
              "batching": {"max_batch_size": 64, "max_batch_tokens": 65536}}
    config = parse_config({"scorers": {"shared": {**stanza, "prefix_sharing": True},
                                       "unshared": {**stanza, "prefix_sharing": False}}})
    async with ScoringService(config) as service:
        scorer = service.get("shared")
        lm = scorer.lm
        items = build_items(scorer.tokenizer, args.groups, args.group_size, args.response_tokens, args.ratio)
        prompt_len = len(scorer.prompt_ids(items[0].prompt))
        response_len = [len(scorer.encode(it.response_text)) for it in items]
        real_tokens = sum(prompt_len + r for r in response_len)
        await service.score("shared", items[:2])  # warm-up: allocator, kernels
        times: dict[str, list[float]] = {"shared": [], "unshared": []}
        forward: dict[str, int] = {}
        scores: dict[str, list[float]] = {}
        for rnd in range(args.rounds):
            order = ["shared", "unshared"] if rnd % 2 == 0 else ["unshared", "shared"]
            for name in order:
                before = lm.stats.forward_tokens
                t0 = time.perf_counter()
                res = await service.score(name, items)
                times[name].append(time.perf_counter() - t0)
                forward[name] = lm.stats.forward_tokens - before
                scores[name] = [r.score for r in res]
                assert all(r.ok for r in res), [r.error for r in res if not r.ok]
                print(f"round {rnd} {name}: {times[name][-1]:.2f}s", file=sys.stderr, flush=True)
        agree = max(abs(a - b) for a, b in zip(scores["shared"], scores["unshared"]))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["unshared"] / med["shared"]
    load = os.getloadavg()[0]
    lines = [
        f"Items: {len(items)} = {args.groups} GRPO groups x {args.group_size} responses; prompt {prompt_len} tokens, "
        f"responses {min(response_len)}-{max(response_len)} tokens (prompt ~{args.ratio}x response; GSM8K text). "
        f"Scorer: `implicit_prm`, policy SmolLM2-135M, reference a perturbed copy (fp32, CPU), so each batch is "
        f"two forward passes; {args.rounds} rounds alternating the order, median. Load average at the end: {load:.2f} "
        "(the machine is shared).",
        "",
        "| path | time (s) | items/s | tokens/s (prompt+response, per model) | tokens through each model |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("unshared", "without prefix sharing"), ("shared", "with prefix sharing")):
        per_model = forward[name]  # the policy's backend; the reference sees the same tokens
        lines.append(f"| {label} | {med[name]:.2f} (range {min(times[name]):.2f}-{max(times[name]):.2f}) | "
                     f"{len(items) / med[name]:.1f} | {real_tokens / med[name]:.0f} | {per_model} |")
    lines += [
        "",
        f"Speed-up from prefix sharing: **{ratio:.2f}x** (goal >= 2x); tokens through the model "
        f"{forward['unshared'] / max(1, forward['shared']):.2f}x fewer. Scores (sum of beta*log-ratios) agree to "
        f"{agree:.1e} (largest |score| {max(abs(x) for x in scores['shared']):.3f}).",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--response-tokens", type=int, default=32)
    ap.add_argument("--ratio", type=int, default=4, help="prompt length / response length")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only; don't update bench/RESULTS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-prefix-") as tmp:
        body = asyncio.run(run(args, perturbed_copy(Path(tmp))))
    print(body)
    if not args.no_write:
        command = "python bench/bench_prefix_sharing.py " + " ".join(sys.argv[1:])
        write_section("GRPO prefix sharing (bench_prefix_sharing.py)", command.strip(), body)


if __name__ == "__main__":
    main()

"""Verifier throughput against worker count, for sizing (deploy/README.md): math and code, in-process.

    .venv/bin/python bench/bench_sizing.py [--workers 1,2,4] [--rounds 2]

Each (scorer, workers) setting is a ScoringService scoring the same items; settings are measured in
rounds with their order rotated, so load on a shared machine hits them alike (median reported).
Items: the MATH-500/GSM8K items of bench_math, and HumanEval's canonical solutions (all pass).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_math import load_items  # noqa: E402
from code_support import humaneval, humaneval_item  # noqa: E402
from common import write_section  # noqa: E402

from rewardsvc.config import parse_config  # noqa: E402
from rewardsvc.service import ScoringService  # noqa: E402
from rewardsvc.types import Item, item_from_dict  # noqa: E402


async def rate(kind: str, workers: int, items: list[Item]) -> float:
    config = parse_config({"scorers": {kind: {"type": kind, "workers": workers}}})
    async with ScoringService(config) as service:
        await service.score(kind, items[: 2 * workers])  # warm: workers started, imports done
        t0 = time.perf_counter()
        results = await service.score(kind, items)
        elapsed = time.perf_counter() - t0
    errors = [r.error for r in results if r.error is not None and r.error.code.value != "timeout"]
    assert not errors, errors[:3]
    return len(items) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--math-items", type=int, default=400)
    ap.add_argument("--code-items", type=int, default=80)
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    items = {
        "math": [item_from_dict({"prompt": "", **d}) for d in load_items(args.math_items)],
        "code": [item_from_dict(humaneval_item(r)) for r in humaneval()[: args.code_items]],
    }
    settings = [(kind, w) for kind in items for w in counts]
    rates: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    for r in range(args.rounds):
        for kind, w in settings[r % len(settings):] + settings[: r % len(settings)]:
            rates[(kind, w)].append(asyncio.run(rate(kind, w, items[kind])))
    load = Path("/proc/loadavg").read_text().split()[0]
    cores = os.cpu_count() or 1
    lines = []
    for kind in items:
        one = statistics.median(rates[(kind, counts[0])])
        for w in counts:
            med = statistics.median(rates[(kind, w)])
            lines.append(f"| {kind} | {w} | {w / cores:g} | {med:.1f} | {med / w:.1f} | {med / one:.2f}x |")
    body = f"""Items: {args.math_items} math (MATH-500/GSM8K), {args.code_items} code (HumanEval canonical solutions, one
bubblewrap sandbox per item). In-process ScoringService, median of {args.rounds} rounds; load average at
the end {load} on {cores} cores (the machine is shared: absolute numbers are low, ratios are the point).

| scorer | workers | workers per core | items/s | items/s per worker | vs {counts[0]} worker |
|---|---|---|---|---|---|
{chr(10).join(lines)}
"""
    print(body)
    write_section("Verifier workers per core (bench_sizing.py)", "python bench/bench_sizing.py", body)


if __name__ == "__main__":
    main()

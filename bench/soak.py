"""Bounded soak: every scorer of the default config under mixed concurrent load for ~10 minutes.

    .venv/bin/python bench/soak.py [--seconds 600] [--concurrency 8] [--config F]
    .venv/bin/python bench/soak.py --hostile --seconds 120   # the same honest load, alone, then beside
                                                            # one hostile client per attack family

Reports throughput, p50/p99 latency and error counts per scorer, and the server's RSS over time,
into bench/RESULTS.md. Traffic stays on loopback, bounded in time and in calls in flight.
With --hostile (bench/hostile_clients.py) the honest callers' numbers with and without the
hostile clients come from one server in one run, with the slowest health check of each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_section  # noqa: E402
from hostile_clients import FAMILIES, HealthProbe  # noqa: E402
from support import ServerProcess  # noqa: E402

from rewardsvc.client import AsyncRewardClient, RewardServiceCallError  # noqa: E402
from rewardsvc.config import DEFAULT_CONFIG_PATH  # noqa: E402
from rewardsvc.demo import KIND_SAMPLES, SAMPLES  # noqa: E402


def rss_mb(pid: int) -> float:
    """RSS of the server and all its children (worker processes, sandboxes)."""
    total = 0
    pids = [pid]
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pids.append(int(child))
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def soak(address: str, pid: int, seconds: float, concurrency: int) -> tuple[dict, list, float]:
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    items_done: dict[str, int] = defaultdict(int)
    rss: list[tuple[float, float]] = []
    t_end = time.monotonic() + seconds
    t_start = time.monotonic()
    async with AsyncRewardClient(address, timeout_s=300) as client:
        scorers = await client.list_scorers()

        async def worker(w: int) -> None:
            rng = random.Random(w)
            while time.monotonic() < t_end:
                info = rng.choice(scorers)
                samples = SAMPLES[KIND_SAMPLES.get(info["kind"], "answer")]
                batch = [dict(rng.choice(samples)[1], id=str(i)) for i in range(rng.choice([1, 4, 8]))]
                t0 = time.perf_counter()
                try:
                    res = await client.score(info["name"], batch)
                except RewardServiceCallError as exc:
                    errors[info["name"]][f"call:{exc.code.name}"] += 1
                    continue
                lat[info["name"]].append(time.perf_counter() - t0)
                items_done[info["name"]] += len(res)
                for r in res:
                    if r.error:
                        errors[info["name"]][r.error.code.value] += 1

        async def sampler() -> None:
            while time.monotonic() < t_end:
                rss.append((time.monotonic() - t_start, rss_mb(pid)))
                await asyncio.sleep(10)

        await asyncio.gather(sampler(), *(worker(w) for w in range(concurrency)))
    elapsed = time.monotonic() - t_start
    stats = {}
    for name in lat.keys() | errors.keys():
        ls = sorted(lat.get(name, []))
        stats[name] = {
            "calls": len(ls),
            "items": items_done.get(name, 0),
            "p50_ms": 1000 * statistics.median(ls) if ls else float("nan"),
            "p99_ms": 1000 * ls[min(len(ls) - 1, int(0.99 * len(ls)))] if ls else float("nan"),
            "errors": dict(errors.get(name, {})),
        }
    return stats, rss, elapsed


def table(stats: dict, elapsed: float) -> str:
    rows = "\n".join(
        f"| {n} | {s['calls']} | {s['items']} | {s['items'] / elapsed:.1f} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} | "
        f"{', '.join(f'{k}: {v}' for k, v in s['errors'].items()) or '0'} |"
        for n, s in sorted(stats.items())
    )
    return ("| scorer | calls | items | items/s | p50 ms | p99 ms | item / call errors |\n"
            "|---|---|---|---|---|---|---|\n" + rows)


async def soak_beside_hostile(address: str, pid: int, seconds: float, concurrency: int,
                              hostile: bool) -> tuple[dict, list, float, float, dict]:
    """The honest soak, with the hostile clients running beside it when `hostile`, and a health
    probe every 100 ms: (stats, rss, elapsed, slowest health check in s, hostile clients' counts)."""
    probe = HealthProbe(address, interval_s=0.1)
    counts: dict = {}
    async with probe:
        honest = asyncio.create_task(soak(address, pid, seconds, concurrency))
        if hostile:  # a process of its own: see bench/hostile_clients.py
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve().parent / "hostile_clients.py"), "--address", address,
                "--seconds", str(seconds), stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"hostile clients exited {proc.returncode}")
            counts = json.loads(out.decode().strip().splitlines()[-1])
        stats, rss, elapsed = await honest
    return stats, rss, elapsed, probe.worst, counts


def main_hostile(args: argparse.Namespace, config: dict) -> None:
    phases = {}
    with ServerProcess(config, startup_timeout_s=900) as srv:
        for name, hostile in (("honest callers alone", False), ("beside the hostile clients", True)):
            phases[name] = asyncio.run(soak_beside_hostile(srv.address, srv.proc.pid, args.seconds,
                                                           args.concurrency, hostile))
        alive = srv.wait_alive()
    parts = []
    for name, (stats, rss, elapsed, worst, counts) in phases.items():
        calls = sum(s["calls"] for s in stats.values())
        errors = sum(sum(s["errors"].values()) for s in stats.values())
        allp99 = max((s["p99_ms"] for s in stats.values()), default=float("nan"))
        hostile_line = ""
        if counts:
            hostile_line = "Hostile clients (calls answered / refused or failed): " + "; ".join(
                f"{k}: {v['ok']} / {v['failed']}" for k, v in counts.items()) + "."
        parts.append(f"""### {name}

{elapsed:.0f} s; honest calls {calls}, honest item/call errors {errors}, worst scorer p99 {allp99:.0f} ms;
slowest health check {1000 * worst:.0f} ms (probed every 100 ms); server RSS at the end {rss[-1][1]:.0f} MB.
{hostile_line}

{table(stats, elapsed)}""")
    families = "\n".join(f"- `{k}`: {v}" for k, v in FAMILIES.items())
    body = f"""{args.concurrency} honest callers (random scorer, batch of 1/4/8 demo samples per call) for
{args.seconds:g} s alone, then {args.seconds:g} s beside one hostile client per attack family of issue 14, each
on its own connection (so each is its own caller for fair queuing) and all of them in a process of
their own beside the soak's, on one server; the two client processes share the server's 2 cores.
Server alive at the end: {alive}.

{families}

Reading: the honest callers share one client, so one connection: to the server's fair queues they are one
caller among eight beside the hostile clients, and get a caller's turn at the workers, sandbox slots and
the text-work thread, not the machine; the hostile clients' CPU (1 MB texts scanned, 5,000-item requests
decoded) comes out of the same 2 cores. What must hold is no honest errors, no crash and bounded memory;
the health checks here run beside all seven families at once (one item at the size limit alone: under
100 ms, tests/test_hostile_server.py).

""" + "\n\n".join(parts)
    print(body)
    write_section("Soak with hostile clients (soak.py --hostile)",
                  f"python bench/soak.py --hostile --seconds {args.seconds:g}", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG_PATH))
    ap.add_argument("--hostile", action="store_true", help="baseline, then beside one hostile client per family")
    args = ap.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    if args.hostile:
        main_hostile(args, config)
        return
    with ServerProcess(config, startup_timeout_s=900) as srv:
        stats, rss, elapsed = asyncio.run(soak(srv.address, srv.proc.pid, args.seconds, args.concurrency))
        alive = srv.wait_alive()
    rss_line = ", ".join(f"{t:.0f}s: {m:.0f}" for t, m in rss[:: max(1, len(rss) // 12)])
    body = f"""Duration {elapsed:.0f} s, {args.concurrency} concurrent callers, random scorer and batch size (1/4/8)
per call, samples from `rewardsvc/demo.py` (including hostile code and master-key answers).
Server alive at the end: {alive}.

{table(stats, elapsed)}

Server RSS (MB, server + direct children) over time: {rss_line}.
Growth from the first sample after warm-up (models load and caches fill in the first minute) to the
last: {rss[-1][1] - next((m for t, m in rss if t >= 90), rss[0][1]):+.0f} MB."""
    print(body)
    write_section("Soak (soak.py)", f"python bench/soak.py --seconds {args.seconds:g}", body)


if __name__ == "__main__":
    main()

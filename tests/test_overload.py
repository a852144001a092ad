"""Overload on loopback: 10x the concurrency limit, bounded in count and time; clean refusals, flat memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from rewardsvc.client import AsyncRewardClient, RewardClient, RewardServiceCallError
from support import ServerProcess

ENV = {"PYTHONPATH": str(Path(__file__).parent)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def burst(address: str, calls: int, items: int, seconds: float) -> tuple[int, int, list]:
    ok = refused = 0
    other = []
    async with AsyncRewardClient(address, retries=0, timeout_s=60) as c:
        async def one(i: int) -> None:
            nonlocal ok, refused
            try:
                res = await c.score("slow", [{"id": f"{i}-{k}", "response": "x" * 1000} for k in range(items)],
                                    seconds=seconds)
                assert [r.id for r in res] == [f"{i}-{k}" for k in range(items)]
                ok += 1
            except RewardServiceCallError as exc:
                if exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refused += 1
                else:
                    other.append(exc)

        await asyncio.gather(*(one(i) for i in range(calls)))
    return ok, refused, other


@pytest.mark.slow  # own server under ten times its load: about 5 s
def test_ten_times_the_rpc_limit() -> None:
    cfg = {"server": {"max_concurrent_rpcs": 8}, "scorers": {"slow": {"type": "faulty_scorers:SlowScorer"}}}
    with ServerProcess(cfg, env=ENV) as srv:
        pid = srv.proc.pid
        asyncio.run(burst(srv.address, 8, 1, 0.1))  # warm up
        before = rss_mb(pid)
        peaks = []
        for _round in range(3):
            ok, refused, other = asyncio.run(burst(srv.address, 80, 20, 1.0))
            peaks.append(rss_mb(pid))
            assert not other, other[:3]
            assert ok + refused == 80
            assert ok >= 8 and refused > 0, (ok, refused)
        # Refused calls cost nothing lasting: memory stays flat across rounds.
        assert max(peaks) - before < 150, (before, peaks)
        with RewardClient(srv.address) as c:
            assert c.score("slow", [{"id": "after"}], seconds=0.0)[0].score == 1.0


def test_per_scorer_queue_bound_names_the_limit() -> None:
    cfg = {"server": {"max_queued_items_per_scorer": 10}, "scorers": {"slow": {"type": "faulty_scorers:SlowScorer"}}}
    with ServerProcess(cfg, env=ENV) as srv:
        ok, refused, other = asyncio.run(burst(srv.address, 6, 5, 1.0))
        assert not other and ok == 2 and refused == 4, (ok, refused, other)
        with RewardClient(srv.address, retries=0) as c:
            try:
                c.score("slow", [{"id": str(i)} for i in range(11)], seconds=0.0)
                raise AssertionError("11 items passed a bound of 10")
            except RewardServiceCallError as exc:
                assert exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "max_queued_items_per_scorer=10" in exc.details

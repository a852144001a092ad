"""Client-side load balancing over several plain servers: round-robin, and retries that move to a live
server when one is killed or stopped mid-run (issue 7). Real servers on loopback, real client."""

from __future__ import annotations

import asyncio
import collections
import signal
from pathlib import Path

import pytest

from rewardsvc.client import AsyncRewardClient, RewardClient
from rewardsvc.client.aio import channel_target
from support import ServerProcess

TESTS = Path(__file__).parent
SLOW = {"scorers": {"slow": {"type": "slow_scorer:SlowScorer"}}}
ENV = {"PYTHONPATH": str(TESTS)}
CALLS, PER_CALL = 50, 10


def _items(call: int) -> list[dict]:
    # Later calls sleep longer, so when the first ones have returned the rest are still in flight.
    return [
        {"id": f"{call}-{j}", "prompt": "p", "response": "x" * (call + j), "metadata": {"delay_s": str(0.04 * call)}}
        for j in range(PER_CALL)
    ]


async def _warm(client: AsyncRewardClient, want: int) -> set[int]:
    """Score single items until `want` different servers have answered (both connections up)."""
    seen: set[int] = set()
    for _ in range(40):
        res = await client.score("slow", [{"id": "warm", "prompt": "p", "response": "x"}])
        seen.add(int(res[0].details["pid"]))
        if len(seen) == want:
            break
    return seen


async def _run_and_stop(addresses: list[str], victim: ServerProcess, how: str) -> list:
    async with AsyncRewardClient(addresses, retries=8, backoff_s=0.05) as client:
        assert len(await _warm(client, 2)) == 2, "round-robin never reached both servers"
        calls = [asyncio.create_task(client.score("slow", _items(k))) for k in range(CALLS)]
        pending, done = set(calls), 0
        while done < 10:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            done += len(finished)
        assert pending, "every call finished before the server could be stopped: nothing was mid-run"
        assert victim.proc is not None
        if how == "kill":
            victim.proc.kill()
        else:
            victim.proc.send_signal(signal.SIGTERM)
        parts = await asyncio.gather(*calls)
        if how == "terminate":
            assert victim.proc.wait(60) == 0
            # After the drain, new calls all land on the survivor.
            parts.append(await client.score("slow", [{"id": f"after-{i}", "prompt": "p", "response": "y" * i}
                                                      for i in range(40)]))
        return [r for part in parts for r in part]


@pytest.mark.parametrize("how", ["kill", "terminate"])
@pytest.mark.slow  # two servers, one stopped mid-run: about 4 s each
def test_retries_move_to_the_live_server_when_one_stops_mid_run(how: str) -> None:
    with ServerProcess(SLOW, ENV) as a, ServerProcess(SLOW, ENV) as b:
        assert a.proc is not None and b.proc is not None
        # Host names, not IPs: the client resolves them (and the kill case exercises that path).
        addresses = [a.address.replace("127.0.0.1", "localhost"), b.address]
        results = asyncio.run(_run_and_stop(addresses, b, how))
        pid_a, pid_b = a.proc.pid, b.proc.pid

    expected = {it["id"]: len(it["response"]) for k in range(CALLS) for it in _items(k)}
    if how == "terminate":
        expected.update({f"after-{i}": i for i in range(40)})
    ids = [r.id for r in results]
    assert len(ids) == len(expected) and set(ids) == set(expected)  # each item answered exactly once
    assert [r.error for r in results if r.error is not None] == []
    assert all(r.score == expected[r.id] for r in results)
    by_pid = collections.Counter(int(r.details["pid"]) for r in results)
    print(f"{how}: items answered by the survivor {by_pid[pid_a]}, by the stopped server {by_pid[pid_b]}")
    assert set(by_pid) == {pid_a, pid_b}, by_pid
    if how == "kill":
        # b answered the calls that finished before the kill; everything in flight on it moved to a.
        assert by_pid[pid_a] > by_pid[pid_b]
    else:
        assert all(int(r.details["pid"]) == pid_a for r in results if r.id.startswith("after-"))


def test_blocking_client_spreads_over_servers_and_accepts_v4_mapped_ipv6() -> None:
    with ServerProcess(SLOW, ENV) as a, ServerProcess(SLOW, ENV) as b:
        assert a.proc is not None and b.proc is not None
        # An IPv6-only entry forces the ipv6: target, IPv4 servers as v4-mapped addresses.
        port_a, port_b = a.address.rsplit(":", 1)[1], b.address.rsplit(":", 1)[1]
        with RewardClient([f"[::ffff:127.0.0.1]:{port_a}", f"[::ffff:127.0.0.1]:{port_b}"]) as client:
            items = [{"id": str(i), "prompt": "p", "response": "z" * i} for i in range(200)]
            pids = collections.Counter()
            for start in range(0, 200, 10):
                for r in client.score("slow", items[start : start + 10]):
                    assert r.error is None and r.score == int(r.id)
                    pids[int(r.details["pid"])] += 1
        assert set(pids) == {a.proc.pid, b.proc.pid}, pids


def test_channel_target_forms() -> None:
    rr = ("grpc.lb_policy_name", "round_robin")
    assert channel_target("dns:///rewardsvc-headless:50051") == ("dns:///rewardsvc-headless:50051", [rr])
    assert channel_target(["10.0.0.1:1", "10.0.0.2:2"]) == ("ipv4:10.0.0.1:1,10.0.0.2:2", [rr])
    assert channel_target(["localhost:7", "127.0.0.2:8"])[0] == "ipv4:127.0.0.1:7,127.0.0.2:8"
    assert channel_target(["[::1]:5", "127.0.0.1:6"])[0] == "ipv6:[::1]:5,[::ffff:127.0.0.1]:6"
    with pytest.raises(ValueError, match="cannot resolve"):
        channel_target(["no-such-host.invalid:1", "127.0.0.1:2"])
    with pytest.raises(ValueError, match="host:port"):
        channel_target(["127.0.0.1", "127.0.0.1:2"])
    with pytest.raises(ValueError, match="no server address"):
        channel_target([])

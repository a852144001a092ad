"""One hostile client per attack family of issue 14, for bench/soak.py --hostile.

    .venv/bin/python bench/hostile_clients.py --address 127.0.0.1:50051 --seconds 120

Each client runs for a set time on its own connection (so the server's fair queues see it as its
own caller) and counts its calls answered and refused; the counts are printed as one JSON line.
None of them needs to succeed: the point is what the honest callers beside them see. soak.py runs
this in a process of its own, so that building and parsing the hostile clients' huge messages
does not stall the honest callers' (and the health probe's) event loop and get counted as the
server's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rewardsvc import messages
from rewardsvc.types import Item
from rewardsvc.v1 import reward_pb2 as pb
from rewardsvc.v1 import reward_pb2_grpc as pb_grpc

HOSTILE_CHARS = 1_000_000  # each flood item: a quarter of the default max_text_chars
OPTIONS = [("grpc.use_local_subchannel_pool", 1),  # a connection of its own
           ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
SLOW_MATH = "\\boxed{9^{9^{9^{9}}}}"
SPIN = "```python\ndef f(x):\n    while True:\n        pass\n```"
ASSERTS = json.dumps({"asserts": ["assert f(2) == 4"]})

FAMILIES = {
    "boxed_flood": "math items whose response is 1 MB of unclosed `\\boxed{`, back to back",
    "reference_flood": "the same flood in the reference",
    "fence_flood": "code items whose response is 1 MB of fence lines",
    "stream_errors": "ScoreStream requests of 5,000 items with a 100 KB bad option value, back to back",
    "never_reads": "a ScoreStream of 8,000-item requests whose responses are never read",
    "slow_items": "32 math checks that run into their time limit and 8 spinning programs, always in flight",
    "log_forgery": "Score calls whose request_id is a forged log line plus 1 MB",
}


def _item(**fields: Any) -> pb.Item:
    return messages.item_to_pb(Item(**fields))


class HealthProbe:
    """`async with HealthProbe(address):` checks gRPC health every `interval_s`; `.worst` is the
    slowest answer in seconds."""

    def __init__(self, address: str, interval_s: float = 0.1) -> None:
        self.address = address
        self.interval_s = interval_s
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        async with grpc.aio.insecure_channel(self.address, options=OPTIONS) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=60)
            while True:
                t0 = time.perf_counter()
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=600)
                self.worst = max(self.worst, time.perf_counter() - t0)
                await asyncio.sleep(self.interval_s)

    async def __aenter__(self) -> HealthProbe:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def run_hostile(address: str, seconds: float, families: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Each family's client (all by default) for `seconds`; per family, calls answered ("ok") and
    refused ("failed")."""
    families = list(FAMILIES) if families is None else families
    counts = {name: {"ok": 0, "failed": 0} for name in families}
    end = time.monotonic() + seconds

    async def repeat(name: str, call: Any) -> None:
        async with grpc.aio.insecure_channel(address, options=OPTIONS) as ch:
            stub = pb_grpc.RewardServiceStub(ch)
            while time.monotonic() < end:
                try:
                    await call(stub)
                    counts[name]["ok"] += 1
                except grpc.aio.AioRpcError:
                    counts[name]["failed"] += 1
                    await asyncio.sleep(0.1)

    def score(scorer: str, items: list[pb.Item], **kw: Any) -> Any:
        request = pb.ScoreRequest(scorer=scorer, items=items, **kw)
        return lambda stub: stub.Score(request, timeout=300)

    flood = "\\boxed{" * (HOSTILE_CHARS // 7)
    fences = "```\n" * (HOSTILE_CHARS // 4)
    bad = pb.ScoreRequest(scorer="math", items=[_item(response="\\boxed{1}", reference="1")] * 5_000,
                          options=messages.options_to_struct({"timeout_s": "x" * 100_000}))

    async def stream_errors(stub: pb_grpc.RewardServiceStub) -> None:
        async for response in stub.ScoreStream(iter([bad] * 20), timeout=300):
            assert response.HasField("error")

    async def never_reads(stub: pb_grpc.RewardServiceStub) -> None:
        many = [_item(id=str(i), response="no reference") for i in range(8_000)]

        async def requests():
            while time.monotonic() < end:
                yield pb.ScoreRequest(scorer="math", items=many)

        call = stub.ScoreStream(requests())
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        call.cancel()

    async def slow_items(stub: pb_grpc.RewardServiceStub) -> None:
        opts = messages.options_to_struct({"timeout_s": 2.0})
        slow = pb.ScoreRequest(scorer="math", options=opts, items=[_item(response=SLOW_MATH, reference="1")])
        spin = pb.ScoreRequest(scorer="code", options=opts, items=[_item(response=SPIN, reference=ASSERTS)])
        await asyncio.gather(*[stub.Score(slow, timeout=300) for _ in range(32)],
                             *[stub.Score(spin, timeout=300) for _ in range(8)])

    forged = "ok\n2026-01-01 00:00:00,000 ERROR rewardsvc: FORGED" + "z" * 1_000_000
    clients = {
        "boxed_flood": score("math", [_item(response=flood, reference="1")]),
        "reference_flood": score("math", [_item(response="\\boxed{1}", reference=flood)]),
        "fence_flood": score("code", [_item(response=fences, reference=ASSERTS)]),
        "stream_errors": stream_errors,
        "never_reads": never_reads,
        "slow_items": slow_items,
        "log_forgery": score("math", [_item(response="\\boxed{1}", reference="1")], request_id=forged),
    }
    await asyncio.gather(*(repeat(name, clients[name]) for name in families))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--address", required=True, help="the server's gRPC address, host:port")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--families", nargs="+", choices=list(FAMILIES), help="only these (default: all)")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run_hostile(args.address, args.seconds, args.families))))


if __name__ == "__main__":
    main()

"""The client never splits a group: chunks on group boundaries, splits what the server refuses for its
size along them, and fails within its connect wait, naming the address, when no server answers.

Groups are checked through the server's own `zscore` composite: its details carry the size of the
group it standardised over, and its scores can be recomputed here from the raw 0/1 math rewards.
"""

from __future__ import annotations

import math
import socket

import grpc
import pytest
from support import ServerProcess

from rewardsvc.client import AsyncRewardClient, RewardClient, RewardServiceCallError
from rewardsvc.client.chunks import pack, units
from rewardsvc.types import Item

LIMIT = 300
CONFIG = {
    "server": {"max_items_per_request": LIMIT},
    "scorers": {
        "math": {"type": "math", "workers": 2, "timeout_s": 5.0},
        "z": {"type": "composite", "mode": "zscore", "components": [{"scorer": "math"}]},
    },
}
LEAD, GROUPS, SIZE = 5, 124, 8  # 5 loose items, then 124 groups of 8, then 3 loose: 1000 items


@pytest.fixture(scope="module")
def server() -> ServerProcess:
    with ServerProcess(CONFIG) as srv:
        yield srv


def thousand() -> list[dict]:
    items = [{"id": f"loose-{i}", "response": f"\\boxed{{{i}}}", "reference": "0"} for i in range(LEAD)]
    for g in range(GROUPS):
        for j in range(SIZE):
            right = (j + g) % 3 == 0
            items.append({"id": f"g{g}-{j}", "group_id": f"prompt-{g}", "reference": str(g),
                          "response": f"so \\boxed{{{g if right else g + 1}}}"})
    items += [{"id": f"tail-{i}", "response": "\\boxed{1}", "reference": "1"} for i in range(3)]
    return items


def check_groups_whole(items: list[dict], results: list) -> None:
    assert [r.id for r in results] == [it["id"] for it in items]
    for g in range(GROUPS):
        group = [r for r in results if r.id.startswith(f"g{g}-")]
        assert len(group) == SIZE and all(r.error is None for r in group), group[0]
        assert {r.details["group_size"] for r in group} == {SIZE}, f"group {g} split: {group[0].details}"
        raw = [1.0 if (j + g) % 3 == 0 else 0.0 for j in range(SIZE)]
        assert [r.details["raw_score"] for r in group] == raw
        mean = sum(raw) / SIZE
        std = math.sqrt(sum((v - mean) ** 2 for v in raw) / (SIZE - 1))
        assert [r.score for r in group] == pytest.approx([(v - mean) / (std + 1e-4) for v in raw])


def test_a_group_of_8_inside_1000_items_stays_one_group_on_the_server(server) -> None:
    items = thousand()
    # Plain 256-item slices would cut group 31 (items 253..260) in two: the test can fail.
    assert any(i % 256 == 0 for i in range(LEAD + 31 * SIZE + 1, LEAD + 32 * SIZE))
    with RewardClient(server.address) as client:
        assert client._aio.chunk_size == 256
        results = client.score("z", items)
    check_groups_whole(items, results)


def test_a_request_refused_for_its_size_is_split_on_group_boundaries(server) -> None:
    items = thousand()
    with RewardClient(server.address, chunk_size=len(items)) as client:
        results = client.score("z", items)  # 1000 > max_items_per_request=300: refused, then split
        check_groups_whole(items, results)
        assert client._aio._server_max_items == LIMIT  # later calls chunk to fit at once
        big = [{"id": str(i), "group_id": "huge", "response": "\\boxed{1}", "reference": "1"} for i in range(LIMIT + 1)]
        with pytest.raises(RewardServiceCallError) as err:
            client.score("z", big)
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "group 'huge' has 301 items" in err.value.details and "max_items_per_request" in err.value.details


def test_chunks_are_whole_groups_in_order() -> None:
    items = [Item(id=str(i), group_id=g) for i, g in enumerate(["a", None, "b", "a", None, "b", "b", "c"])]
    assert units(items) == [[0, 3], [1], [2, 5, 6], [4], [7]]
    assert pack(units(items), 3) == [[0, 3, 1], [2, 5, 6], [4, 7]]
    assert pack(units(items), 1) == [[0, 3], [1], [2, 5, 6], [4], [7]]  # a group bigger than the limit alone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_fails_within_the_connect_wait_naming_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with RewardClient(address, connect_timeout_s=1.0) as client, pytest.raises(RewardServiceCallError) as err:
        client.score("math", [{"response": "\\boxed{1}", "reference": "1"}])
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert address in err.value.details and "connect_timeout_s=1s" in err.value.details


async def _overall_deadline_first(address: str) -> RewardServiceCallError:
    async with AsyncRewardClient(address, connect_timeout_s=60.0, timeout_s=0.5) as client:
        try:
            await client.score("math", [{"response": "1"}])
        except RewardServiceCallError as exc:
            return exc
    raise AssertionError("scored without a server")


def test_the_calls_deadline_still_wins_when_shorter_than_the_connect_wait() -> None:
    import asyncio

    exc = asyncio.run(_overall_deadline_first(f"127.0.0.1:{free_port()}"))
    assert exc.code == grpc.StatusCode.DEADLINE_EXCEEDED

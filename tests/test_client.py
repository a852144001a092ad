"""The client: chunking keeps order, dict and typed items, retries until a late server is up."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from conftest import MATH_CONFIG
from rewardsvc.client import AsyncRewardClient, RewardClient
from rewardsvc.types import Item, Message
from support import ServerProcess


def test_chunks_sent_concurrently_come_back_in_input_order(math_server) -> None:
    items = [{"id": f"i{i}", "response": f"\\boxed{{{i % 7}}}", "reference": str(i % 5)} for i in range(103)]
    with RewardClient(math_server.address, chunk_size=10, max_in_flight=4) as c:
        results = c.score("math", items)
    assert [r.id for r in results] == [it["id"] for it in items]
    assert [r.score for r in results] == [1.0 if i % 7 == i % 5 else 0.0 for i in range(103)]


def test_typed_items_chat_messages_and_async_client(math_server) -> None:
    async def main():
        async with AsyncRewardClient(math_server.address) as c:
            return await c.score("math", [
                Item(id="chat", prompt=[Message("user", "2+2?")],
                     response=[Message("assistant", "It is \\boxed{4}")], reference="4"),
                {"prompt": "1+1", "response": "\\boxed{3}", "reference": "2"},
            ])

    r = asyncio.run(main())
    assert r[0].id == "chat" and r[0].score == 1.0
    assert r[1].id == "1" and r[1].score == 0.0


def test_invalid_dict_item_is_a_clear_error_before_sending() -> None:
    with RewardClient("127.0.0.1:1") as c:
        with pytest.raises(ValueError, match="item 1: unknown item field"):
            c.score("math", [{"response": "1"}, {"respnse": "oops"}])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # waits for a late server: about 5 s
def test_retries_until_a_late_server_is_up() -> None:
    port = free_port()
    cfg = {"server": {"port": port}, "scorers": MATH_CONFIG["scorers"]}
    srv = ServerProcess(cfg)
    srv.config["server"]["port"] = port  # ServerProcess defaults to port 0; this test needs a known one
    starter = threading.Timer(1.0, srv.start)
    starter.start()
    try:
        with RewardClient(f"127.0.0.1:{port}", retries=10, backoff_s=0.5, timeout_s=120) as c:
            t0 = time.perf_counter()
            res = c.score("math", [{"response": "\\boxed{5}", "reference": "5"}])
        assert res[0].score == 1.0
        assert time.perf_counter() - t0 > 0.5  # it really had to wait for the server
    finally:
        starter.join()
        srv.__exit__(None, None, None)
